"""What ``scandx serve`` was asked for: the runs, where to listen, the audit database,
the runtime and the limits. One typed object, checked once, passed to every worker
process as JSON (``SCANDX_SERVE_CONFIG``)."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scandx.errors import ScandxError
from scandx.serve.uploads import UploadLimits

RUNTIMES = ("torch", "onnx")
LOOPBACK_NAMES = ("localhost",)


@dataclass
class ServeConfig:
    runs: list[str] = field(default_factory=list)  # RUN or NAME=RUN
    host: str = "127.0.0.1"
    port: int = 8000
    db: str | None = None  # SQLAlchemy URL; None: the default SQLite file
    workers: int = 1
    runtime: str = "torch"
    max_upload_mb: float = 256.0
    max_pixels: int = 150_000_000
    max_queue: int = 16  # predictions running or waiting per worker; beyond: 503
    tls_cert: str | None = None
    tls_key: str | None = None
    # similar-case indexes (scandx embed), each attached to the served run whose weights
    # built it (matched by sha256)
    indexes: list[str] = field(default_factory=list)

    def check(self) -> None:
        if not self.runs:
            raise ScandxError("give at least one trained run: scandx serve RUN [RUN...]")
        if self.runtime not in RUNTIMES:
            raise ScandxError(f"unknown runtime {self.runtime!r}; choose {' or '.join(RUNTIMES)}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ScandxError("TLS needs both --tls-cert and --tls-key")
        for f in (self.tls_cert, self.tls_key):
            if f and not Path(f).is_file():
                raise ScandxError("TLS file not found", f)
        names = [name for name, _ in self.named_runs()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ScandxError(
                f"two runs would be served under the same name {dupes}; name them NAME=RUN"
            )
        for name, run in self.named_runs():
            if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise ScandxError(
                    f"model name {name!r}: use letters, digits, '-', '_' and '.' (NAME=RUN)"
                )
            if not (Path(run) / "model" / "model.json").is_file():
                raise ScandxError("no trained model here (model/model.json missing)", run)
        for index in self.indexes:
            if not (Path(index) / "manifest.json").is_file():
                raise ScandxError(
                    "--index: not a scandx index (build one with scandx embed)", index
                )

    def named_runs(self) -> list[tuple[str, str]]:
        out = []
        for spec in self.runs:
            name, sep, run = spec.partition("=")
            if not sep:
                name, run = Path(spec).resolve().name, spec
            out.append((name, run))
        return out

    def limits(self) -> UploadLimits:
        max_bytes = int(self.max_upload_mb * 2**20)
        return UploadLimits(
            max_bytes=max_bytes,
            max_pixels=self.max_pixels,
            max_extracted_bytes=max(4 * max_bytes, 2**20),
        )

    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
