"""What a result object says about the model that produced it.

The IHE AI Results (AIR) profile asks that every AI result identify its algorithm: name
and version (DICOM TID 4019 Algorithm Identification: Algorithm Name, Algorithm Version,
Algorithm Parameters) and, in an SR, a device observer (TID 1004). scandx names a model
by its run folder, versions it by its training time (model.json ``created``, as the
service does) and pins the exact weights by their sha256 (an Algorithm Parameter
``weights_sha256=<hex>`` in the SEG's Algorithm Identification Sequence and in the SR's
TID 4019 items; the SR's device observer carries it as its serial number).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scandx.core.model_card import card_path
from scandx.core.predictor import Predictor

MANUFACTURER = "scandx"


@dataclass(frozen=True)
class ResultModel:
    """The model behind a result: identity (AIR), output vocabulary and limitations.

    ``task``: binary, multiclass, multilabel or segmentation; ``classes``: a classifier's
    classes in output order; ``positive_class`` and ``thresholds`` (model.json) say how
    the label at the operating point was chosen; ``labels``: a segmenter's {label value:
    name} (0 is background); ``limitations``: the model card's Limitations lines."""

    name: str
    version: str
    weights_sha256: str
    scandx_version: str
    task: str
    classes: list[str] = field(default_factory=list)
    positive_class: str | None = None
    thresholds: dict[str, Any] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    input_description: str = ""
    limitations: list[str] = field(default_factory=list)

    @classmethod
    def from_predictor(
        cls, predictor: Predictor, run: str | Path | None = None, name: str | None = None
    ) -> ResultModel:
        """From a loaded Predictor; ``run`` (its run folder) names the model and gives the
        model card's limitations (without it: the name ``scandx-<task>`` and no card)."""
        info = predictor.info
        labels = {int(k): str(v) for k, v in (getattr(predictor, "labels", None) or {}).items()}
        return cls(
            name=name
            or (Path(run).resolve().name if run is not None else f"scandx-{info['task']}"),
            version=str(info.get("created", "unknown")),
            weights_sha256=str(info["sha256"]),
            scandx_version=str(info.get("scandx_version", "unknown")),
            task=str(info["task"]),
            classes=[str(c) for c in info.get("classes", [])],
            positive_class=getattr(predictor, "positive_class", None),
            thresholds=dict(info.get("thresholds") or {}),
            labels=labels,
            input_description=_input_description(predictor),
            limitations=card_limitations(run) if run is not None else [],
        )

    @property
    def parameters(self) -> dict[str, str]:
        """Algorithm Parameters (TID 4019 / Algorithm Identification Sequence)."""
        return {"weights_sha256": self.weights_sha256, "scandx_version": self.scandx_version}

    @property
    def algorithm(self) -> tuple[str, str, dict[str, str]]:
        """(name, version, parameters) as ``dicom_seg.seg_dataset`` takes them."""
        return self.name, self.version, self.parameters


def card_limitations(run: str | Path) -> list[str]:
    """The lines under ``## Limitations`` of the run's model card (bullets stripped);
    none when the card is missing."""
    path = card_path(Path(run))
    if not path.is_file():
        return []
    lines, inside = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Limitations"
            continue
        if inside and line.strip():
            lines.append(line.strip().removeprefix("- ").strip())
    return lines


def _input_description(predictor: Predictor) -> str:
    """What the model looked at, for the report's 'what the model cannot see'."""
    info = predictor.info
    if info.get("task") == "segmentation":
        plan = getattr(predictor, "plan", None)
        if plan is None:
            return ""
        spacing = (
            f", resampled to {list(plan.target_spacing)} mm voxels" if plan.target_spacing else ""
        )
        return f"{plan.data_dims}D images, {plan.in_channels} channel(s){spacing}"
    size = (info.get("input") or {}).get("size")
    channels = (info.get("input") or {}).get("channels")
    if not size:
        return ""
    return f"the image reduced to {' x '.join(map(str, size))} pixels, {channels} channel(s)"
