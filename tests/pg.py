"""A real PostgreSQL server for the test session, from Debian's ``postgresql`` package.

:func:`start` runs ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin`` (the newest
installed) on a free loopback port, with its data and socket in a fresh folder under the system
temporary directory. initdb refuses to run as root, so as root the server runs as the ``postgres``
system user (which Debian's package creates) and the folder is handed to it. The superuser
``postgres`` connects through the socket without a password (trust); the application role
:data:`USER` connects over TCP with :data:`PASSWORD` (scram-sha-256), so password handling is
tested against real authentication. Durability is off (``fsync=off``): these servers are thrown
away, and it makes ``CREATE DATABASE`` per test cheap.

There is no fallback: without the binaries or the server, :func:`start` raises.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

USER = "zkqueue_test"
# Characters that must be percent-encoded in a URL, so the tests exercise the decoding too.
PASSWORD = "s3cr3t:p@ss/w%rd"
SYSTEM_USER = "postgres"


def bin_dir() -> Path:
    """The bin folder of the newest PostgreSQL installed from Debian's package."""
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if not found:
        raise RuntimeError(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: "
            "apt-get install postgresql (make setup does)"
        )
    newest = max(found, key=lambda p: float(Path(p).parts[-3]))
    return Path(newest).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    base: Path
    port: int
    bin: Path
    as_user: list[str]
    host: str = "127.0.0.1"
    options: str = ""

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    def url(self, dbname: str, *, password: bool = True, scheme: str = "postgresql") -> str:
        """The URL of dbname for the application role, with its password unless told not to."""
        auth = f"{USER}:{quote(PASSWORD, safe='')}" if password else USER
        return f"{scheme}://{auth}@{self.host}:{self.port}/{dbname}"

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        """A superuser connection through the socket, in autocommit mode."""
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres",
                               dbname=dbname, autocommit=True)

    def new_database(self) -> str:
        """Create an empty database owned by the application role; returns its URL."""
        name = f"inv_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(USER)))
        return self.url(name)

    def _ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data_dir),
                               *args], capture_output=True, text=True, timeout=timeout)

    def pause(self) -> None:
        """Stop the server but keep its data: clients see the database go away."""
        r = self._ctl("stop", "-m", "fast", "-w", "-t", "30")
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {r.stderr}")

    def resume(self) -> None:
        """Start a paused server again on the same port."""
        r = self._ctl("start", "-w", "-t", "60", "-l", str(self.base / "server.log"), "-o",
                      self.options, timeout=90)
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {r.stderr}")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder; safe to call twice."""
        if self.data_dir.exists():
            self._ctl("stop", "-m", "fast", "-w", "-t", "30")
        shutil.rmtree(self.base, ignore_errors=True)


def start(attempts: int = 3) -> PgServer:
    """Initialise and start a server; stopped at interpreter exit if :meth:`PgServer.stop`
    was not called."""
    pg_bin = bin_dir()
    # /tmp rather than $TMPDIR: the postgres user must reach the folder, and a socket path is
    # limited to about 100 bytes.
    tmp = "/tmp" if Path("/tmp").is_dir() else None
    base = Path(tempfile.mkdtemp(prefix="zkqueue-pg-", dir=tmp))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", SYSTEM_USER, "--"]
        try:
            shutil.chown(base, SYSTEM_USER, SYSTEM_USER)
        except LookupError as exc:
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"initdb cannot run as root and there is no {SYSTEM_USER} user: "
                               "apt-get install postgresql creates it") from exc
    server = PgServer(base=base, port=0, bin=pg_bin, as_user=as_user)
    atexit.register(server.stop)
    init = subprocess.run(
        [*as_user, str(pg_bin / "initdb"), "-D", str(server.data_dir), "-U", "postgres",
         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale",
         "--no-sync"],
        capture_output=True, text=True, timeout=120,
    )
    if init.returncode != 0:
        server.stop()
        raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr or init.stdout}")
    server.socket_dir.mkdir()
    if as_user:
        shutil.chown(server.socket_dir, SYSTEM_USER, SYSTEM_USER)
    log = base / "server.log"
    last = ""
    for _ in range(attempts):
        server.port = free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.socket_dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        r = server._ctl("start", "-w", "-t", "60", "-l", str(log), "-o", options, timeout=90)
        if r.returncode == 0:
            server.options = options
            break
        last = log.read_text(errors="replace")[-2000:] if log.exists() else r.stderr
    else:
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start: {last}")
    with server.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(USER), sql.Literal(PASSWORD)))
    return server
