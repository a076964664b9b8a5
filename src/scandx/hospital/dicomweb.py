"""A small DICOMweb client (PS3.18) with httpx: QIDO-RS to find studies and series,
WADO-RS to retrieve a series (multipart/related; type="application/dicom"), STOW-RS to
store results. Error texts name the request kind and the HTTP status, never the URL
(its path holds Study Instance UIDs)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scandx.errors import ScandxError

DICOM_JSON = "application/dicom+json"
_BOUNDARY = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)
MAX_PARTS = 100_000


class DicomWebError(ScandxError):
    """The DICOMweb server could not be reached or answered an error."""


@dataclass(frozen=True)
class StudyRef:
    uid: str
    instances: int  # NumberOfStudyRelatedInstances (0 when the server does not say)


@dataclass(frozen=True)
class SeriesRef:
    uid: str
    manufacturer: str
    description: str


def _value(item: dict[str, Any], tag: str) -> Any:
    values = (item.get(tag) or {}).get("Value") or [None]
    return values[0]


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of a multipart/related message (RFC 2046), in order."""
    match = _BOUNDARY.search(content_type or "")
    if not match or not content_type.lower().startswith("multipart/"):
        raise DicomWebError(f"WADO-RS answered {content_type.split(';')[0]!r}, not multipart")
    delimiter = b"\r\n--" + match.group(1).encode("ascii")
    chunks = (b"\r\n" + body).split(delimiter)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):  # the close delimiter
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise DicomWebError("a multipart part has no header/body separator")
        parts.append(content)
        if len(parts) > MAX_PARTS:
            raise DicomWebError(f"more than {MAX_PARTS} parts in one answer")
    return parts


def join_multipart(parts: list[bytes], boundary: str) -> bytes:
    out = []
    for part in parts:
        out += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), part, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


class DicomWebClient:
    def __init__(self, base_url: str, timeout: float = 60.0, client: httpx.Client | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise ScandxError(f"--dicomweb {base_url!r}: expected an http:// or https:// URL")
        self.base = base_url.rstrip("/")
        self.http = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _request(self, what: str, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            response = self.http.request(method, self.base + path, **kw)
        except httpx.HTTPError as e:
            raise DicomWebError(
                f"{what}: the server cannot be reached ({type(e).__name__})"
            ) from None
        if response.status_code >= 400:
            raise DicomWebError(f"{what}: HTTP {response.status_code}")
        return response

    def _json(self, what: str, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        r = self._request(what, "GET", path, params=params, headers={"Accept": DICOM_JSON})
        if r.status_code == 204 or not r.content:
            return []
        try:
            data = r.json()
        except ValueError:
            raise DicomWebError(f"{what}: the answer is not JSON") from None
        if not isinstance(data, list):
            raise DicomWebError(f"{what}: the answer is not a list")
        return [d for d in data if isinstance(d, dict)]

    def find_studies(self, since: str | None = None, page: int = 500) -> list[StudyRef]:
        """Every study (QIDO-RS ``/studies``, paged), or those with a StudyDate on or after
        ``since`` (YYYYMMDD)."""
        found: list[StudyRef] = []
        params: dict[str, Any] = {"includefield": "00201208", "limit": page}
        if since:
            params["StudyDate"] = f"{since}-"
        while True:
            batch = self._json("QIDO-RS studies", "/studies", {**params, "offset": len(found)})
            for item in batch:
                uid = _value(item, "0020000D")
                if uid:
                    found.append(StudyRef(str(uid), int(_value(item, "00201208") or 0)))
            if len(batch) < page:
                return found

    def find_series(self, study_uid: str) -> list[SeriesRef]:
        items = self._json(
            "QIDO-RS series",
            f"/studies/{study_uid}/series",
            {"includefield": ["00080070", "0008103E"]},
        )
        return [
            SeriesRef(
                str(_value(i, "0020000E")),
                str(_value(i, "00080070") or ""),
                str(_value(i, "0008103E") or ""),
            )
            for i in items
            if _value(i, "0020000E")
        ]

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[bytes]:
        """The series' instances as Part-10 bytes (WADO-RS, any transfer syntax)."""
        r = self._request(
            "WADO-RS series",
            "GET",
            f"/studies/{study_uid}/series/{series_uid}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )
        return split_multipart(r.content, r.headers.get("content-type", ""))

    def store(self, files: list[Path]) -> None:
        """STOW-RS every file in one request; ``DicomWebError`` unless all were stored."""
        boundary = secrets.token_hex(16)
        body = join_multipart([Path(f).read_bytes() for f in files], boundary)
        r = self._request(
            "STOW-RS",
            "POST",
            "/studies",
            content=body,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": DICOM_JSON,
            },
        )
        try:
            answer = r.json() if r.content else {}
        except ValueError:
            answer = {}
        failed = (answer.get("00081198") or {}).get("Value") if isinstance(answer, dict) else None
        if r.status_code == 202 or failed:
            raise DicomWebError(f"STOW-RS: {len(failed or [])} of {len(files)} result(s) refused")
