"""The web page of ``scandx serve`` end to end: the real service started as a user
starts it (``scandx serve ... --port P --db sqlite:///...``, a subprocess on 127.0.0.1),
driven with Playwright on Debian's ``chromium``: sign in with a key, upload a real
DICOM to a classifier and a DICOM series (zip) to a segmenter, read the answer off the
page, step through the slices, and a wrong key's 401 shown as a message.

As in ``test_report_html.py``: never a Playwright browser download; ``make test`` sets
SCANDX_REQUIRE_BROWSER=1, so there a missing browser fails instead of skipping.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scandx.cli import main
from tests.conftest import DICOM_TEST, needs_shared
from tests.serve.live import LiveServer
from tests.tasks.classification.evaluation.test_report_html import CHROMIUM_FLAGS, _chromium

# A real greyscale DICOM from ../shared/data that the phantom classifier's input
# contract accepts (2D, one frame, greyscale). CT_small.dcm would be the obvious pick but
# its 128-byte preamble starts with a TIFF header ("II*\0", a dual-personality file) and
# the service's sniffer currently takes it for a TIFF (reported to the lead).
REAL_DICOM = DICOM_TEST / "CT_small.dcm"  # a dual-personality file (TIFF header in its preamble)


@dataclass
class Service:
    url: str
    key: str
    classifier_sha256: str
    series_zip: Path


@pytest.fixture(scope="module")
def segmentation_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny 3D segmenter trained on synthetic CT series with DICOM SEG labels, and one
    series zipped as a user would upload it."""
    from scandx.tasks.segmentation.synthetic import make_dicom_seg_cases

    root = tmp_path_factory.mktemp("web-seg")
    data = make_dicom_seg_cases(root / "dicom", n=4, seed=3)
    run = root / "run"
    assert main(["-q", "train", "--data", str(data), "--out", str(run), "--time-budget", "5"]) == 0
    series = root / "series.zip"
    with zipfile.ZipFile(series, "w") as z:
        for f in sorted((data / "case00").glob("slice*.dcm")):
            z.write(f, f.name)
    return run, series


@pytest.fixture(scope="module")
def service(
    quick_run: Path,
    phantoms: Path,
    segmentation_run: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    from scandx.serve.store import Store

    root = tmp_path_factory.mktemp("web-serve")
    index = root / "phantoms.index"  # the classifier's similar cases (scandx embed)
    assert main(["-q", "embed", str(quick_run), "--data", str(phantoms), "--out", str(index)]) == 0
    db = f"sqlite:///{root / 'serve.db'}"
    with Store(db) as store:
        key, _ = store.create_key("clinician", "web page test")
    seg_run, series = segmentation_run
    runs = [f"phantom={quick_run}", f"lesions={seg_run}"]
    with LiveServer([*runs, "--db", db, "--index", str(index)], root / "serve.log") as server:
        sha = json.loads((quick_run / "model" / "model.json").read_text())["sha256"]
        yield Service(server.url, key, sha, series)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser, service: Service) -> Iterator:
    """A fresh tab (its own sessionStorage) that records console errors (a CSP refusal
    is one), page errors and any request leaving the service."""
    tab = browser.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: m.type == "error" and problems.append(m.text))
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on(
        "request",
        lambda r: (
            r.url.startswith((service.url, "data:", "blob:"))
            or problems.append(f"outside request: {r.url[:80]}")
        ),
    )
    tab.problems = problems
    yield tab
    tab.close()


def _sign_in(page, service: Service, key: str) -> None:
    page.goto(service.url + "/", wait_until="load")
    page.wait_for_selector("#signin:not([hidden])")  # keys exist: the page asks for one
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def _allowed(problems: list[str]) -> list[str]:
    # a refused request (401) is logged by Chromium as a console error: that one is expected
    return [p for p in problems if "status of 401" not in p]


