"""CI sizes of benchmarks/serve_fuzz.py and benchmarks/serve_load.py against a real
``scandx serve`` process on 127.0.0.1: fuzzed uploads never answered 5xx with bounded
memory; concurrent load without errors, 503 with Retry-After beyond capacity, and no
audit record lost when the server is SIGKILLed mid-load."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzzed_uploads_never_answer_5xx(quick_run, phantoms, capsys):
    fuzz = bench("serve_fuzz")
    result = fuzz.fuzz(quick_run, cases=100, seed=0, max_rss_mb=1500, phantoms=phantoms)
    assert fuzz.report(result) == 0, capsys.readouterr().out
    assert result["server_errors"] == 0 and result["alive"] and result["cases"] == 100
    assert {413, 415, 422} <= set(result["statuses"])


def test_load_overload_and_sigkill_lose_no_audit_record(quick_run, phantoms, tmp_path, capsys):
    load = bench("serve_load")
    image = next(phantoms.rglob("*.png"))
    rows = load.phases(quick_run, image, requests=40, clients=4, kill_after=0.5, work=tmp_path)
    out = load.report(rows)
    assert out == 0, capsys.readouterr().out
    by = {r["phase"]: r for r in rows}
    assert by["load"]["statuses"] == {200: 40}
    assert set(by["overload"]["statuses"]) == {200, 503} and by["overload"]["alive"]
    assert by["kill"]["answered_200"] >= 20 and by["kill"]["missing_records"] == 0
