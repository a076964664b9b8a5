"""``scandx listen``: a DICOM node (pynetdicom SCP) that receives studies, runs the
models on each complete study and sends the results to a destination with C-STORE.

C-ECHO and C-STORE of every storage SOP class, in the transfer syntaxes of
``dimse.TRANSFER_SYNTAXES``; an association from a calling AE title not in
``allow_aet`` is refused (with no list, any title is accepted, and only on loopback:
``cli`` refuses another address without one). Each instance is checked and written
atomically before the success status leaves (``instances.Inbox``); a worker thread
runs the ``pipeline.Pipeline`` (complete after ``idle_s`` quiet seconds, process, send,
retry with back-off, dead-letter). Log lines name studies by keyed pseudonym only.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scandx.hospital.dimse import TRANSFER_SYNTAXES, Destination, send_files
from scandx.hospital.instances import BadInstance, Inbox, check_instance, is_own_result
from scandx.hospital.pipeline import Pipeline, Processor, RetryPolicy, open_state

log = logging.getLogger("scandx.hospital")
SUCCESS, CANNOT_UNDERSTAND, OUT_OF_RESOURCES = 0x0000, 0xC210, 0xA700


@dataclass
class NodeConfig:
    state_dir: Path
    dest: Destination
    aet: str = "SCANDX"
    host: str = "127.0.0.1"
    port: int = 11112  # 0: any free port (tests); DicomNode.port says which
    allow_aet: list[str] = field(default_factory=list)
    idle_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tick_s: float = 0.5


class DicomNode:
    def __init__(self, config: NodeConfig, processor: Processor):
        self.config = config
        self.state_dir, self.db = open_state(config.state_dir)
        self.inbox = Inbox(self.state_dir, self.db)
        self.pipeline = Pipeline(
            self.state_dir, self.db, processor, self._send, config.retry, config.idle_s
        )
        self._server: Any = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.config.port

    def _send(self, files: list[Path]) -> None:
        send_files(self.config.dest, files, self.config.aet)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Recover the state folder, listen, and start the worker; returns at once."""
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        self.pipeline.recover()
        ae = AE(ae_title=self.config.aet)
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        ae.require_calling_aet = list(self.config.allow_aet)
        ae.maximum_associations = 16
        handlers = [
            (evt.EVT_C_ECHO, lambda event: SUCCESS),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        self._server = ae.start_server(
            (self.config.host, self.config.port), block=False, evt_handlers=handlers
        )
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="scandx-node", daemon=True)
        self._worker.start()
        log.info(
            "scandx listen: %s on %s:%d, results to %s (complete after %g s idle)",
            self.config.aet,
            self.config.host,
            self.port,
            self.config.dest,
            self.config.idle_s,
        )

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._worker is not None:
            self._worker.join(timeout=60)
            self._worker = None
        self.db.close()

    def serve_forever(self) -> None:
        """Start, then wait for Ctrl-C / SIGTERM (the CLI turns it into KeyboardInterrupt)."""
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            log.info("scandx listen: stopping")
        finally:
            self.stop()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.pipeline.step()
            except Exception:  # never let one study stop the node
                log.exception("scandx listen: the worker hit an error; continuing")
                busy = False
            if not busy:
                self._stop.wait(self.config.tick_s)

    # -- event handlers (association threads) ----------------------------------------------
    def _on_store(self, event: Any) -> int:
        calling = str(event.assoc.requestor.ae_title).strip()
        try:
            raw = event.encoded_dataset()
        except Exception as e:
            self.db.add_reject(calling, f"unreadable C-STORE data ({type(e).__name__})")
            log.warning("refused an instance from %s: unreadable data", calling)
            return CANNOT_UNDERSTAND
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            uids = check_instance(ds)
        except BadInstance as e:
            self.inbox.reject(raw, calling, e.reason)
            return CANNOT_UNDERSTAND
        except Exception as e:
            self.inbox.reject(raw, calling, f"cannot decode the dataset ({type(e).__name__})")
            return CANNOT_UNDERSTAND
        if is_own_result(ds, self.db):
            log.info("ignored one of scandx's own results sent back by %s", calling)
            return SUCCESS
        try:
            outcome = self.inbox.store(raw, uids, time.time())
        except Exception as e:  # disk full, permissions: the sender keeps the instance
            log.error("cannot store an instance from %s (%s)", calling, type(e).__name__)
            return OUT_OF_RESOURCES
        if outcome == "duplicate":
            log.info("an instance already received was sent again by %s", calling)
        return SUCCESS

    def _on_accepted(self, event: Any) -> None:
        calling = str(event.assoc.requestor.ae_title).strip()
        for context in event.assoc.rejected_contexts:
            syntaxes = ", ".join(str(t) for t in context.transfer_syntax) or "none"
            log.warning(
                "association from %s: refused a presentation context (%s in transfer "
                "syntax %s: not supported)",
                calling,
                context.abstract_syntax.name,
                syntaxes,
            )
            self.db.add_reject(calling, f"unsupported transfer syntax {syntaxes}")

    def _on_rejected(self, event: Any) -> None:
        calling = str(event.assoc.requestor.ae_title).strip()
        allowed = self.config.allow_aet
        reason = (
            "calling AE title not allowed"
            if allowed and calling not in allowed
            else "association refused (too many associations)"
        )
        log.warning("refused an association from %s: %s", calling, reason)
        self.db.add_reject(calling, reason)
