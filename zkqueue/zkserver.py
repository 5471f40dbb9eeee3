"""A standalone ZooKeeper server from Debian's ``zookeeper`` package.

Guarantees: :func:`start` returns only once the server answers ``ruok`` with ``imok`` (or raises
:class:`ZooKeeperUnavailable` with the server's own log tail); the server runs in its own process
group, so :func:`stop` ends it and nothing it started. Everything it writes (``zoo.cfg``, the pid
file, the log, the snapshots) lives under ``data_dir``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

JARS = "/usr/share/java"
DEFAULT_CLASSPATH = ":".join(
    [
        "/etc/zookeeper/conf",
        f"{JARS}/zookeeper.jar",
        f"{JARS}/netty-codec.jar",  # without it every connection drops
        f"{JARS}/netty-resolver.jar",
        f"{JARS}/slf4j-nop.jar",
    ]
)
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


class ZooKeeperUnavailable(RuntimeError):
    """The server could not be installed, started or reached."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    data_dir: Path
    pid: int

    @property
    def connect_string(self) -> str:
        return f"{self.host}:{self.port}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def four_letter(host: str, port: int, word: str = "ruok", timeout: float = 1.0) -> str:
    """Send a four-letter command; '' when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def ensure_installed() -> None:
    """Install Debian's zookeeper package when its jar is missing (needs root and apt)."""
    if Path(f"{JARS}/zookeeper.jar").exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise ZooKeeperUnavailable(
            f"{JARS}/zookeeper.jar is missing; install Debian's package: apt-get install zookeeper"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "zookeeper"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ZooKeeperUnavailable(f"{' '.join(cmd)} failed: {done.stderr.strip()[-2000:]}")


def _pidfile(data_dir: Path) -> Path:
    return data_dir / "zookeeper.pid"


def running(data_dir: Path) -> Server | None:
    """The server recorded in ``data_dir`` if its process is alive and answers."""
    data_dir = Path(data_dir)
    try:
        pid_s, host, port_s = _pidfile(data_dir).read_text().split()
        pid, port = int(pid_s), int(port_s)
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    if four_letter(host, port) != "imok":
        return None
    return Server(host, port, data_dir, pid)


def start(
    data_dir: Path | str,
    port: int = 2181,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
    tick_ms: int = 2000,
) -> Server:
    """Start a server on ``host:port`` keeping its data in ``data_dir``; reuse one already there."""
    data_dir = Path(data_dir).resolve()
    if (server := running(data_dir)) is not None:
        return server
    ensure_installed()
    java = shutil.which("java")
    if java is None:
        raise ZooKeeperUnavailable("java is not on PATH; ZooKeeper needs a Java runtime")
    if four_letter(host, port):
        raise ZooKeeperUnavailable(f"{host}:{port} is already in use by another server")
    (data_dir / "data").mkdir(parents=True, exist_ok=True)
    cfg = data_dir / "zoo.cfg"
    cfg.write_text(
        "\n".join(
            [
                f"tickTime={tick_ms}",
                f"dataDir={data_dir / 'data'}",
                f"clientPort={port}",
                f"clientPortAddress={host}",
                "admin.enableServer=false",
                "maxClientCnxns=0",
                "4lw.commands.whitelist=ruok,stat,mntr,srvr,cons",
                "autopurge.snapRetainCount=3",
                "autopurge.purgeInterval=1",
                # Large multis are chunked by the queue; this only keeps a runaway one from
                # taking the server down.
                "jute.maxbuffer=4194304",
                "",
            ]
        )
    )
    classpath = os.environ.get("ZKQUEUE_ZK_CLASSPATH", DEFAULT_CLASSPATH)
    log = open(data_dir / "zookeeper.log", "ab")
    proc = subprocess.Popen(
        [java, "-Xmx512m", "-Djute.maxbuffer=4194304", "-cp", classpath, MAIN_CLASS, str(cfg)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=data_dir,
        start_new_session=True,
    )
    log.close()
    _pidfile(data_dir).write_text(f"{proc.pid} {host} {port}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if four_letter(host, port) == "imok":
            return Server(host, port, data_dir, proc.pid)
        time.sleep(0.2)
    tail = (data_dir / "zookeeper.log").read_text(errors="replace")[-3000:]
    _kill(proc.pid)
    raise ZooKeeperUnavailable(
        f"ZooKeeper did not answer on {host}:{port} in {timeout:.0f}s:\n{tail}"
    )


def _kill(pid: int, grace: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            reaped, _ = os.waitpid(pid, os.WNOHANG)
            if reaped:
                return
        except ChildProcessError:
            pass
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(data_dir: Path | str) -> bool:
    """Stop the server recorded in ``data_dir``; False when none was running."""
    pidfile = _pidfile(Path(data_dir).resolve())
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    _kill(pid)
    pidfile.unlink(missing_ok=True)
    return True
