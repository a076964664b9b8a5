"""The run directory: every path of the run-directory contract, for every task.

```
RUN/
  plan.json            the plan used (editable; reuse with --plan)
  manifest.csv         every case: id, patient, split, inputs, label(s)
  skipped.csv          inputs left out with --skip-bad, and why
  log.jsonl            one line per epoch (epochs counted from 1)
  train_summary.json   best epoch (from 1), its validation record, seconds
  checkpoints/         last.ckpt (resume), best.ckpt (a copy of the best weights)
  model/               model.json + weights.safetensors + model_card.md
  folds/fold<i>/       train --folds: one complete run per fold
  cv_summary.json      train --folds: per-fold validation, mean +- sd, out of fold
  eval/<split>/        metrics.json, report.html, predictions.csv (+ the task's files)
```

``RunDir`` owns these names, the "already holds a run" guard, the clean-up of a run
that failed before its first checkpoint, and atomic writes: files via a temporary
name and ``os.replace``, evaluation folders via a hidden partial folder swapped in
only when complete (a failure leaves the previous evaluation untouched).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scandx.core.privacy import scrub_paths, where_ref
from scandx.errors import ScandxError

log = logging.getLogger(__name__)
_MADE_BY_HOLD: set[Path] = set()  # run folders a RunDir.hold of this process created


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    # the contract's paths
    @property
    def plan_json(self) -> Path:
        return self.path / "plan.json"

    @property
    def manifest_csv(self) -> Path:
        return self.path / "manifest.csv"

    @property
    def skipped_csv(self) -> Path:
        return self.path / "skipped.csv"

    @property
    def log_jsonl(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def train_summary(self) -> Path:
        return self.path / "train_summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def model_json(self) -> Path:
        return self.model_dir / "model.json"

    @property
    def model_card(self) -> Path:
        return self.model_dir / "model_card.md"

    @property
    def cv_summary(self) -> Path:
        return self.path / "cv_summary.json"

    def fold(self, i: int) -> RunDir:
        return RunDir(self.path / "folds" / f"fold{i}")

    def eval_dir(self, split: str) -> Path:
        return self.path / "eval" / split

    def save_plan(self, plan: Any, skipped: list[tuple[str, str]]) -> None:
        """plan.json (atomically) and skipped.csv: what ``scandx plan`` leaves."""
        self.path.mkdir(parents=True, exist_ok=True)
        plan.save(self.plan_json)
        write_skipped(self.path, skipped)

    # state
    def has_model(self) -> bool:
        return self.model_json.exists()

    def can_resume(self) -> bool:
        return self.last_ckpt.exists()

    def guard_new(self, resume: bool) -> None:
        """Refuse to train over a run unless resuming."""
        if resume:
            return
        held = [d for d in ("model", "checkpoints", "folds") if (self.path / d).exists()]
        if held:
            raise ScandxError(
                "run directory already holds a run; use --resume or a new --out", self.path
            )

    def check_resumable(self) -> None:
        """``--resume`` needs a run to continue: at least its plan.json (a run killed
        before its first checkpoint restarts at epoch 1 with that plan, as saved)."""
        if not self.plan_json.exists():
            raise ScandxError("nothing to resume (no plan.json); train without --resume", self.path)

    def check_cases_present(self, present: set[str], data: str | Path) -> None:
        """Every case the run's manifest.csv lists is still in ``data`` (by case id); a
        resumed run never trains on what is left without a word."""
        if not self.manifest_csv.exists():
            return
        with open(self.manifest_csv, newline="") as f:
            recorded = [row["case_id"] for row in csv.DictReader(f)]
        missing = [c for c in recorded if c not in present]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise ScandxError(
                f"{len(missing)} of the {len(recorded)} cases in the run's manifest.csv are "
                f"missing from the data ({shown}); restore them to resume, or train a new run",
                data,
            )

    def read_json(self, path: Path) -> dict[str, Any]:
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ScandxError(f"{path.name} missing", path) from None
        except (OSError, ValueError) as e:  # not UTF-8, not JSON
            raise ScandxError(f"{path.name} is not valid JSON ({e})", path) from None
        if not isinstance(d, dict):
            raise ScandxError(f"{path.name} is not a JSON object", path)
        return d

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    def _is_new(self) -> bool:
        """No folder yet, or one ``hold`` created that holds nothing but its lock."""
        if not self.path.exists():
            return True
        made = self.path.resolve() in _MADE_BY_HOLD
        return made and all(p.name == ".lock" for p in self.path.iterdir())

    @contextlib.contextmanager
    def hold(self, create: bool = True) -> Iterator[RunDir]:
        """Hold the run for this process: ``fcntl.flock`` on ``RUN/.lock`` (the kernel
        releases it when the process ends, even by kill -9, so a lock is never stale).
        A second scandx process on the same run gets one line and exit 2. ``create``:
        make the folder (train, plan); otherwise a missing folder is not locked. A folder
        this call created and nothing but the lock was written to is removed again. Under
        DDP rank 0 alone holds the run (and writes it); other ranks do not lock it."""
        from scandx.core.distributed import is_main

        if not is_main():
            yield self
            return
        new = not self.path.exists()
        if new:
            if not create:
                yield self
                return
            self.path.mkdir(parents=True)
            _MADE_BY_HOLD.add(self.path.resolve())
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise ScandxError(
                    f"is in use by another scandx process (pid {pid}); wait for it to end",
                    self.path,
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield self
            finally:
                if new and self.path.exists() and self._is_new():
                    shutil.rmtree(self.path, ignore_errors=True)
        finally:
            os.close(fd)
            _MADE_BY_HOLD.discard(self.path.resolve())

    @contextlib.contextmanager
    def training(self) -> Iterator[RunDir]:
        """Create the run folder; if training fails before its first checkpoint, remove
        the folder again when this call created it (an interruption keeps it: --resume).
        Under DDP only rank 0 creates (or removes) it."""
        from scandx.core.distributed import is_main

        if not is_main():
            yield self
            return
        created = self._is_new()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            yield self
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:
            if created and not self.last_ckpt.exists():
                shutil.rmtree(self.path, ignore_errors=True)
            raise

    @contextlib.contextmanager
    def atomic_folder(self, final: Path) -> Iterator[Path]:
        """A hidden partial folder beside ``final``, swapped in when the block ends
        without error (removed otherwise)."""
        partial = final.with_name(f".{final.name}.partial")
        old = final.with_name(f".{final.name}.old")
        if old.exists() and not final.exists():  # killed between the two renames below
            old.rename(final)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            yield partial
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        partial.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def atomic_eval(self, split: str) -> contextlib.AbstractContextManager[Path]:
        return self.atomic_folder(self.eval_dir(split))


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(error: OSError, path: str | Path) -> ScandxError:
    """The one line for a full disk (or quota): which file could not be written."""
    return ScandxError(f"disk full while writing {Path(path).name} ({error.strerror})", path)


def atomic_write(path: str | Path, data: bytes | str, tmp: Path | None = None) -> None:
    """``data`` written to a temporary name beside ``path``, flushed, then renamed into
    place: a kill leaves the old file or the new one, never half of one. On any failure
    the temporary file is removed; a full disk is one line naming the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    with atomic_path(path, tmp) as t, open(t, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path, tmp: Path | None = None) -> Iterator[Path]:
    """A hidden temporary path (default ``.NAME.tmp``) to write ``path``'s content to (by
    any writer); renamed into place when the block ends without error, removed otherwise."""
    path = Path(path)
    tmp = tmp or path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            raise disk_full(e, path) from None
        raise


def write_json(path: Path, data: Any) -> None:
    """JSON written to a temporary name, then renamed into place."""
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def write_skipped(folder: str | Path, skipped: list[tuple[str, str]]) -> None:
    """``folder/skipped.csv``: what --skip-bad left out and why (nothing when none).

    Inputs are named by their keyed pseudonym (``file-<hex>``, ``:<line>`` for a CSV
    row; ``core.privacy.locate`` finds the file), never by a path: folder and file
    names may be patient names."""
    if not skipped:
        return
    path = Path(folder) / "skipped.csv"
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "reason"])
        w.writerows([(where_ref(where), scrub_paths(reason)) for where, reason in skipped])
    log.warning("skipped %d bad input(s); see %s", len(skipped), path)


def fresh_demo_folder(out: str | Path) -> Path:
    """An empty folder for ``scandx demo``: created, or emptied when an earlier demo made
    it (marked), never anything else."""
    out = Path(out)
    if out.exists():
        if not (out / "demo.marker").exists():
            raise ScandxError("exists and is not a scandx demo folder; choose another --out", out)
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "demo.marker").write_text("created by scandx demo\n")
    return out