@needs_shared
def test_classifier_result_with_probability_bar_and_heatmap(page, service: Service, tmp_path):
    _sign_in(page, service, service.key)
    page.wait_for_selector("#workspace:not([hidden])")
    page.get_by_label("Model").select_option("phantom")
    page.get_by_label("Image or series").set_input_files(str(REAL_DICOM))
    page.get_by_role("button", name="Predict").click()
    page.wait_for_selector("#result:not([hidden]) .label-value", timeout=30_000)

    assert page.text_content(".label-value") in ("normal", "lesion")
    bars = page.locator(".bar")
    assert bars.count() == 2
    widths = [float(m.get_attribute("aria-valuenow")) for m in page.locator(".track").all()]
    assert sum(widths) == pytest.approx(1.0, abs=0.01)  # the two probabilities of a binary task
    assert page.locator(".threshold").count() == 1  # the operating point on the positive bar
    heat = page.locator("img.heatmap")
    assert heat.evaluate("i => i.complete && i.naturalWidth > 0")
    answered = page.text_content("#answered-by")
    assert "phantom" in answered and service.classifier_sha256[:12] in answered
    assert page.locator("#error").is_hidden()

    # the phantom index holds CR images: a CT query gets no similar cases, and says why
    refusal = page.locator(".similar .warn")
    refusal.wait_for(state="visible", timeout=30_000)
    assert "query is CT, the index holds CR images" in refusal.text_content()

    shot = tmp_path / "classifier.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refused = [p for p in _allowed(page.problems) if "status of 422" not in p]
    assert len(refused) == len(_allowed(page.problems)) - 1  # the similar-case refusal only
    assert not refused, page.problems


def test_similar_cases_beside_the_prediction(page, service: Service, phantoms: Path):
    query = sorted(phantoms.rglob("*.png"))[0]  # a case of the index: its copy comes first
    _sign_in(page, service, service.key)
    page.get_by_label("Model").select_option("phantom")
    page.get_by_label("Image or series").set_input_files(str(query))
    page.get_by_role("button", name="Predict").click()
    page.wait_for_selector("#result:not([hidden]) .neighbour img", timeout=30_000)
    assert page.locator(".label-value").count() == 1  # the prediction is still there
    items = page.locator(".neighbour")
    assert items.count() == 8
    first = items.first
    assert first.locator(".neighbour-label").text_content() == f"1. {query.parent.parent.name}"
    assert first.locator("img").evaluate("i => i.complete && i.naturalWidth > 0")
    assert "distance 0.000" in first.text_content()
    assert page.locator(".similar .warn").count() == 0
    assert not _allowed(page.problems), page.problems


def test_segmenter_mask_preview_steps_through_slices(page, service: Service, tmp_path):
    _sign_in(page, service, service.key)
    page.get_by_label("Model").select_option("lesions")
    assert page.locator("#heatmap-field").is_hidden()  # heatmaps are for classifiers
    page.get_by_label("Image or series").set_input_files(str(service.series_zip))
    page.get_by_role("button", name="Predict").click()
    page.wait_for_selector("#result:not([hidden]) img.preview", timeout=30_000)

    assert page.locator(".regions tbody th").first.text_content() == "lesion"
    slider = page.get_by_role("slider", name="Slice")
    assert slider.get_attribute("max") == "8"  # one preview per slice of the 8-slice series
    first = page.locator("img.preview").get_attribute("src")
    assert first.startswith("data:image/png;base64,")
    slider.focus()
    page.keyboard.press("ArrowRight")
    assert slider.input_value() == "2"
    assert page.locator("img.preview").get_attribute("src") != first
    assert page.text_content("#slice-text").startswith("2 of 8")
    page.locator("figure.slices").focus()  # arrow keys on the image itself
    page.keyboard.press("End")
    assert slider.input_value() == "8"
    page.keyboard.press("ArrowLeft")
    assert slider.input_value() == "7"
    assert page.locator("img.preview").evaluate("i => i.complete && i.naturalWidth > 0")
    link = page.locator("a.download")
    assert link.get_attribute("download") in ("mask.seg.dcm", "mask.nii.gz")
    assert link.get_attribute("href").startswith("blob:")
    page.screenshot(path=str(tmp_path / "segmenter.png"), full_page=True)
    assert not _allowed(page.problems), page.problems


def test_wrong_key_shows_the_401_message(page, service: Service):
    _sign_in(page, service, "sdx_nosuchkey_" + "x" * 40)
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "401" in error.text_content() and "unknown or revoked API key" in error.text_content()
    assert page.locator("#workspace").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0  # a refused key is not kept


