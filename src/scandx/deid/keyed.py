"""The keyed replacements of de-identification: UIDs, patient ids, date offsets.

All three are HMAC-SHA256 under this installation's pseudonym secret (core/privacy.py),
so the same input gives the same output in every run, on every machine sharing the
secret, and nobody without the secret can recompute or invert them by guessing values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from scandx.core.privacy import pseudonym, secret

# dates are moved back by 1 to 10 years (whole days): far enough that the original
# day cannot be read off, near enough that ages and seasons stay plausible
SHIFT_DAYS = (365, 3650)


def _digest(kind: str, value: str) -> bytes:
    message = f"deid-{kind}\0{value}".encode("utf-8", "surrogateescape")
    return hmac.new(secret(), message, hashlib.sha256).digest()


def remap_uid(uid: str) -> str:
    """``2.25.<decimal of a UUID>`` (PS3.5 B.2) whose 122 free bits are the HMAC of
    ``uid``: one input UID gives one output UID, across files, studies and runs."""
    uid = uid.strip().rstrip("\0")
    if not uid:
        return uid
    raw = bytearray(_digest("uid", uid)[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8 (custom), RFC 9562
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant 10
    return f"2.25.{int.from_bytes(raw, 'big')}"


def patient_pseudonym(patient_id: str) -> str:
    """The new Patient ID and Patient's Name: ``pid-<16 hex>`` (core.privacy.pseudonym),
    the same pseudonym every other scandx output uses for this patient."""
    return pseudonym(patient_id.strip(), "pid")


def date_shift_days(patient_id: str) -> int:
    """How many days this patient's dates move back (Modified Dates option): one keyed
    offset per patient, so intervals between a patient's studies are kept."""
    low, high = SHIFT_DAYS
    n = int.from_bytes(_digest("dateshift", patient_id.strip())[:8], "big")
    return low + n % (high - low + 1)


def shift_da(value: str, days: int) -> str:
    """A DA value (``YYYYMMDD``; a range ``A-B`` shifts both ends) moved back ``days``."""
    return "-".join(_shift_date(part, days) if part else "" for part in value.split("-"))


def _shift_date(text: str, days: int) -> str:
    text = text.strip()
    try:
        day = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return "19000101"  # not a date: the dummy, never the original
    return (day - dt.timedelta(days=days)).strftime("%Y%m%d")


def shift_dt(value: str, days: int) -> str:
    """A DT value moved back ``days`` whole days; the time of day and a UTC offset stay.
    The first piece is a date-time; a later piece after ``-`` is a second one (a range)
    when it has 8 digits or more, else a UTC offset (kept)."""
    pieces = value.strip().split("-")
    out = []
    for i, piece in enumerate(pieces):
        if i == 0 or (len(piece) >= 8 and piece[:8].isdigit()):
            width = len(piece)
            if width >= 8:
                out.append(_shift_date(piece[:8], days) + piece[8:])
            elif piece:  # a year or year+month only: shift from its first day
                out.append(_shift_date(piece + "0101"[: 8 - width], days)[:width])
            else:
                out.append("")
        else:
            out.append(piece)
    return "-".join(out)
