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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scandx.errors import ScandxError
from scandx.hospital.pipeline import Processor

log = logging.getLogger("scandx.hospital")


def series_folders(study_dir: Path) -> list[Path]:
    """The study's series folders (``series-<hex>``), in a stable order."""
    return sorted(p for p in Path(study_dir).glob("series-*") if p.is_dir())


SELECTOR_FILE = "selector.json"  # RUN/selector.json: which series the run applies to


def run_selector(run: str | Path, selector_path: str | Path | None = None) -> Any:
    """The series selector of a run: ``selector_path`` (``--selector``) if given, else
    ``RUN/selector.json`` if present, else None (every series; the Predictor's own
    input checks then decide)."""
    from scandx.data.series import load_selector

    path = Path(selector_path) if selector_path else Path(run) / SELECTOR_FILE
    if selector_path is None and not path.is_file():
        return None
    return load_selector(path)


def image_series(files: list[Path]) -> list[Any]:
    """The image series these files form (headers only), for the selectors."""
    from scandx.data.series import group_studies

    return [series for study in group_studies(files) for series in study.series]


def applies(selector: Any, series: list[Any]) -> bool:
    """True when there is no selector or it matches one of the series."""
    return selector is None or any(selector.matches(s) for s in series)


def make_processor(
    runs: Sequence[str | Path], runtime: str = "torch", selector: str | Path | None = None
) -> Processor:
    """Load each run (and its selector) once; the processor runs every applicable (run,
    series) pair through ``dicom_out.predict_study``."""
    from scandx.core.predictor import load_predictor
    from scandx.dicom_out import ResultModel, predict_study

    models = []
    for run in runs:
        predictor = load_predictor(run, runtime=runtime)
        result_model = ResultModel.from_predictor(predictor, run)
        models.append((predictor, result_model, run_selector(run, selector)))

    def process(study_dir: Path, out_dir: Path) -> list[Path]:
        results: list[Path] = []
        for folder in series_folders(study_dir):
            files = sorted(folder.glob("*.dcm"))
            # headers read once per series, whatever the number of runs with selectors
            series = image_series(files) if any(m[2] is not None for m in models) else []
            for index, (predictor, result_model, chooser) in enumerate(models, start=1):
                if not applies(chooser, series):
                    log.info("%s: model %d's selector does not match", folder.name, index)
                    continue
                target = out_dir / f"{folder.name}-model{index}"
                target.mkdir(parents=True, exist_ok=True)
                try:
                    written = predict_study(predictor, files, target, model=result_model)
                except ScandxError as e:
                    log.info("%s: model %d does not apply (%s)", folder.name, index, e.reason)
                    continue
                results += [Path(p) for p in written]
        return results

    return process