def test_server_text_is_never_parsed_as_html(page, service: Service):
    """Whatever the service says is shown as text: a detail carrying markup stays text."""
    page.route(
        "**/v1/models",
        lambda route: route.fulfill(
            status=401,
            content_type="application/json",
            body=json.dumps({"detail": '<img src=x onerror="window.pwned=1">bad key'}),
        ),
    )
    _sign_in(page, service, "anything")
    page.locator("#error").wait_for(state="visible")
    assert "<img src=x" in page.text_content("#error")
    assert page.locator("#error img").count() == 0
    assert page.evaluate("window.pwned") is None


@needs_shared
def test_page_layout_fits_a_narrow_window(page, service: Service, tmp_path):
    page.set_viewport_size({"width": 360, "height": 740})
    _sign_in(page, service, service.key)
    page.get_by_label("Model").select_option("phantom")
    page.get_by_label("Image or series").set_input_files(str(REAL_DICOM))
    page.get_by_role("button", name="Predict").click()
    page.wait_for_selector("#result:not([hidden]) img.heatmap", timeout=30_000)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # no sideways scrolling on a phone-sized window
    page.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)


def test_an_unreadable_upload_shows_the_services_reason(page, service: Service, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"not an image at all\n" * 20)
    _sign_in(page, service, service.key)
    page.get_by_label("Model").select_option("phantom")
    page.get_by_label("Image or series").set_input_files(str(junk))
    page.get_by_role("button", name="Predict").click()
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.text_content().startswith("Unsupported file type (415): not a file type")
    assert page.locator("#result").is_hidden() and page.locator("#workspace").is_visible()


def test_busy_service_says_when_to_retry(page, service: Service):
    page.route(
        "**/predict*",
        lambda route: route.fulfill(
            status=503,
            headers={"Retry-After": "7"},
            content_type="application/json",
            body=json.dumps({"detail": "the service is busy (16 predictions running or queued)"}),
        ),
    )
    _sign_in(page, service, service.key)
    page.get_by_label("Model").select_option("phantom")
    page.get_by_label("Image or series").set_input_files(
        {"name": "x.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n"}
    )
    page.get_by_role("button", name="Predict").click()
    page.locator("#error").wait_for(state="visible")
    text = page.text_content("#error")
    assert "(503)" in text and "busy" in text and "Try again in 7 s." in text


def test_open_loopback_service_lets_the_user_in_without_a_key(page, service: Service):
    """With no keys at all the service answers on loopback without one: the page goes
    straight to the models (simulated here: this service has a key)."""
    model = {"name": "m", "task": "binary", "version": "v", "weights_sha256": "ab" * 32}
    models = {"models": [{**model, "classes": ["a", "b"], "positive_class": "b"}]}

    def answer(route):
        if route.request.headers.get("authorization"):
            route.fulfill(status=500, body="a key was sent")
        else:
            route.fulfill(status=200, content_type="application/json", body=json.dumps(models))

    page.route("**/v1/models", answer)
    page.goto(service.url + "/", wait_until="load")
    page.wait_for_selector("#workspace:not([hidden])")
    assert page.locator("#signin").is_hidden() and page.locator("#sign-out").is_hidden()
    assert "No API keys are set up" in page.text_content("#session-text")
    assert "weights abababababab" in page.text_content("#model-info")


def test_the_key_lasts_the_tab_until_sign_out(page, service: Service):
    _sign_in(page, service, service.key)
    page.wait_for_selector("#workspace:not([hidden])")
    page.reload(wait_until="load")
    page.wait_for_selector("#workspace:not([hidden])")  # still signed in in this tab
    page.get_by_role("button", name="Sign out").click()
    assert page.locator("#signin").is_visible() and page.locator("#workspace").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    assert page.evaluate("document.activeElement.id") == "api-key"  # ready to type a key


def test_page_sources_never_parse_strings_as_html_or_code():
    """What the strict content security policy relies on, checked in the sources: no
    inline script or style, nothing from another origin, no HTML or code built from text."""
    import re

    from scandx.serve.app import WEB

    html = (WEB / "index.html").read_text()
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/static/result.js" defer>',
        '<script src="/static/app.js" defer>',
    ]
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"<[^>]*\son\w+=", html)  # no inline event handlers
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    for name in ("app.js", "result.js"):
        code = (WEB / name).read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code.replace("never innerHTML", ""), (name, sink)
        assert 'setAttribute("style"' not in code and "http" not in code
