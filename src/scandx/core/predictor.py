"""The Predictor protocol: what evaluate, predict, explain (and a server) use, for every task.

``load_predictor(run)`` returns the run's Predictor (an ensemble for a ``train --folds``
run: same protocol). A Predictor is built from ``RUN/model/`` alone (weights + model.json
+ plan.json) and imports no training code. Its surface:

- ``prepare(path)``: read one input (an image file, or a DICOM series folder) and check
  it against the model's input contract; raises ``ScandxError`` naming the input;
- ``score(prepared)``: the model's outputs for a list of prepared inputs (probabilities,
  decisions, uncertainty, ... as the task defines them), in fp32 on the Predictor's
  device;
- ``write(path, output, out_dir)``: write the prediction in the input's own format
  where the task has one (a mask as NIfTI / PNG / DICOM SEG; a classifier writes no
  file) and return the row for ``predictions.csv``.

``predict_files`` is the one predict loop (``scandx predict``) built on those three.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scandx.core.privacy import file_ref, scrub_paths
from scandx.core.run_dir import atomic_write, write_skipped
from scandx.errors import ScandxError


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Predictor(ABC):
    task: str  # the plan's task value (binary, multiclass, multilabel, segmentation)
    info: dict[str, Any]  # model.json
    device: str = "cpu"
    batch_size: int = 64  # inputs scored together by predict_files

    @abstractmethod
    def prepare(self, path: str | Path) -> Any: ...

    @abstractmethod
    def score(self, prepared: list[Any]) -> list[Any]: ...

    @abstractmethod
    def write(self, path: str | Path, output: Any, out_dir: Path | None) -> dict[str, Any]: ...

    def columns(self) -> list[str]:
        """predictions.csv columns after ``input`` and ``file`` (the task's; ``error``
        comes last)."""
        return []

    def predict_files(
        self, paths: Sequence[str | Path], out_dir: str | Path | None = None, skip_bad: bool = False
    ) -> list[dict[str, Any]]:
        """A row per input, in the order given (with ``skip_bad``, an ``error`` row for an
        unusable one); ``out_dir`` receives the task's files and ``predictions.csv``.

        A row names its input by ``input`` (its position in ``paths``, from 1) and
        ``file`` (``core.privacy.file_ref``: the keyed pseudonym of its path), never by
        the path, whose folder and file names may identify the patient."""
        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        bad: list[tuple[str, str]] = []
        for start in range(0, len(paths), self.batch_size):
            chunk, prepared, ok = paths[start : start + self.batch_size], [], []
            for i, p in enumerate(chunk, start=start + 1):
                try:
                    prepared.append(self.prepare(p))
                    ok.append((i, p))
                except ScandxError as e:
                    if not skip_bad:
                        raise
                    rows.append({**input_ref(i, p), "error": scrub_paths(e.reason)})
                    bad.append((str(p), e.reason))
            if prepared:
                for (i, p), output in zip(ok, self.score(prepared), strict=True):
                    rows.append({**input_ref(i, p), **self.write(p, output, out)})
        if out is not None:
            atomic_write(out / "predictions.csv", self.csv_text(rows))
            write_skipped(out, bad)
        return rows

    def csv_text(self, rows: list[dict[str, Any]]) -> str:
        keys = ["input", "file", *self.columns()]
        keys += [k for r in rows for k in r if k not in keys and k != "error"]
        keys = list(dict.fromkeys(keys)) + ["error"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k, "")) for k in keys})
        return buf.getvalue()


def input_ref(position: int, path: str | Path) -> dict[str, Any]:
    """How an output row names an input: its position among the inputs given (from 1)
    and its keyed pseudonym (``core.privacy.file_ref``)."""
    return {"input": position, "file": file_ref(path)}


def _cell(v: Any) -> Any:
    return f"{v:.6f}" if isinstance(v, float) else v


def read_model_json(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "model.json"
    if not path.exists():
        raise ScandxError(
            "no trained model here (model/model.json missing); run scandx train first", model_dir
        )
    return json.loads(path.read_text())


def checked_weights(model_dir: Path, info: dict[str, Any]) -> Path:
    """The weights file model.json names, after checking it against its sha256."""
    weights = Path(model_dir) / info["weights"]
    if not weights.exists():
        raise ScandxError("model weights missing", weights)
    if sha256(weights) != info["sha256"]:
        raise ScandxError("model weights do not match the checksum in model.json", weights)
    return weights


def ensemble_members(model_dir: Path, info: dict[str, Any]) -> list[Path]:
    """The member model folders of an ensemble, each checked: its model.json sha256 must
    be the one the ensemble recorded (a retrained or swapped fold is refused)."""
    members = []
    for rel, digest in zip(info["ensemble"], info["member_sha256"], strict=True):
        member = (Path(model_dir) / rel).resolve()
        member_info = read_model_json(member)
        if member_info.get("sha256") != digest:
            raise ScandxError("ensemble member does not match the ensemble's sha256", member)
        checked_weights(member, member_info)
        members.append(member)
    return members


def load_predictor(run: str | Path, device: str | None = None) -> Predictor:
    """The Predictor of any task's run (its ensemble for a cross-validated run)."""
    from scandx.core.run_dir import RunDir
    from scandx.tasks import task_for_run

    return task_for_run(run).load_predictor(RunDir(run), device)


def predict_run(
    run: str | Path,
    files: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    skip_bad: bool = False,
) -> list[dict[str, Any]]:
    """``scandx predict``: the run's Predictor on input files; ``out_dir`` receives
    predictions.csv (and the task's per-input files, e.g. masks)."""
    return load_predictor(run).predict_files(list(files), out_dir, skip_bad=skip_bad)
