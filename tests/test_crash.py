"""Crash and shutdown with real worker processes and real signals."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from urllib.parse import quote

import pytest

from tests.conftest import make_config, run_worker
from tests.deposits import Deposit, row
from tests.httpserver import LoopbackServer
from tests.processes import start_worker, wait_for, write_config
from zkqueue.inventory import Inventory

pytestmark = pytest.mark.slow


@pytest.fixture
def setup(tmp_path, zk_hosts, zk_root, zk, queue):
    cfg = make_config(tmp_path, zk_hosts, zk_root, zookeeper={"session_timeout": 4.0},
                      worker={"shutdown_grace": 1.0})
    folder = tmp_path / "deposit"
    folder.mkdir()
    with LoopbackServer(folder) as server:
        d = Deposit(folder, server.url)
        d.server = server
        url = d.object_manifest("obj.checkm", {"page1.txt": None, "page2.txt": None})
        yield cfg, write_config(cfg, tmp_path / "zkqueue.yaml"), d, url


def job_in(queue, bid, status):
    doc = queue.batch_status(bid)
    jobs = [j for j in doc["jobs"] if j["status"] == status]
    return jobs[0] if jobs else None


@contextmanager
def worker_downloading(setup, queue, zk, tmp_path, stall: float):
    """Submit the deposit with the GET of page2.txt stalled for ``stall`` seconds, start one
    worker process and yield (process, batch id, job id, lock path) once it holds the job in
    downloading. The process is killed on the way out if it still runs."""
    _, cfg_file, d, url = setup
    d.server.stall_next("/page2.txt", stall, method="GET")
    bid = queue.submit(url, "demo")
    proc = start_worker(cfg_file, "--threads", "1", log=tmp_path / "a.log")
    try:
        job = wait_for(lambda: job_in(queue, bid, "downloading"), 30, what="downloading")
        lock = queue.layout.job_node(job["job_id"], "lock")
        wait_for(lambda: zk.exists(lock), 10, what="the lock")
        yield proc, bid, job["job_id"], lock
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigkill_mid_download_another_worker_finishes_with_one_ark(setup, queue, zk, tmp_path):
    cfg, _, d, _ = setup
    with worker_downloading(setup, queue, zk, tmp_path, stall=60) as (proc, bid, jid, lock):
        owner = queue.job(jid)["lock"]["owner"]
        assert owner.split(":")[1] == str(proc.pid), "the lock names its owner process"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # the dead worker's session lives on until its timeout: its lock is still there
        assert zk.exists(lock)
    run_worker(cfg, timeout=60)
    doc = queue.batch_status(bid)
    assert doc["status"] == "completed", doc
    ark = doc["jobs"][0]["ark"]
    inv = Inventory.open(cfg["inventory"]["url"])
    assert [v.version for v in inv.versions(ark)] == [1]
    inv.close()
    storage = tmp_path / "storage"
    assert [p.name for p in storage.iterdir()] == [quote(ark, safe="")]
    assert d.server.hits["/page2.txt"] >= 3  # HEAD, the stalled GET, the finishing GET


def test_sigterm_mid_download_exits_cleanly_and_leaves_nothing_locked(setup, queue, zk, tmp_path):
    cfg = setup[0]
    with worker_downloading(setup, queue, zk, tmp_path, stall=30) as (proc, bid, jid, lock):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    # nothing stays locked, and the job is where it was: no half-written move
    assert not zk.exists(lock)
    assert queue.job(jid)["status"] == "downloading"
    assert zk.get_children(queue.layout.workers) == []
    run_worker(cfg, timeout=60)
    assert queue.batch_status(bid)["status"] == "completed"


def test_two_worker_processes_share_a_batch_and_each_job_runs_once(setup, queue, zk, tmp_path):
    cfg, cfg_file, d, _ = setup
    rows = []
    for i in range(12):
        rows.append(row(d.object_manifest(f"o{i}.checkm", {f"o{i}.txt": None}), f"loc-{i}"))
    bid = queue.submit(d.batch("batch.checkm", "batch", rows), "demo")
    procs = [start_worker(cfg_file, "--threads", "2", "--drain", log=tmp_path / f"w{i}.log")
             for i in range(2)]
    for p in procs:
        assert p.wait(120) == 0
    doc = queue.batch_status(bid)
    assert doc["status"] == "completed" and doc["counts"] == {"completed": 12}
    inv = Inventory.open(cfg["inventory"]["url"])
    arks = {j["ark"] for j in doc["jobs"]}
    assert len(arks) == 12
    assert all([v.version for v in inv.versions(a)] == [1] for a in arks)
    inv.close()
    # each object file was downloaded exactly once: no job ran its download twice
    assert all(d.server.hits[f"/o{i}.txt"] == 2 for i in range(12))  # one HEAD, one GET
