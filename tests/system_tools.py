"""What some tests need from the machine: Debian tools and servers, free loopback ports.

``make test`` installs the tools (scripts/ensure-*.sh) and sets each kind's
``SCANDX_REQUIRE_*`` variable: a missing tool then fails the test. Elsewhere the test
skips, saying what is missing and how to get it."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import NoReturn

import pytest

# kind -> (the variable make test sets, the script that installs it)
KINDS = {
    "browser": ("SCANDX_REQUIRE_BROWSER", "scripts/ensure-chromium.sh"),
    "postgres": ("SCANDX_REQUIRE_POSTGRES", "scripts/ensure-postgres.sh"),
    "dicom-tools": ("SCANDX_REQUIRE_DICOM_TOOLS", "scripts/ensure-dicom-tools.sh"),
}


def unavailable(reason: str, kind: str) -> NoReturn:
    """Skip (or, under ``make test``, fail) a test whose tool of ``kind`` is missing."""
    variable, script = KINDS[kind]
    hint = f"make test installs it with {script}"
    if os.environ.get(variable):
        pytest.fail(f"{reason}; {hint}", pytrace=False)
    pytest.skip(f"{reason} ({hint})")


def require_tool(*names: str, kind: str, what: str) -> str:
    """The path of the first of ``names`` on PATH, else ``unavailable``."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    unavailable(f"{what} is not installed", kind)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_epochs(run: Path, epochs: int, timeout: float = 120.0) -> None:
    """Wait until ``run/log.jsonl`` holds ``epochs`` lines (a training to interrupt)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = run / "log.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= epochs:
            return
        time.sleep(0.05)
