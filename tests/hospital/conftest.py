"""Real DICOM servers and clients for the hospital tests.

A throwaway Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) per session: a JSON
config in a temp folder, its own storage, free HTTP and DICOM ports, HTTP for loopback
clients only (``RemoteAccessAllowed`` false), C-STORE accepted only from the AE titles
it knows at 127.0.0.1, the DICOMweb plugin loaded; stopped and removed at the end.
Studies are sent with dcmtk's ``storescu``. Without the Debian packages the tests skip
saying why; with ``SCANDX_REQUIRE_DICOM_TOOLS=1`` (``make test``) they fail instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests import system_tools
from tests.system_tools import free_port

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGINS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so.1.7",
)
NODE_AET = "SCANDX"
CLIENT_AET = "STORESCU"


def unavailable(reason: str) -> None:
    system_tools.unavailable(reason, "dicom-tools")


@dataclass
class OrthancServer:
    http_port: int
    dicom_port: int
    aet: str = "ORTHANC"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def dest(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    def get(self, path: str) -> object:
        r = httpx.get(self.url + path, timeout=30)
        r.raise_for_status()
        return r.json()

    def instances(self) -> list[dict]:
        return [self.get(f"/instances/{i}/simplified-tags") for i in self.get("/instances")]

    def clear(self) -> None:
        for study in self.get("/studies"):
            httpx.delete(f"{self.url}/studies/{study}", timeout=30).raise_for_status()


@pytest.fixture(scope="session")
def storescu() -> str:
    path = shutil.which("storescu")
    if not path:
        unavailable("dcmtk's storescu is not installed")
    return path


@pytest.fixture(scope="session")
def orthanc() -> Iterator[OrthancServer]:
    plugin = next((p for p in DICOMWEB_PLUGINS if Path(p).is_file()), None)
    if not Path(ORTHANC).is_file() or plugin is None:
        unavailable("Orthanc or its DICOMweb plugin is not installed")
    root = Path(tempfile.mkdtemp(prefix="scandx-orthanc-"))
    server = OrthancServer(free_port(), free_port())
    config = {
        "Name": "scandx-test",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "HttpPort": server.http_port,
        "DicomPort": server.dicom_port,
        "DicomAet": server.aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {
            "scandx": [NODE_AET, "127.0.0.1", 11112],
            "storescu": [CLIENT_AET, "127.0.0.1", 104],
        },
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "wb")
    proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=log, stderr=log)
    try:
        for _ in range(300):
            try:
                if httpx.get(server.url + "/system", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"Orthanc exited: {(root / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.1)
        else:
            pytest.fail("Orthanc did not start in 30 s")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def send_with_storescu(
    storescu: str, files: list[Path], port: int, aet: str = NODE_AET, calling: str = CLIENT_AET
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [storescu, "-aet", calling, "-aec", aet, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_study(folder: Path, n_slices: int = 4, seed: int = 0) -> list[Path]:
    """A small CT series (the synthetic SEG cases minus their SEG)."""
    from scandx.tasks.segmentation.synthetic import make_dicom_seg_cases

    make_dicom_seg_cases(folder, n=1, shape=(n_slices, 16, 16), seed=seed)
    (folder / "case00" / "seg.dcm").unlink()
    return sorted((folder / "case00").rglob("*.dcm"))


def fake_processor(study_dir: Path, out_dir: Path) -> list[Path]:
    """One result per series: its first instance with new series/SOP UIDs, marked as
    scandx's (what a real result's header looks like to the node)."""
    out = []
    for series in sorted(p for p in study_dir.iterdir() if p.is_dir()):
        ds = pydicom.dcmread(sorted(series.glob("*.dcm"))[0])
        ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription, ds.Manufacturer, ds.SeriesNumber = "scandx result", "scandx", 900
        path = out_dir / f"{series.name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def wait_for(predicate, timeout: float = 30.0, every: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())
