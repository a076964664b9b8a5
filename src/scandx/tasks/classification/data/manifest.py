"""The Manifest: one table of cases, whatever the source.

Each case has an id, a patient id (splits never cut through a patient), the
image path, a target (class index, or a 0/1 vector for multi-label tasks; None for an
unlabelled case), the split it belongs to, and free-form metadata columns.

Unlabelled cases (an empty label in a CSV, a folder ``unlabelled/``, or the training
patients ``--labelled-fraction`` leaves without labels) have the split ``unlabelled``:
they never go to validation or test, and only semi-supervised training uses them.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scandx.core.privacy import file_ref
from scandx.data.labels import UNLABELLED, UNLABELLED_FOLDERS  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

TASKS = ("binary", "multiclass", "multilabel")
SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "tr": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "tune": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "ts": "test",
    "holdout": "test",
}
NEGATIVE_NAMES = ("normal", "negative", "neg", "benign", "healthy", "no", "absent", "0", "false")


def normalise_split(value: str) -> str:
    """'Validation' -> 'val'; '' stays ''; anything else is kept lower-cased."""
    v = (value or "").strip().lower()
    return _SPLIT_ALIASES.get(v, v)


def order_classes(names: list[str]) -> list[str]:
    """Sorted class names; for two classes the negative-sounding one comes first."""
    names = sorted(set(names), key=lambda s: (len(s) if s.isdigit() else 0, s))
    if len(names) == 2:
        a, b = names
        b_negative = b.lower() in NEGATIVE_NAMES or b.lower().startswith(("no_", "non"))
        if b_negative and a.lower() not in NEGATIVE_NAMES:
            names = [b, a]
    return names


@dataclass
class Case:
    case_id: str
    patient_id: str
    path: str
    target: int | tuple[int, ...] | None  # None: unlabelled
    split: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    task: str
    classes: list[str]
    cases: list[Case]
    source: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # what the source's checks did to the data (labels merged, duplicates linked): the
    # planner copies these into plan.notes
    notes: list[str] = field(default_factory=list)
    # problems a report must show, machine-readable: {"code": ..., "message": ..., ...}
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cases)

    def in_split(self, split: str) -> list[Case]:
        if split == "all":
            return list(self.cases)
        return [c for c in self.cases if c.split == split]

    def labelled(self) -> list[Case]:
        return [c for c in self.cases if c.target is not None]

    def unlabelled(self) -> list[Case]:
        return [c for c in self.cases if c.target is None]

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        """Labelled cases per class (unlabelled cases count for none)."""
        cases = self.cases if split is None else self.in_split(split)
        cases = [c for c in cases if c.target is not None]
        if self.task == "multilabel":
            return {
                name: sum(int(c.target[i]) for c in cases)  # type: ignore[index]
                for i, name in enumerate(self.classes)
            }
        counts = Counter(int(c.target) for c in cases)  # type: ignore[arg-type]
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    def summary(self) -> dict[str, Any]:
        splits = sorted({c.split for c in self.cases})
        return {
            "source": file_ref(self.source) if self.source else "",  # a path may name a patient
            "task": self.task,
            "classes": self.classes,
            "cases": len(self.cases),
            "patients": len({c.patient_id for c in self.cases}),
            "per_split": {s: self.class_counts(s) for s in splits if s != UNLABELLED},
            "unlabelled": len(self.unlabelled()),
        }

    def to_csv(self, path: Path) -> None:
        meta_keys = sorted({k for c in self.cases for k in c.meta})
        label_cols = ["label"] if self.task != "multilabel" else list(self.classes)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            # the input by its keyed pseudonym, never its path (names may identify)
            w.writerow(["case_id", "patient_id", "file", "split", *label_cols, *meta_keys])
            for c in self.cases:
                if c.target is None:  # unlabelled: empty label cell(s)
                    labels = [""] * len(label_cols)
                elif self.task == "multilabel":
                    labels = [str(int(v)) for v in c.target]  # type: ignore[union-attr]
                else:
                    labels = [self.classes[int(c.target)]]  # type: ignore[arg-type]
                meta = [_cell(c.meta.get(k, "")) for k in meta_keys]
                w.writerow([c.case_id, c.patient_id, file_ref(c.path), c.split, *labels, *meta])

    def warn(self, code: str, message: str, **fields: Any) -> None:
        """Record a warning for the plan and the report, and log it."""
        log.warning("%s", message)
        self.warnings.append({"code": code, "message": message, **fields})

    def split_of(self) -> dict[str, str]:
        return {c.case_id: c.split for c in self.cases}


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def read_run_manifest(path: Path) -> dict[str, str]:
    """case_id -> split from a run's manifest.csv."""
    with open(path, newline="") as f:
        return {row["case_id"]: row["split"] for row in csv.DictReader(f)}
