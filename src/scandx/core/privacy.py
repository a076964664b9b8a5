"""Keyed pseudonyms: the only form in which an identifier may reach an output.

A bare hash of a patient identifier is not a pseudonym: PatientIDs are short and
guessable, so anyone holding ``manifest.csv`` recovers them by hashing candidates (a
numeric id took 3.4 s). Here every identifier (patient id, UID, a folder or file name
that may carry one, an image's content digest used as a case id) is replaced by an
HMAC-SHA256 keyed with a per-installation secret that never leaves the machine and is
never written into a run directory.

The secret is 32 random bytes, hex, in ``$SCANDX_SECRET_FILE`` if set, else
``$SCANDX_CONFIG_DIR/secret``, else ``$XDG_CONFIG_HOME/scandx/secret`` (default
``~/.config/scandx/secret``). It is created on first use, readable by its owner only.
Machines of one site that must produce the same pseudonyms (a training machine and
the inference server evaluating its test split) share the file; keep it as you keep
the data it protects.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from scandx.errors import ScandxError

SECRET_BYTES = 32
DIGEST_CHARS = 16  # 64 bits: collisions need ~4e9 identifiers


def config_dir() -> Path:
    """This installation's scandx folder: ``$SCANDX_CONFIG_DIR``, else
    ``$XDG_CONFIG_HOME/scandx`` (default ``~/.config/scandx``)."""
    config = os.environ.get("SCANDX_CONFIG_DIR")
    if config:
        return Path(config).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(xdg) / "scandx"


def secret_path() -> Path:
    explicit = os.environ.get("SCANDX_SECRET_FILE")
    if explicit:
        return Path(explicit).expanduser()
    return config_dir() / "secret"


@functools.lru_cache(maxsize=8)
def _secret_at(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # secret + serve.db
        try:  # O_EXCL: two processes creating it at once agree on the winner's secret
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(SECRET_BYTES) + "\n")
    try:
        text = path.read_text().strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError) as e:
        raise ScandxError(f"cannot read the pseudonym secret ({e})", path) from None
    if len(key) < 16:
        raise ScandxError("the pseudonym secret is shorter than 16 bytes", path)
    return key


def secret() -> bytes:
    """This installation's pseudonym key (created on first use)."""
    return _secret_at(secret_path())


def pseudonym(value: str, kind: str = "pid") -> str:
    """``<kind>-<16 hex>``: the same value and kind give the same pseudonym on this
    installation; without the secret it cannot be inverted by guessing values."""
    message = f"{kind}\0{value}".encode("utf-8", "surrogateescape")
    digest = hmac.new(secret(), message, hashlib.sha256).hexdigest()
    return f"{kind}-{digest[:DIGEST_CHARS]}"


def is_pseudonym(text: str, kind: str = "pid") -> bool:
    head, _, tail = text.partition("-")
    return head == kind and len(tail) == DIGEST_CHARS and all(c in "0123456789abcdef" for c in tail)


def file_ref(path: str | Path) -> str:
    """How every output names an input file: ``file-<16 hex>``, the keyed pseudonym of
    its absolute resolved path. Folder and file names often hold patient names or ids,
    so no output carries them; the same file gets the same reference in every command
    (train, evaluate, predict, explain) on this installation, and ``locate`` finds it
    again."""
    p = Path(path).expanduser()
    try:
        p = p.resolve()
    except (OSError, RuntimeError):  # a symlink loop: its name as given
        p = p.absolute()
    return pseudonym(str(p), "file")


def locate(refs: Iterable[str], under: str | Path) -> dict[str, Path]:
    """``{reference: file}`` for the files (and folders: DICOM series) under ``under``
    whose ``file_ref`` is one of ``refs``: how a user finds an output's input again."""
    wanted, found = set(refs), {}
    root = Path(under)
    for p in [root, *root.rglob("*")]:
        ref = file_ref(p)
        if ref in wanted:
            found[ref] = p
    return found


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[^\s'\",;()\[\]<>]+")


def scrub_paths(text: str) -> str:
    """``text`` with every absolute path in it replaced by its ``file_ref`` (a reason
    text such as "image file not found: /data/<patient>/x.dcm" may name one)."""

    def ref(m: re.Match) -> str:
        path = m.group().rstrip(".:")
        return file_ref(path) + m.group()[len(path) :]

    return _ABSOLUTE_PATH.sub(ref, text)


def where_ref(where: str | Path | None) -> str:
    """An error's location for an output: ``file-<hex>`` for a file, ``file-<hex>:<line>``
    for a line of a CSV (the line number is kept: it finds the row again); a pseudonym
    (a case id) stays as it is."""
    text = str(where or "")
    if is_pseudonym(text, text.partition("-")[0]):  # already one (a case id)
        return text
    head, sep, line = text.rpartition(":")
    if sep and line.isdigit() and head:
        return f"{file_ref(head)}:{line}"
    return file_ref(text) if text else ""


# column names that hold (or may hold) a direct identifier; their values are keyed too
_IDENTIFYING = re.compile(
    r"name|mrn|accession|birth|dob|address|street|zip|postcode|phone|fax|e.?mail|ssn|"
    r"social|insurance|medical.?record|nhs|uid|(?<!i)date|(^|[_ .-])id$|^id$",
    re.IGNORECASE,
)


def identifying_column(name: str) -> bool:
    """A metadata column named like an identifier (PatientName, accession, MRN, birth
    date, a ``*_id``...): its values reach outputs only as keyed pseudonyms."""
    return bool(_IDENTIFYING.search(name.strip()))
