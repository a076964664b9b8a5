"""scandx listen / scandx pacs argument checks (one line, before any model is loaded) and
the default processor's wiring."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scandx.errors import ScandxError
from scandx.hospital import process
from scandx.hospital.cli import add_hospital_commands, run_hospital_command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_hospital_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dest", "PACS@h:104", "--host", "0.0.0.0"], "name the modalities allowed"),
        (["--dest", "PACS:104"], "expected AET@HOST:PORT"),
        (["--dest", "A_TITLE_LONGER_THAN_16@h:104"], "1-16 printable characters"),
        (["--dest", "PACS@h:104", "--allow-aet", "BAD\\AET"], "--allow-aet"),
        (["--dest", "PACS@h:104", "--idle", "0"], "--idle positive"),
        (["--dest", "PACS@h:104"], "model/model.json missing"),
    ],
)
def test_listen_refuses_bad_arguments(tmp_path, argv, message):
    args = parse("listen", "--run", str(tmp_path), "--state", str(tmp_path / "s"), *argv)
    with pytest.raises(ScandxError, match=message):
        run_hospital_command(args)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dicomweb", "ftp://x"], "http:// or https://"),
        (["--dicomweb", "http://x", "--since", "2024"], "YYYYMMDD"),
        (["--dicomweb", "http://x", "--poll", "0"], "--poll must be positive"),
        (["--dicomweb", "http://x", "--retries", "0"], "--retries"),
    ],
)
def test_pacs_refuses_bad_arguments(tmp_path, argv, message):
    args = parse("pacs", "--run", str(tmp_path), "--state", str(tmp_path / "s"), *argv)
    with pytest.raises(ScandxError, match=message):
        run_hospital_command(args)


def test_default_processor_runs_each_model_on_each_series(tmp_path, monkeypatch):
    study = tmp_path / "study-0"
    for series in ("series-a", "series-b"):
        (study / series).mkdir(parents=True)
        (study / series / "sop-1.dcm").write_bytes(b"")
    loaded: list[str] = []
    monkeypatch.setattr(
        "scandx.core.predictor.load_predictor",
        lambda run, runtime="torch": loaded.append(str(run)) or f"model:{run}",
    )

    def predict_study(predictor, files, out_dir: Path, model=None) -> list[Path]:
        if predictor == "model:ct" and files[0].parent.name == "series-b":
            raise ScandxError("not a CT volume")  # this model does not apply here
        out = out_dir / "sr.dcm"
        out.write_bytes(b"result")
        return [out]

    monkeypatch.setattr("scandx.dicom_out.predict_study", predict_study)
    monkeypatch.setattr(
        "scandx.dicom_out.ResultModel.from_predictor", staticmethod(lambda p, run=None: None)
    )
    processor = process.make_processor(["ct", "xr"])
    results = processor(study, tmp_path / "out")
    assert loaded == ["ct", "xr"]  # each run loaded once
    assert len(results) == 3 and all(p.is_relative_to(tmp_path / "out") for p in results)
