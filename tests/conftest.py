"""Shared fixtures: one real ZooKeeper server per test session, a fresh root per test.

A test that needs ZooKeeper and cannot get one fails (the fixture raises); it never skips.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from zkqueue import zkserver

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MERRITT = SHARED / "fixtures" / "merritt-samples"


@pytest.fixture(scope="session")
def zk_server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("zookeeper")
    server = zkserver.start(data_dir, port=zkserver.free_port())
    yield server
    zkserver.stop(data_dir)


@pytest.fixture
def zk_hosts(zk_server) -> str:
    return zk_server.connect_string


@pytest.fixture
def zk_root() -> str:
    return f"/test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def zk(zk_hosts):
    client = KazooClient(hosts=zk_hosts, timeout=15)
    client.start(timeout=30)
    yield client
    client.stop()
    client.close()


# -- the embedded pipeline on tmp folders ----------------------------------------------------

def make_config(tmp_path, zk_hosts: str, zk_root: str, **over):
    from zkqueue.config import load

    base = {
        "zookeeper": {"hosts": zk_hosts, "root": zk_root, "session_timeout": 10.0},
        "work_dir": str(tmp_path / "work"),
        "storage": {"url": f"file://{tmp_path / 'storage'}"},
        "inventory": {"url": f"sqlite:///{tmp_path / 'inventory.db'}"},
        "mail": {"outbox": str(tmp_path / "outbox")},
        "http": {"retries": 2, "backoff_initial": 0.05, "backoff_max": 0.2, "timeout": 10.0},
        "worker": {"poll_interval": 1.0, "provision_retry": 0.5, "shutdown_grace": 2.0},
        "disk_threshold_percent": 99,
        "logging": {"level": "WARNING"},
    }
    from zkqueue.config import _merge

    return load(environ={}, overrides=_merge(base, over))


@pytest.fixture
def cfg(tmp_path, zk_hosts, zk_root):
    return make_config(tmp_path, zk_hosts, zk_root)


@pytest.fixture
def queue(zk, cfg):
    from zkqueue.layout import Layout
    from zkqueue.queue import Queue

    return Queue(zk, Layout(cfg.zk_root), cfg)


@pytest.fixture
def merritt(tmp_path):
    """The Merritt samples, their URLs pointed at a loopback server serving them."""
    from tests.httpserver import LoopbackServer, rewrite_urls

    folder = tmp_path / "deposit"
    folder.mkdir()
    with LoopbackServer(folder) as server:
        rewrite_urls(MERRITT, folder, server.url)
        yield server


def run_worker(cfg, threads: int = 2, timeout: float = 120.0, states: str | None = None):
    """Run a worker in this process until it drains; fail the test if it does not."""
    import threading

    from zkqueue.worker import Worker

    w = Worker(cfg, threads=threads, drain=True, states_spec=states)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        w.stop()
        t.join(10)
        raise AssertionError(f"worker did not drain within {timeout}s")
    assert w.drained
    return w


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (tests/pg.py); fails, never skips, without one."""
    from tests import pg

    server = pg.start()
    yield server
    server.stop()
