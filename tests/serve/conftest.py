"""A real PostgreSQL server for the service's store tests: a throwaway cluster.

``initdb`` in a temporary folder, started with ``pg_ctl`` on 127.0.0.1 and a free port
(its unix socket in that folder, nothing else listened on), stopped and removed at the
end of the session. The binaries are Debian's (``scripts/ensure-postgres.sh`` installs
them; ``make test`` runs it). PostgreSQL refuses to run as root, so under root the
binaries run as the ``postgres`` system user, which owns the folder. Without the
binaries the tests skip, saying why; with ``SCANDX_REQUIRE_POSTGRES=1`` (``make test``)
they fail instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.system_tools import free_port, unavailable

PG_USER = "scandx"


def _unavailable(reason: str) -> None:
    unavailable(reason, "postgres")


def _bin_dir() -> Path | None:
    """The newest installed server's bin folder (Debian keeps it off PATH)."""

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path))

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass
class PostgresServer:
    root: Path
    port: int
    password: str
    bin_dir: Path
    run_as: pwd.struct_passwd | None

    def url(self, database: str) -> str:
        return f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def run(self, *args: str | Path) -> subprocess.CompletedProcess:
        """A server binary, as the ``postgres`` user when we are root."""
        user = {}
        if self.run_as is not None:
            user = {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "HOME": str(self.root),
        }
        return subprocess.run(
            [str(self.bin_dir / args[0]), *map(str, args[1:])],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **user,
        )

    def sql(self, statement: str) -> None:
        """One statement (CREATE/DROP DATABASE) on the maintenance database."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as c:
            c.execute(statement)


def _start(bin_dir: Path) -> PostgresServer:
    run_as = None
    if os.geteuid() == 0:
        try:
            run_as = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no `postgres` system user to run as")
    root = Path(tempfile.mkdtemp(prefix="scandx-pg-"))  # 0700; short: the socket path
    server = PostgresServer(root, 0, secrets.token_hex(16), bin_dir, run_as)
    pwfile = root / "password"
    pwfile.write_text(server.password + "\n")
    if run_as is not None:
        for path in (root, pwfile):
            os.chown(path, run_as.pw_uid, run_as.pw_gid)
    init = server.run(
        "initdb", "-D", root / "data", "-U", PG_USER, "--pwfile", pwfile, "--auth-local=trust",
        "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
    )  # fmt: skip
    pwfile.unlink()
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr.strip()[-2000:]}", pytrace=False)
    conf = root / "data" / "postgresql.conf"
    base_conf = conf.read_text()
    for _ in range(5):  # a port taken between choosing and binding: choose again
        server.port = free_port()
        conf.write_text(
            base_conf
            + "\nlisten_addresses = '127.0.0.1'\n"
            + f"port = {server.port}\nunix_socket_directories = '{root}'\n"
            # throwaway data, never crashed: no fsync, for speed
            + "fsync = off\nfull_page_writes = off\nshared_buffers = 16MB\n"
        )
        started = server.run(
            "pg_ctl", "-D", root / "data", "-l", root / "log", "-w", "-t", "60", "start"
        )
        if started.returncode == 0:
            return server
    log = (root / "log").read_text()[-2000:] if (root / "log").exists() else started.stderr
    shutil.rmtree(root, ignore_errors=True)
    pytest.fail(f"PostgreSQL did not start: {log.strip()}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the whole session."""
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        _unavailable("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb)")
    server = _start(bin_dir)
    try:
        server.sql("CREATE DATABASE scandx_test")
        yield server
    finally:
        server.run("pg_ctl", "-D", server.root / "data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """``postgresql://`` URL of a database on the session's throwaway server (shared by
    the session's tests: use ``fresh_postgres_url`` for an empty one)."""
    return postgres_server.url("scandx_test")


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty database of its own for one test, dropped afterwards."""
    name = f"t_{secrets.token_hex(6)}"
    postgres_server.sql(f"CREATE DATABASE {name}")
    yield postgres_server.url(name)
    postgres_server.sql(f"DROP DATABASE {name} WITH (FORCE)")
