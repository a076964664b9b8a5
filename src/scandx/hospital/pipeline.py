"""What happens to a study once it is in the state folder, for the DICOM node and the
DICOMweb loop alike: complete -> processed -> sent, with retries, a dead-letter folder
and recovery after a restart.

State folder::

    state.db                      statuses (hospital/state.py)
    incoming/<study>/<series>/<sop>.dcm
    results/<study>/...           results waiting to be sent (same files on every try)
    dead-letter/<study>/          incoming/, results/, reason.json
    rejected/<file-key>.bin       instances that could not be decoded

A processor is ``(study folder, results folder) -> result files`` (written inside the
results folder); an empty list means no series of the study is one a model applies to.
A sender raises ``DeliveryError`` when the destination cannot take the results.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scandx.core.privacy import pseudonym, scrub_paths
from scandx.core.run_dir import atomic_write
from scandx.data.dicom import read_header
from scandx.errors import ScandxError
from scandx.hospital.state import (
    FAILED,
    NO_APPLICABLE,
    PROCESSED,
    PROCESSING,
    RECEIVED,
    RECEIVING,
    SENT,
    StateDB,
)

log = logging.getLogger("scandx.hospital")
Processor = Callable[[Path, Path], list[Path]]
Sender = Callable[[list[Path]], None]


class DeliveryError(Exception):
    """The destination did not take the results (down, refused, a failure status)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 30.0  # first wait; doubled after each failed try
    max_s: float = 3600.0

    def delay(self, attempts: int) -> float:
        return min(self.max_s, self.base_s * 2 ** max(0, attempts - 1))


def open_state(state_dir: str | Path) -> tuple[Path, StateDB]:
    root = Path(state_dir)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.chmod(0o700)  # it holds received images
    return root, StateDB(root / "state.db")


class Pipeline:
    def __init__(
        self,
        state_dir: Path,
        db: StateDB,
        processor: Processor,
        sender: Sender,
        retry: RetryPolicy | None = None,
        idle_s: float = 30.0,
    ):
        self.db, self.processor, self.sender = db, processor, sender
        self.retry, self.idle_s = retry or RetryPolicy(), idle_s
        self.incoming = state_dir / "incoming"
        self.results = state_dir / "results"
        self.dead = state_dir / "dead-letter"
        for folder in (self.incoming, self.results, self.dead):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- after a restart ---------------------------------------------------------------
    def recover(self) -> None:
        """Nothing received is lost and nothing sent is redone: instances written but not
        yet recorded are recorded; a study cut off while processing is processed again
        (none of it was sent); results cut off while sending are sent as they are."""
        now = time.time()
        for path in sorted(self.incoming.glob("study-*/series-*/sop-*.dcm")):
            if self.db.add_instance(path.parts[-3], path.stem, now):
                log.info("%s: recovered an instance received before the restart", path.parts[-3])
        for row in self.db.all(PROCESSING):
            log.info("%s: was being processed at the restart; processing again", row.study)
            self.db.set_status(row.study, RECEIVED)
        for row in self.db.all(PROCESSED):
            if not (self.results / row.study).is_dir():
                log.warning("%s: its results are missing; processing again", row.study)
                self.db.set_status(row.study, RECEIVED)
        for partial in self.results.glob(".*.partial"):
            shutil.rmtree(partial, ignore_errors=True)

    # -- one pass ----------------------------------------------------------------------
    def step(self, now: float | None = None) -> bool:
        """Promote idle studies, process what is complete, send what is due; True when
        anything was done."""
        now = time.time() if now is None else now
        done = False
        for row in self.db.all(RECEIVING):
            if row.last_instance_at + self.idle_s <= now:
                log.info("%s: complete (%d instance(s))", row.study, row.instances)
                self.db.set_status(row.study, RECEIVED)
        for row in self.db.all(RECEIVED):
            self.process(row.study)
            done = True
        for row in self.db.all(PROCESSED):
            if row.next_attempt_at <= time.time():
                self.deliver(row.study)
                done = True
        return done

    def process(self, study: str) -> None:
        self.db.set_status(study, PROCESSING)
        partial = self.results / f".{study}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        (self.incoming / study).mkdir(mode=0o700, exist_ok=True)  # none retrieved: empty
        try:
            files = [Path(f) for f in self.processor(self.incoming / study, partial)]
            outside = [f for f in files if not f.resolve().is_relative_to(partial.resolve())]
            if outside:
                raise ScandxError("the processor wrote a result outside its results folder")
            series = {pseudonym(_series_uid(f), "series") for f in files}
        except ScandxError as e:
            shutil.rmtree(partial, ignore_errors=True)
            self.fail(study, f"processing failed: {scrub_paths(e.reason)}")
            return
        except Exception as e:  # a bug must not stop the node; its type, no data
            shutil.rmtree(partial, ignore_errors=True)
            log.exception("%s: the processor crashed", study)
            self.fail(study, f"processing failed: {type(e).__name__}")
            return
        if not files:
            shutil.rmtree(partial, ignore_errors=True)
            log.warning("%s: no series a model applies to; nothing sent", study)
            self.db.set_status(study, NO_APPLICABLE, "no series a model applies to", results=0)
            shutil.rmtree(self.incoming / study, ignore_errors=True)
            return
        self.db.add_own_series(study, series)  # before sending: they may come back to us
        final = self.results / study
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        self.db.set_status(study, PROCESSED, results=len(files), attempts=0, next_attempt_at=0)
        log.info("%s: %d result file(s) ready", study, len(files))

    def deliver(self, study: str) -> None:
        files = sorted(p for p in (self.results / study).rglob("*") if p.is_file())
        row = self.db.get(study)
        attempts = (row.attempts if row else 0) + 1
        try:
            self.sender(files)
        except DeliveryError as e:
            reason = scrub_paths(str(e))
            if attempts >= self.retry.max_attempts:
                self.fail(study, f"not delivered after {attempts} attempt(s): {reason}", attempts)
                return
            wait = self.retry.delay(attempts)
            log.warning(
                "%s: delivery attempt %d failed (%s); next try in %.0f s",
                study,
                attempts,
                reason,
                wait,
            )
            self.db.set_status(
                study, PROCESSED, reason, attempts=attempts, next_attempt_at=time.time() + wait
            )
            return
        self.db.set_status(study, SENT, attempts=attempts)
        log.info("%s: %d result file(s) sent", study, len(files))
        shutil.rmtree(self.results / study, ignore_errors=True)
        shutil.rmtree(self.incoming / study, ignore_errors=True)

    def fail(self, study: str, reason: str, attempts: int | None = None) -> None:
        """Move what the study has (instances, results) to ``dead-letter/<study>/`` with
        ``reason.json``; status ``failed`` with the reason."""
        target = self.dead / study
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, source in (
            ("incoming", self.incoming / study),
            ("results", self.results / study),
        ):
            if source.exists():
                shutil.rmtree(target / name, ignore_errors=True)
                source.rename(target / name)
        fields = {} if attempts is None else {"attempts": attempts}
        atomic_write(
            target / "reason.json",
            json.dumps({"study": study, "reason": reason, "at": time.time(), **fields}, indent=1),
        )
        self.db.set_status(study, FAILED, reason, **fields)
        log.error("%s: failed, moved to the dead-letter folder: %s", study, reason)


def _series_uid(path: Path) -> str:
    try:
        ds = read_header(Path(path), specific_tags=["SeriesInstanceUID"])
        return str(ds.SeriesInstanceUID)
    except Exception as e:
        raise ScandxError(f"a result file is not DICOM ({type(e).__name__})") from None
