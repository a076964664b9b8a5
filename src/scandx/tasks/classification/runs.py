"""Run-directory helpers shared by train, evaluate and predict."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from scandx.errors import ScandxError
from scandx.tasks.classification.data.manifest import Manifest, read_run_manifest
from scandx.tasks.classification.data.splits import check_patient_leakage

log = logging.getLogger(__name__)


def labels_tensor(manifest: Manifest, cases: list) -> torch.Tensor:
    if manifest.task == "multilabel":
        return torch.tensor([list(c.target) for c in cases], dtype=torch.long)
    return torch.tensor([int(c.target) for c in cases], dtype=torch.long)


def apply_run_splits(manifest: Manifest, manifest_csv: Path, strict: bool) -> None:
    """Give cases the split recorded in a run; unknown cases keep the source's or 'external'."""
    if not manifest_csv.exists():
        raise ScandxError("run has no manifest.csv", manifest_csv)
    recorded = read_run_manifest(manifest_csv)
    for c in manifest.cases:
        if c.case_id in recorded:
            c.split = recorded[c.case_id]
        elif strict:
            raise ScandxError(
                f"case {c.case_id} is not in the run's manifest; resume needs the same data", c.path
            )
        elif not c.split:
            c.split = "external"
    check_patient_leakage(manifest)
