"""The default processor: each trained run's Predictor on each series of a study.

``make_processor(runs)`` loads every run's Predictor once (``core.predictor.
load_predictor``) and returns a ``pipeline.Processor``: ``(study folder, results
folder) -> result files``. For each series (``incoming/<study>/<series-key>/``) and each
run, the series selector (``scandx.data.series``, when present) decides whether the
model applies; then ``scandx.dicom_out.predict_study`` predicts and writes the SR / SEG /
SC results. A series the model refuses (``ScandxError`` from ``prepare``: wrong
modality, size, dimensionality) is not one it applies to. No result at all: the study
has no applicable series (status ``no_applicable_series``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scandx.errors import ScandxError
from scandx.hospital.pipeline import Processor

log = logging.getLogger("scandx.hospital")
StudyPredictor = Callable[[Any, list[Path], Path], list[Path]]


def series_folders(study_dir: Path) -> list[Path]:
    """The study's series folders (``series-<hex>``), in a stable order."""
    return sorted(p for p in Path(study_dir).glob("series-*") if p.is_dir())


def _predict_study() -> StudyPredictor:
    try:
        from scandx.dicom_out import predict_study  # type: ignore[attr-defined]
    except ImportError as e:
        raise ScandxError(
            "scandx.dicom_out.predict_study is not available in this installation"
        ) from e
    return predict_study


def _applies(run: str, predictor: Any, files: list[Path]) -> bool:
    """The run's series selector, when the series module offers one; else True (the
    Predictor's own checks then decide)."""
    try:
        from scandx.data import series as series_mod  # type: ignore[attr-defined]
    except ImportError:
        return True
    applies = getattr(series_mod, "selector_applies", None)
    if applies is None:
        return True
    return bool(applies(run, predictor, files))


def make_processor(runs: Sequence[str | Path], runtime: str = "torch") -> Processor:
    """Load each run once; the processor runs every applicable (run, series) pair."""
    from scandx.core.predictor import load_predictor

    predictors = [(str(run), load_predictor(run, runtime=runtime)) for run in runs]
    predict_study = _predict_study()

    def process(study_dir: Path, out_dir: Path) -> list[Path]:
        results: list[Path] = []
        for folder in series_folders(study_dir):
            files = sorted(folder.glob("*.dcm"))
            for index, (run, predictor) in enumerate(predictors, start=1):
                if not _applies(run, predictor, files):
                    continue
                target = out_dir / f"{folder.name}-model{index}"
                target.mkdir(parents=True, exist_ok=True)
                try:
                    results += [Path(p) for p in predict_study(predictor, files, target)]
                except ScandxError as e:
                    log.info("%s: model %d does not apply (%s)", folder.name, index, e.reason)
        return results

    return process
