"""Run-directory helpers shared by train, evaluate and predict."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch

from scandx.errors import ScandxError
from scandx.tasks.classification.data.manifest import UNLABELLED, Manifest
from scandx.tasks.classification.data.splits import check_patient_leakage

log = logging.getLogger(__name__)


def labels_tensor(manifest: Manifest, cases: list) -> torch.Tensor:
    """The targets of labelled cases (an unlabelled one is a programming error)."""
    if any(c.target is None for c in cases):
        raise ValueError("labels_tensor of unlabelled cases")
    if manifest.task == "multilabel":
        return torch.tensor([list(c.target) for c in cases], dtype=torch.long)
    return torch.tensor([int(c.target) for c in cases], dtype=torch.long)


def _recorded(manifest_csv: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(case_id -> split, patient_id -> split) from a run's manifest.csv."""
    cases: dict[str, str] = {}
    patients: dict[str, str] = {}
    with open(manifest_csv, newline="") as f:
        for row in csv.DictReader(f):
            cases[row["case_id"]] = row["split"]
            pid = row.get("patient_id") or ""
            if patients.get(pid, UNLABELLED) == UNLABELLED:  # a labelled case's split wins
                patients[pid] = row["split"]
    patients.pop("", None)
    return cases, patients


def apply_run_splits(manifest: Manifest, manifest_csv: Path, strict: bool) -> None:
    """Give cases the split recorded in a run.

    Case ids are content-based (``data/identity.py``), so an image of the run keeps its
    split whatever the CSV's row order or folder. A case the run never saw is
    ``external``, unless its patient is in the run: then it takes that patient's split
    (a new image of a training patient is not independent evidence). ``strict`` (resume)
    refuses any case the run does not know.

    A case the run holds as unlabelled (``--labelled-fraction`` or no label) has its
    label hidden; an unlabelled case outside the ``unlabelled`` split (a held-out
    patient's, or new to the run) is left out: it can be neither trained on nor scored."""
    if not manifest_csv.exists():
        raise ScandxError("run has no manifest.csv", manifest_csv)
    recorded, patient_split = _recorded(manifest_csv)
    inherited = 0
    for c in manifest.cases:
        if c.case_id in recorded:
            c.split = recorded[c.case_id]
        elif c.target is None and patient_split.get(c.patient_id) not in (None, UNLABELLED):
            c.split = ""  # a held-out patient's unlabelled image: left out, as when planned
        elif strict:
            raise ScandxError(
                f"case {c.case_id} is not in the run's manifest; resume needs the same data", c.path
            )
        elif c.patient_id in patient_split:
            c.split = patient_split[c.patient_id]
            inherited += 1
        else:
            c.split = "external"
    for c in manifest.cases:
        if c.split == UNLABELLED:
            c.target = None
    manifest.cases = [c for c in manifest.cases if c.target is not None or c.split == UNLABELLED]
    if inherited:
        log.warning(
            "%d new image(s) belong to patients of the run: they take their patient's split",
            inherited,
        )
    check_patient_leakage(manifest)
