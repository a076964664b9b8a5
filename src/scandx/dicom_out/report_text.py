"""The human-readable report: findings, impression, what the model cannot see and the
model card's limitations, written from the same result the SR encodes (so the text and
the coded values cannot disagree). Embedded in the SR as TEXT items and returned whole by
``ReportText.as_text`` for anything that wants plain text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scandx.dicom_out.model_info import ResultModel

NOTICE = (
    "Generated automatically by scandx for research use; not a medical device and not "
    "validated for clinical decisions. A qualified reader decides."
)
UNCERTAIN_SPREAD = 0.1  # a TTA spread of the decision probability above this is flagged


@dataclass(frozen=True)
class ReportText:
    findings: str
    impression: str
    cannot_see: str
    limitations: str

    def sections(self) -> list[tuple[str, str]]:
        """(heading, text) in reading order."""
        return [
            ("Findings", self.findings),
            ("Impression", self.impression),
            ("What the model cannot see", self.cannot_see),
            ("Limitations", self.limitations),
        ]

    def as_text(self) -> str:
        body = "\n\n".join(f"{h.upper()}\n{t}" for h, t in self.sections())
        return f"{body}\n\n{NOTICE}\n"


def _p(v: float) -> str:
    return f"{v:.3f}"


def classification_text(row: dict[str, Any], model: ResultModel) -> ReportText:
    """``row``: one output of the classification Predictor's ``score``."""
    probs = {c: float(row[f"prob_{c}"]) for c in model.classes}
    lines = [f"Probability of {c}: {_p(p)}." for c, p in probs.items()]
    label = str(row.get("predicted", ""))
    if model.task == "binary":
        rule = model.thresholds.get("rule", "validation")
        lines.append(
            f"Operating point: P({row['positive_class']}) >= {_p(row['threshold'])} "
            f"({rule}, chosen on validation data); label at it: {label}."
        )
        impression = (
            f"{label} (P({row['positive_class']}) {_p(probs[row['positive_class']])} "
            f"{'at or above' if label == row['positive_class'] else 'below'} the threshold "
            f"{_p(row['threshold'])})."
        )
    elif model.task == "multilabel":
        cut = ", ".join(f"{c} {_p(float(model.thresholds[c]))}" for c in model.classes)
        lines.append(f"Per-label thresholds (chosen on validation data): {cut}.")
        impression = f"Labels present: {label}." if label else "No label at or above its threshold."
    else:
        impression = f"Most probable class: {label} ({_p(probs[label])})."
    spread = row.get("uncertainty")
    if spread is not None:
        lines.append(f"Uncertainty (spread over test-time augmentations): {_p(spread)}.")
        if spread > UNCERTAIN_SPREAD:
            impression += " The result is uncertain (large spread under small image changes)."
    if row.get("ood_score") is not None:
        flagged = bool(row.get("ood_flag"))
        lines.append(
            f"Out-of-distribution score: {_p(row['ood_score'])} (flagged above 1): "
            f"{'flagged' if flagged else 'not flagged'}."
        )
        if flagged:
            impression += (
                " Caution: this image is unlike the training data (out-of-distribution); "
                "the result may not apply."
            )
    else:
        lines.append("This model has no out-of-distribution score.")
    cannot = (
        f"The model looked at this one image only ({model.input_description or 'as given'}): "
        "no prior studies, other series or views, clinical history or laboratory results. "
        f"It only distinguishes {', '.join(model.classes)}; any other finding is not "
        "reported, and findings too small for its input resolution are invisible to it."
    )
    return ReportText(" ".join(lines), impression, cannot, _limitations(model))


def segmentation_text(
    volumes: dict[str, tuple[int, float]], unit: str, model: ResultModel
) -> ReportText:
    """``volumes``: {region name: (voxels, volume in ``unit``)}."""
    lines = [f"{name}: {size:.3f} {unit} ({n} voxels)." for name, (n, size) in volumes.items()]
    found = [f"{name} {size:.3f} {unit}" for name, (n, size) in volumes.items() if n]
    impression = ("Segmented: " + ", ".join(found) + ".") if found else "Nothing was segmented."
    cannot = (
        f"The model looked at this one series only ({model.input_description or 'as given'}): "
        "no prior studies, other series, clinical history or laboratory results. It only "
        f"segments {', '.join(volumes) or 'its labels'}; other structures and abnormalities "
        "are not reported, and structures smaller than a few voxels may be missed."
    )
    return ReportText(" ".join(lines), impression, cannot, _limitations(model))


def _limitations(model: ResultModel) -> str:
    if not model.limitations:
        return "The model card lists no limitations (see the model card of the run)."
    return " ".join(line if line.endswith(".") else line + "." for line in model.limitations)
