"""DICOM networking pieces of the node: the destination, the transfer syntaxes it
accepts, and the C-STORE client that sends results."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pydicom import uid as pyuid

from scandx.data.dicom import read_header
from scandx.errors import ScandxError
from scandx.hospital.pipeline import DeliveryError

log = logging.getLogger("scandx.hospital")

# uncompressed, deflated, and the compressed syntaxes scanners and archives send
TRANSFER_SYNTAXES = [
    pyuid.ImplicitVRLittleEndian,
    pyuid.ExplicitVRLittleEndian,
    pyuid.DeflatedExplicitVRLittleEndian,
    pyuid.ExplicitVRBigEndian,
    pyuid.JPEGBaseline8Bit,
    pyuid.JPEGExtended12Bit,
    pyuid.JPEGLosslessSV1,
    pyuid.JPEGLossless,
    pyuid.JPEGLSLossless,
    pyuid.JPEGLSNearLossless,
    pyuid.JPEG2000Lossless,
    pyuid.JPEG2000,
    pyuid.HTJ2KLossless,
    pyuid.HTJ2KLosslessRPCL,
    pyuid.HTJ2K,
    pyuid.RLELossless,
]
_AET = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # PS3.5 AE: no backslash, <= 16 chars


def check_aet(title: str, what: str = "AE title") -> str:
    if not _AET.fullmatch(title) or not title.strip():
        raise ScandxError(f"{what} {title!r}: 1-16 printable characters, no backslash")
    return title.strip()


@dataclass(frozen=True)
class Destination:
    aet: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AET@HOST:PORT``."""
        aet, at, rest = text.rpartition("@")
        host, colon, port = rest.rpartition(":")
        if not at or not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ScandxError(f"--dest {text!r}: expected AET@HOST:PORT, e.g. PACS@10.0.0.5:104")
        return cls(check_aet(aet, "--dest AE title"), host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


def send_files(dest: Destination, files: list[Path], calling_aet: str, timeout: float = 30) -> None:
    """C-STORE every file in one association; ``DeliveryError`` unless every file got a
    success or warning status."""
    from pynetdicom import AE

    if not files:
        return
    headers = [read_header(Path(f)) for f in files]
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    wanted = sorted({(h.SOPClassUID, h.file_meta.TransferSyntaxUID) for h in headers})
    for sop_class in sorted({c for c, _ in wanted}):
        syntaxes = sorted({t for c, t in wanted if c == sop_class} | {pyuid.ExplicitVRLittleEndian})
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.aet)
    if not assoc.is_established:
        raise DeliveryError(f"no association with {dest}")
    try:
        for path in files:
            try:
                status = assoc.send_c_store(path)
            except (ValueError, AttributeError) as e:  # no accepted context for this object
                raise DeliveryError(f"{dest} cannot take a result ({e})") from None
            code = getattr(status, "Status", None)
            if code is None:
                raise DeliveryError(f"{dest} did not answer a C-STORE (connection lost)")
            if code != 0 and not 0xB000 <= code <= 0xBFFF:
                raise DeliveryError(f"{dest} refused a result (status 0x{code:04X})")
    finally:
        if assoc.is_established:
            assoc.release()
