"""``predict_study``: one series in, the result objects out as DICOM files.

What the DICOM node (``scandx listen``) and the DICOMweb loop call once they hold a
series; it knows nothing of networking. The prediction goes through the run's Predictor
exactly as ``scandx predict`` does (``prepare`` then ``score``), so the SR carries the
numbers ``predict`` prints.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pydicom import Dataset

from scandx.core.predictor import Predictor, load_predictor
from scandx.core.run_dir import atomic_write
from scandx.data.dicom import is_dicom_file, read_header
from scandx.dicom_out.model_info import ResultModel
from scandx.dicom_out.overlay_sc import heatmap_overlay
from scandx.dicom_out.results import results_as_dicom
from scandx.errors import ScandxError

log = logging.getLogger(__name__)


def predict_study(
    run_or_predictor: str | Path | Predictor,
    series_inputs: Sequence[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    model: ResultModel | None = None,
    heatmap: bool = True,
) -> list[Path]:
    """Predict one series and write its result objects into ``out_dir`` as
    ``<SOP Instance UID>.dcm``; returns their paths (SEG, SR, SC per input).

    ``run_or_predictor``: a run folder (loaded here; its model card gives the
    limitations) or a Predictor already loaded (``core.predictor.load_predictor``; pass
    ``model=ResultModel.from_predictor(predictor, run)`` to name it and give its
    limitations). ``series_inputs``: the series' DICOM files, or its folder: a classifier
    scores each image (one for a single-image series); a segmenter takes the whole
    series as one volume. ``heatmap``: a classifier also writes its explanation heatmap
    over the image as a Secondary Capture. Bad input raises ``ScandxError``; nothing is
    written for a series that fails."""
    if isinstance(run_or_predictor, (str, Path)):
        predictor = load_predictor(run_or_predictor)
        model = model or ResultModel.from_predictor(predictor, run_or_predictor)
    else:
        predictor = run_or_predictor
        model = model or ResultModel.from_predictor(predictor)
    files = _series_files(series_inputs)
    if predictor.task == "segmentation":
        datasets = _segment(predictor, files, model)
    else:
        datasets = [ds for f in files for ds in _classify(predictor, f, model, heatmap)]
    return write_datasets(datasets, Path(out_dir))


def _series_files(series_inputs: Sequence[str | Path] | str | Path) -> list[Path]:
    """The DICOM files of the series (a folder: its DICOM files, sorted by name)."""
    if isinstance(series_inputs, (str, Path)):
        folder = Path(series_inputs)
        if not folder.is_dir():
            series_inputs = [folder]
        else:
            series_inputs = sorted(
                f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")
            )
    files = [Path(p) for p in series_inputs]
    if not files:
        raise ScandxError("no DICOM files in the series given")
    for f in files:
        if not is_dicom_file(f):
            raise ScandxError("not a DICOM file (no DICM marker at byte 128)", f)
    return files


def _header(path: Path) -> Dataset:
    try:
        return read_header(Path(path))
    except Exception as e:  # pydicom raises many kinds on damaged headers
        raise ScandxError(f"unreadable DICOM header ({type(e).__name__})", path) from None


def _classify(predictor: Predictor, path: Path, model: ResultModel, heatmap: bool) -> list[Dataset]:
    row = predictor.score([predictor.prepare(path)])[0]
    overlay = None
    if heatmap:
        from scandx.data.readers import read_image
        from scandx.tasks.classification.explain.explain import explain_display

        display, _ = read_image(path)
        heat = explain_display(predictor, display, str(path))["heatmap"]  # type: ignore[arg-type]
        overlay = heatmap_overlay(display, heat)
    return results_as_dicom(row, [_header(path)], model, overlay=overlay)


def _segment(predictor: Predictor, files: list[Path], model: ResultModel) -> list[Dataset]:
    """The series as one volume: the Predictor reads a series folder, so the files are
    linked into a private folder of their own (SEG objects and other series stay out)."""
    from scandx.tasks.segmentation.dicom_series import series_files

    with tempfile.TemporaryDirectory(prefix="scandx-series-") as tmp:
        folder = Path(tmp)
        for i, f in enumerate(files):
            os.symlink(f.resolve(), folder / f"{i:05d}.dcm")
        slices, _ = series_files(folder)
        if len(slices) == 1:  # a single image (a 2D segmenter) is read as a file
            output = predictor.score([predictor.prepare(slices[0])])[0]
        else:
            output = predictor.score([predictor.prepare(folder)])[0]
        sources = [_header(f) for f in slices]
    return results_as_dicom(output, sources, model)


def write_datasets(datasets: list[Dataset], out_dir: Path) -> list[Path]:
    """Each dataset as ``<SOP Instance UID>.dcm`` (Part 10, written atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        path = out_dir / f"{ds.SOPInstanceUID}.dcm"
        atomic_write(path, buf.getvalue())
        paths.append(path)
        log.info("wrote %s (%s)", path.name, ds.Modality)
    return paths
