"""``scandx embed`` and ``scandx similar`` end to end on the phantoms: a classifier
run's index and the raw-pixel one, a query's own duplicate found first, the page, and
every bad input as one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scandx.cli import main
from scandx.core.report import self_contained_problems
from scandx.retrieval.page import query_section
from scandx.retrieval.search import QueryResult, SimilarIndex, query_mismatches
from tests.conftest import DICOM_TEST, needs_shared


@pytest.fixture(scope="module")
def run_index(quick_run: Path, phantoms: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ret") / "phantoms.index"
    assert main(["-q", "embed", str(quick_run), "--data", str(phantoms), "--out", str(out)]) == 0
    return out


def a_png(phantoms: Path) -> Path:
    return sorted(phantoms.rglob("*.png"))[0]


def test_embed_writes_the_index_of_the_run(run_index: Path, quick_run: Path, phantoms: Path):
    m = json.loads((run_index / "manifest.json").read_text())
    model = json.loads((quick_run / "model" / "model.json").read_text())
    assert m["space"]["kind"] == "classifier-penultimate"
    assert m["space"]["run_sha256"] == model["sha256"]
    n_files = len([f for f in phantoms.rglob("*") if f.is_file()])
    assert m["count"] == n_files and m["search"]["kind"] == "exact"
    assert m["images"]["modalities"] == {"CR": len(list(phantoms.rglob("*.dcm")))}
    vectors = np.load(run_index / "vectors.npy", allow_pickle=False)
    assert vectors.shape == (m["count"], m["dim"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    index = SimilarIndex(run_index)
    rows = index.table.to_pylist()
    assert {r["label"] for r in rows} == {"normal", "lesion"}
    assert all(r["file"].startswith("file-") for r in rows)  # a pseudonym, never a path
    assert index.thumbnail(rows[0])[:8] == b"\x89PNG\r\n\x1a\n"


def test_similar_finds_the_query_itself_first(run_index, phantoms, tmp_path, capsys):
    query = a_png(phantoms)
    page = tmp_path / "page.html"
    assert main(["-q", "similar", str(run_index), str(query), "--k", "3", "--out", str(page)]) == 0
    index = SimilarIndex(run_index)
    first = index.query_files([query], 3)[0].neighbours[0]
    assert first["distance"] == pytest.approx(0, abs=1e-4)
    assert first["label"] == query.parent.parent.name  # images/<class>/<patient>/file
    printed = capsys.readouterr().out
    assert first["case_id"] in printed and "page:" in printed
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 4  # the query and its 3 neighbours
    assert not self_contained_problems(html)


def test_pixel_index_and_its_duplicate(phantoms, tmp_path):
    out = tmp_path / "pix.index"
    assert main(["-q", "embed", "--pixels", "16", "--data", str(phantoms), "--out", str(out)]) == 0
    index = SimilarIndex(out)
    assert index.space["kind"] == "pixels" and index.manifest["dim"] == 256
    near = index.query_files([a_png(phantoms)], 2)[0].neighbours
    assert near[0]["distance"] == pytest.approx(0, abs=1e-5)


def test_approximate_index_from_the_threshold(phantoms, tmp_path):
    out = tmp_path / "approx.index"
    args = ["-q", "embed", "--pixels", "--data", str(phantoms), "--out", str(out)]
    assert main([*args, "--exact-below", "50"]) == 0
    search = SimilarIndex(out).manifest["search"]
    assert search["kind"] == "approximate" and search["nlist"] >= 1


def fails(capsys, args: list[str]) -> str:
    assert main(["-q", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_bad_input_is_one_line_and_exit_2(run_index, phantoms, tmp_path, capsys):
    q = str(a_png(phantoms))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    assert "junk.png" in fails(capsys, ["similar", str(run_index), str(junk)])
    assert "not a scandx index" in fails(capsys, ["similar", str(tmp_path), q])
    assert "--k must be 1 to" in fails(capsys, ["similar", str(run_index), q, "--k", "0"])
    n = SimilarIndex(run_index).count
    assert f"--k must be 1 to {n}" in fails(
        capsys, ["similar", str(run_index), q, "--k", str(n + 1)]
    )
    rgb = tmp_path / "colour.png"
    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(rgb)
    err = fails(capsys, ["similar", str(run_index), str(rgb)])
    assert "query is 3-channel (colour), the index holds grey-scale images" in err
    err = fails(capsys, ["embed", "--data", str(phantoms), "--out", str(tmp_path / "x")])
    assert "give a RUN" in err


@needs_shared
def test_a_ct_query_against_x_rays_is_refused(run_index, capsys):
    err = fails(capsys, ["similar", str(run_index), str(DICOM_TEST / "CT_small.dcm")])
    assert "query is CT, the index holds CR images" in err


def test_size_mismatch_is_a_warning_not_a_refusal():
    images = {"modalities": {"CR": 3}, "channels": {"1": 3}, "spatial_dims": [2],
              "longer_side": {"min": 512, "median": 600.0, "max": 1024}}  # fmt: skip
    facts = {"spatial_dims": 2, "channels": 1, "height": 28, "width": 28, "frames": 1}
    refusals, warnings = query_mismatches(images, facts, "CR")
    assert not refusals
    assert warnings == ["query is 28x28 pixels, the index holds images of 512-1024 pixels "
                        "on their longer side"]  # fmt: skip
    refusals, _ = query_mismatches(images, {**facts, "spatial_dims": 3}, "DX")
    assert refusals == ["query is DX, the index holds CR images",
                        "query is a volume, the index holds 2D images"]  # fmt: skip


def test_the_page_escapes_names_and_labels():
    class FakeIndex:
        def thumbnail(self, row):
            return b"\x89PNG"

    hostile = "<script>alert(1)</script>"
    result = QueryResult(
        name=f"{hostile}.png",
        neighbours=[
            {
                "rank": 1,
                "distance": 0.5,
                "case_id": "<b>c</b>",
                "label": hostile,
                "split": "",
                "patient_id": "p",
                "modality": "<i>CR",
            }
        ],  # fmt: skip
        thumbnail=b"\x89PNG",
        warnings=[f"query is {hostile}"],
    )
    html = query_section(FakeIndex(), result)
    assert "<script>" not in html and "<b>c</b>" not in html and "<i>CR" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not self_contained_problems(html)
