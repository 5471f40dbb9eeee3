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
