"""A real ``scandx serve`` process on 127.0.0.1 for the tests and benchmarks of the
service's HTTP behaviour: started with the project's own Python, watched through
/proc (resident memory), stopped or SIGKILLed by its process id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.system_tools import free_port

ROOT = Path(__file__).resolve().parents[2]


def scandx(*args: str, **kw) -> subprocess.CompletedProcess:
    """``python -m scandx ARGS`` in a child process (this checkout's source)."""
    return subprocess.run(
        [sys.executable, "-m", "scandx", *args], env=child_env(), capture_output=True, text=True,
        timeout=kw.pop("timeout", 120), **kw,
    )  # fmt: skip


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).strip(":")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@dataclass
class LiveServer:
    args: list[str]  # after `scandx serve`
    log: Path
    port: int = field(default_factory=free_port)
    scheme: str = "http"
    proc: subprocess.Popen | None = None
    peak_rss_kib: int = 0

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> LiveServer:
        import httpx

        cmd = [sys.executable, "-m", "scandx", "serve", *self.args, "--port", str(self.port)]
        out = open(self.log, "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env())
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scandx serve exited {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2, verify=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"scandx serve did not answer in {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        """The server's resident memory now (VmRSS), and the peak seen so far updated."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib = int(line.split()[1])
                    self.peak_rss_kib = max(self.peak_rss_kib, kib)
                    return kib
        except (OSError, AttributeError):
            pass
        return 0

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as when the machine loses power."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
