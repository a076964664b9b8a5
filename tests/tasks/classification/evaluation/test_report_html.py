"""report.html end to end: written by `scandx evaluate`, self-contained, renders in Chromium.

The browser is Debian's ``chromium``; ``make test`` installs it (scripts/ensure-chromium.sh)
and sets SCANDX_REQUIRE_BROWSER=1, so under ``make test`` a missing browser fails the
test instead of skipping it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from scandx.cli import main
from scandx.core.model_card import HEADINGS
from scandx.tasks.classification.evaluation.html_report import model_card_section, subgroup_section
from tests.system_tools import require_tool

SECTIONS = (
    "Metrics",
    "ROC and precision-recall curves",
    "Confusion matrix",
    "Operating points",
    "Calibration",
    "Subgroups",
    "Explanations (layercam)",  # the quick run is a simple-cnn: auto picks LayerCAM
    "Model card",
)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def evaluated(quick_run: Path, phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(quick_run, run)
    args = ["evaluate", str(run), "--data", str(phantoms), "--bootstrap", "200"]
    assert main(["-q", *args, "--subgroups", "sex,age_group,manufacturer"]) == 0
    return run


def test_report_is_complete_and_self_contained(evaluated: Path):
    out = evaluated / "eval" / "test"
    page = (out / "report.html").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == list(SECTIONS)
    assert "<script" not in page
    assert not re.search(r"""(src|href)=['"]?(https?:|//|file:)""", page)  # nothing fetched
    assert page.count("data:image/png;base64,") >= 4  # gallery overlays embedded
    assert page.count("<svg") == 3  # ROC, PR, reliability diagram
    for category in ("true positive", "false positive", "false negative", "true negative"):
        assert f"<h3>{category} (" in page

    m = json.loads((out / "metrics.json").read_text())
    rows = m["operating_points"]["lesion"]
    # every rule once: its own row, merged into a row with the same threshold (same_as),
    # or refused for too few validation cases (issue 11)
    rules = sorted(r for row in rows for r in [row["rule"], *row.get("same_as", [])])
    assert rules == [
        "sensitivity_90",
        "sensitivity_95",
        "specificity_90",
        "specificity_95",
        "youden",
    ]
    youden = next(r for r in rows if "youden" in [r["rule"], *r.get("same_as", [])])
    assert youden["threshold"] == pytest.approx(m["threshold"]["positive"], abs=1e-6)
    assert youden["sensitivity"]["value"] == m["sensitivity"]["value"]
    assert set(m["subgroups"]) == {"sex", "age_group", "manufacturer"}
    assert sum(r["cases"] for r in m["subgroups"]["sex"]) == m["cases"]
    assert 0 < m["average_precision"]["lesion"] <= 1
    curves = json.loads((out / "curves.json").read_text())
    assert len(curves["lesion"]["roc"]["band"][0]) == len(curves["lesion"]["grid"]) == 101

    card = (evaluated / "model" / "model_card.md").read_text()
    assert "test, by sex:" in card and "Not assessed" not in card
    assert "Subgroup performance (sex, age, site, device) has not been assessed" not in card
    card_headings = re.findall(r"^## (.*)$", card, flags=re.M)
    assert [h for h in card_headings if h in HEADINGS] == list(HEADINGS)  # the shared skeleton


def _chromium() -> str:
    return require_tool("chromium", "chromium-browser", kind="browser", what="chromium")


def browser_check(page_path: Path, user_data: Path) -> dict:
    """Open a page in headless Chromium; collect console errors, page errors, failed
    requests, image load state and the page height."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(user_data), executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:60]}"))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
            )
            svgs = page.evaluate(
                "Array.from(document.querySelectorAll('svg'))"
                ".map(s => s.getBoundingClientRect().width)"
            )
            height = page.evaluate("document.body.scrollHeight")
            shot = page.screenshot(full_page=False)
        finally:
            browser.close()
    return {"problems": problems, "images": images, "svgs": svgs, "height": height, "shot": shot}


def test_report_renders_in_headless_chromium(evaluated: Path, tmp_path: Path):
    result = browser_check(evaluated / "eval" / "test" / "report.html", tmp_path / "profile")
    assert result["problems"] == []
    assert len(result["images"]) >= 4
    assert all(done and width > 0 for done, width in result["images"])  # every PNG decoded
    assert len(result["svgs"]) == 3 and min(result["svgs"]) > 200
    assert result["height"] > 2000
    assert len(result["shot"]) > 10_000  # a real rendering, not a blank page


def test_browser_check_catches_errors_and_broken_images(tmp_path: Path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><img src='data:image/png;base64,AAAA'>"
        "<script>console.error('boom'); undefined_function();</script></body></html>"
    )
    result = browser_check(bad, tmp_path / "profile")
    assert "boom" in result["problems"]
    assert any("undefined_function" in p for p in result["problems"])
    assert result["images"] == [[True, 0]]


def test_unknown_subgroup_column_is_one_line_and_writes_nothing(quick_run, phantoms, capsys):
    before = sorted(p.relative_to(quick_run) for p in quick_run.rglob("*"))
    args = ["evaluate", str(quick_run), "--data", str(phantoms), "--subgroups", "site"]
    assert main(["-q", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "no metadata column site" in err[0] and "sex" in err[0]
    assert sorted(p.relative_to(quick_run) for p in quick_run.rglob("*")) == before


def test_data_derived_text_is_escaped():
    evil = "<img src=x onerror=alert(1)>"
    html = subgroup_section({"site": [{"value": evil, "cases": 1, "patients": 1}]})
    assert evil not in html and "&lt;img src=x" in html
    card = model_card_section(f"# Model card: {evil}\n\n- class <script>alert(1)</script>\n")
    assert "<script" not in card and "<img" not in card
