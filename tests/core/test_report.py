"""The shared report frame: one self-contained page, text escaped, written atomically."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scandx.core.report import (
    ci_text,
    esc,
    html_table,
    model_card_section,
    png_base64,
    render_page,
    self_contained_problems,
    write_page,
)
from scandx.tasks.segmentation.report import write_seg_report

EVIL = "<img src=x onerror=alert(1)>"
FETCHES = re.compile(r"""(src|href)=['"]?(https?:|//|file:)""")


def _png(side: int = 4) -> str:
    return png_base64(np.zeros((side, side, 3), np.uint8))


def test_page_is_self_contained_and_escapes_title_and_subtitle():
    sections = [
        "<h2>One</h2><p>first</p>",
        "",
        f"<h2>Two</h2><img alt='x' src='data:image/png;base64,{_png()}'>",
    ]
    page = render_page(f"run {EVIL}", "3 cases & <b>bold</b>; sha256 1234\u2026", sections)
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</body></html>")
    assert "<meta charset='utf-8'>" in page and "<style>" in page
    assert EVIL not in page and "<title>run &lt;img src=x onerror=alert(1)&gt;</title>" in page
    assert "<h1>run &lt;img" in page and "3 cases &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["One", "Two"]
    assert "<script" not in page and not FETCHES.search(page)
    assert self_contained_problems(page) == []


@pytest.mark.parametrize(
    "section",
    [
        "<script>alert(1)</script>",
        "<img src='https://example.org/x.png'>",
        "<img src=//example.org/x.png>",
        "<img src='x.png'>",  # a file beside the page is not in the page
        "<a href='file:///etc/passwd'>x</a>",
        "<link rel=stylesheet href=style.css>",
        "<iframe src='data:text/html,hi'></iframe>",
        "<div onclick='go()'>x</div>",
        "<style>@import 'x.css';</style>",
        "<div style=\"background:url('http://example.org/x.png')\">x</div>",
    ],
)
def test_page_refuses_scripts_and_references(section: str, tmp_path: Path):
    assert self_contained_problems(section)
    with pytest.raises(ValueError, match="not self-contained"):
        write_page(tmp_path / "r.html", "t", "", [section])
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_escaped_text_never_trips_the_check():
    text = "case src=http://x onerror=1 <script> url(http://y) @import"
    page = render_page("t", text, [f"<p>{esc(text)}</p>", "<a href='#metrics'>metrics</a>"])
    assert self_contained_problems(page) == []
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_write_page_replaces_atomically(tmp_path: Path):
    path = tmp_path / "eval" / "test" / "report.html"
    assert write_page(path, "first", "", ["<h2>A</h2>"]) == path
    assert write_page(path, "second", "sub", ["<h2>B</h2>"]) == path
    page = path.read_text(encoding="utf-8")
    assert "<h1>second</h1>" in page and "<h2>A</h2>" not in page
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left


def test_helpers():
    assert esc("<a & 'b'>") == "&lt;a &amp; &#x27;b&#x27;&gt;"
    assert ci_text({"value": 0.5, "ci95": [0.4, 0.6]}) == "0.500 (0.400&ndash;0.600)"
    assert ci_text({"value": 0.5, "ci95": [None, None]}, digits=1) == "0.5"
    assert ci_text(None) == ci_text({"value": None}) == "n/a"
    table = html_table(["a", "b"], [["1", "2"]])
    assert table == (
        "<table><thead><tr><th>a</th><th>b</th></tr></thead>"
        "<tbody><tr><td>1</td><td>2</td></tr></tbody></table>"
    )


def test_png_base64_enlarges_small_and_shrinks_large_images():
    def size(png: str) -> tuple[int, int]:
        return Image.open(io.BytesIO(base64.b64decode(png))).size

    assert size(_png(28)) == (168, 168)  # whole-factor enlargement, 6 x 28
    assert size(png_base64(np.zeros((400, 200, 3), np.uint8))) == (96, 192)
    assert size(png_base64(np.zeros((512, 512, 3), np.uint8), max_side=256)) == (256, 256)


def test_model_card_section_escapes_and_drops_links():
    card = model_card_section(
        f"# Model card: {EVIL}\n\n## Details\n- class <script>alert(1)</script>\n"
        "- see [site](https://example.org) and ![x](http://example.org/x.png)\n"
    )
    assert card.startswith("<h2>Model card</h2><div class='card'>")
    assert "<script" not in card and "<img" not in card and "<a " not in card
    assert "<h1>" not in card and "<h3>Details</h3>" in card and "site" in card
    assert self_contained_problems(card) == []
    assert model_card_section(None) == model_card_section("") == ""


def test_segmentation_report_goes_through_the_frame(tmp_path: Path):
    metric = {"value": 0.8, "ci95": [0.7, 0.9]}
    metrics = {
        "split": "val",
        "cases": 1,
        "labels": {"1": "tumour"},
        "dice": metric,
        "per_class": {"tumour": {"dice": metric}},
        "per_case": {EVIL: {"tumour": {"dice": 0.8, "hd95": 1.0}}},
        "bootstrap": {"replicates": 10},
    }
    info = {"model": "unet", "spatial_dims": 2, "sha256": "ab" * 32, "scandx_version": "9.9"}
    panels = [("worst", EVIL, 0.8, _png())]
    path = write_seg_report(
        tmp_path / "report.html", metrics, info, [f"note {EVIL}"], panels, "# card", "run"
    )
    page = path.read_text(encoding="utf-8")
    assert EVIL not in page and self_contained_problems(page) == []
    assert re.findall(r"<h2>(.*?)</h2>", page) == [
        "Metrics",
        "Worst, median and best cases",
        "Cases, lowest Dice first",
        "Plan",
        "Model card",
    ]
    assert "<h1>scandx segmentation evaluation: run on val</h1>" in page
