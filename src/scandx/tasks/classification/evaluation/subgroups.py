"""Metrics per subgroup of a metadata column (sex, age band, site, scanner maker, ...).

Columns come from the manifest metadata: CSV columns other than path/label/patient,
and for DICOM inputs the header's PatientSex, PatientAge and Manufacturer (stored as
``sex``, ``age``, ``manufacturer``). ``age_group`` is derived from ``age`` when the
data has no column of that name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from scandx.errors import ScandxError
from scandx.tasks.classification.data.manifest import Case
from scandx.tasks.classification.evaluation.report import evaluate_predictions

AGE_BANDS = ((0, 18), (18, 40), (40, 60), (60, 80), (80, 200))
DICOM_DEFAULT = ("sex", "age_group", "manufacturer")
MISSING = "(missing)"
SUBGROUP_METRICS = ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv")


def age_years(value: Any) -> float | None:
    """Years from a number or a DICOM Age String (``045Y``, ``006M``, ``010W``, ``003D``)."""
    text = str(value).strip()
    if not text:
        return None
    m = re.fullmatch(r"(\d{1,3})\s*([DWMY]?)", text.upper())
    if m:
        n = float(m.group(1))
        return n / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0, "": 1.0}[m.group(2)]
    try:
        return float(text)
    except ValueError:
        return None


def age_band(value: Any) -> str:
    years = age_years(value)
    if years is None:
        return MISSING
    for lo, hi in AGE_BANDS:
        if lo <= years < hi:
            return f"{lo}+" if hi >= 200 else f"{lo}-{hi - 1}"
    return MISSING


def subgroup_value(case: Case, column: str) -> str:
    if column == "age_group" and "age_group" not in case.meta:
        return age_band(case.meta.get("age", ""))
    value = case.meta.get(column)
    return MISSING if value in (None, "") else str(value)


def resolve_columns(cases: Sequence[Case], requested: Sequence[str] | None) -> list[str]:
    """The columns to report: those requested (each must exist in the data), else the
    DICOM defaults that carry at least one value."""
    available = {k for c in cases for k, v in c.meta.items() if v not in (None, "")}
    if "age" in available:
        available.add("age_group")
    if requested:
        unknown = [c for c in requested if c not in available]
        if unknown:
            have = ", ".join(sorted(available - {"npz_key", "npz_index", "sop_instance_uid"}))
            raise ScandxError(
                f"--subgroups: no metadata column {', '.join(unknown)}; the data has: "
                f"{have or 'no metadata columns'}"
            )
        return list(requested)
    return [c for c in DICOM_DEFAULT if c in available]


def subgroup_metrics(
    task: str,
    classes: list[str],
    y: np.ndarray,
    probs: np.ndarray,
    thresholds: dict[str, Any],
    cases: Sequence[Case],
    columns: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """{column: [{value, cases, patients, positives, metric: {value, ci95}}, ...]}."""
    patients = np.array([c.patient_id for c in cases])
    out: dict[str, list[dict[str, Any]]] = {}
    for column in columns:
        values = np.array([subgroup_value(c, column) for c in cases])
        rows = []
        for value in sorted(set(values.tolist()), key=lambda v: (v == MISSING, v)):
            idx = np.flatnonzero(values == value)
            metrics = evaluate_predictions(
                task, classes, y[idx], probs[idx], thresholds, patients[idx], n_boot, seed
            )
            row: dict[str, Any] = {
                "value": value,
                "cases": int(len(idx)),
                "patients": int(len(set(patients[idx].tolist()))),
            }
            if task == "binary":
                row["positives"] = int((y[idx] == 1).sum())
            row.update({k: metrics[k] for k in SUBGROUP_METRICS if k in metrics})
            rows.append(row)
        out[column] = rows
    return out
