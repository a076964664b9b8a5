"""``scandx pacs``: the DICOMweb loop. Each poll finds the PACS's studies (QIDO-RS),
retrieves those not yet processed (WADO-RS, series by series, skipping series scandx
created), runs the processor and stores the results back (STOW-RS), with the node's
state folder, statuses, retries and dead-letter (``pipeline.Pipeline``).

What was processed is remembered by keyed pseudonym in ``state.db``; a restarted loop
neither processes a study twice nor loses one retrieved but not processed. Our results
land in the same study: their series are remembered (and marked Manufacturer
``scandx``), so they are never retrieved or processed as input. A study is processed
once: series added to it afterwards are not (the status says ``sent``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from scandx.core.privacy import pseudonym
from scandx.hospital.dicomweb import DicomWebClient, DicomWebError, StudyRef
from scandx.hospital.instances import (
    OWN_MANUFACTURER,
    BadInstance,
    Inbox,
    check_instance,
    is_own_result,
    read_instance,
)
from scandx.hospital.pipeline import DeliveryError, Pipeline, Processor, RetryPolicy, open_state
from scandx.hospital.state import RECEIVED, RECEIVING

log = logging.getLogger("scandx.hospital")
SOURCE = "DICOMWEB"  # the "calling AE" of rows about refused instances


@dataclass
class PacsConfig:
    url: str
    state_dir: Path
    poll_s: float = 60.0
    since: str | None = None  # YYYYMMDD: only studies dated on or after
    settle_s: float = 0.0  # a study is taken when its instance count held this long
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class PacsLoop:
    def __init__(
        self, config: PacsConfig, processor: Processor, client: DicomWebClient | None = None
    ):
        self.config = config
        self.client = client or DicomWebClient(config.url)
        self.state_dir, self.db = open_state(config.state_dir)
        self.inbox = Inbox(self.state_dir, self.db)
        self.pipeline = Pipeline(
            self.state_dir, self.db, processor, self._store, config.retry, idle_s=math.inf
        )
        self._counts: dict[str, tuple[int, float]] = {}  # study -> (instances, since when)
        self.pipeline.recover()

    def close(self) -> None:
        self.client.close()
        self.db.close()

    def _store(self, files: list[Path]) -> None:
        try:
            self.client.store(files)
        except DicomWebError as e:
            raise DeliveryError(e.reason) from None

    def poll(self) -> int:
        """One pass: find, retrieve, process, store. Returns the studies taken in."""
        try:
            studies = self.client.find_studies(self.config.since)
        except DicomWebError as e:
            log.warning("scandx pacs: cannot list studies (%s); next poll will retry", e.reason)
            studies = []
        taken = 0
        for ref in studies:
            key = pseudonym(ref.uid, "study")
            row = self.db.get(key)
            if row is not None and row.status != RECEIVING:
                continue  # processed, being processed, or finished
            if not self._settled(key, ref):
                continue
            try:
                self._retrieve(key, ref.uid)
            except DicomWebError as e:
                log.warning("%s: retrieval failed (%s); next poll will retry", key, e.reason)
                continue
            taken += 1
        while self.pipeline.step():
            pass
        return taken

    def run(self, once: bool = False) -> None:
        while True:
            self.poll()
            if once:
                return
            time.sleep(self.config.poll_s)

    def _settled(self, key: str, ref: StudyRef) -> bool:
        if self.config.settle_s <= 0:
            return True
        now = time.monotonic()
        count, since = self._counts.get(key, (-1, now))
        if count != ref.instances:
            self._counts[key] = (ref.instances, now)
            return False
        return now - since >= self.config.settle_s

    def _retrieve(self, key: str, study_uid: str) -> None:
        stored = duplicates = 0
        for series in self.client.find_series(study_uid):
            own = self.db.is_own_series(pseudonym(series.uid, "series"))
            if own or series.manufacturer.strip().lower() == OWN_MANUFACTURER:
                continue
            for raw in self.client.retrieve_series(study_uid, series.uid):
                try:
                    ds = read_instance(raw)
                    uids = check_instance(ds)
                    if uids[0] != study_uid:
                        raise BadInstance("the server answered an instance of another study")
                except BadInstance as e:
                    self.inbox.reject(raw, SOURCE, e.reason)
                    continue
                if is_own_result(ds, self.db):
                    continue
                if self.inbox.store(raw, uids, time.time()) == "stored":
                    stored += 1
                else:
                    duplicates += 1
        if stored + duplicates == 0:
            self.db.set_status(key, RECEIVED, "nothing retrievable")
        else:
            self.db.set_status(key, RECEIVED)
        log.info("%s: retrieved %d instance(s) (%d already here)", key, stored, duplicates)
