"""Admin delete and delete-batch against a real ZooKeeper and an in-process worker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from admin import cli as admin_cli
from tests.admin_cli import Cli
from tests.conftest import run_worker
from zkqueue import claims, transitions
from zkqueue.worker import Worker


@pytest.fixture
def cli(cfg, tmp_path):
    return Cli(cfg, tmp_path)


def test_delete_refuses_running_and_pending_jobs(cli, queue, cfg, merritt, zk):
    bid = queue.submit(f"{merritt.url}/sampleBatchOfFiles.checkm", "demo")
    run_worker(cfg, states="batch-pending,batch-processing")
    running, pending, _ = queue.batch_job_ids(bid)
    transitions.transition_job(zk, queue.layout, running, "estimating", expect={"pending"})
    claim = claims.claim(zk, queue.layout, "job", running, "estimating", owner="w1:42:t1")
    assert claim is not None

    r = cli("admin", "delete", running, "--yes", code=1)
    assert f"job {running} is being worked on (estimating, locked by w1:42:t1" in r.stderr
    r = cli("admin", "delete", pending, "--yes", code=1)
    assert f"job {pending}: illegal transition pending -> deleted" in r.stderr
    r = cli("admin", "delete-batch", bid, "--yes", code=1)
    assert "illegal transition reporting -> deleted" in r.stderr
    assert queue.job(running)["status"] == "estimating"
    assert queue.job(pending)["status"] == "pending"
    cli("admin", "delete", "jid0000999999", "--yes", code=1)
    cli("admin", "delete", "bid0000000001", "--yes", code=2)
    claims.release(zk, claim)


def test_delete_failed_job_then_its_batch(cli, queue, cfg, merritt, zk, monkeypatch):
    merritt.fail_next("/goldenDragon.jpg", status=404, method="GET")
    bid = queue.submit(f"{merritt.url}/sampleBatchOfFiles.checkm", "demo")
    run_worker(cfg)
    assert queue.batch(bid)["status"] == "failed"
    doc = queue.batch_status(bid)
    (jid,) = [j["job_id"] for j in doc["jobs"] if j["status"] == "failed"]
    folder = Path(queue.job(jid)["configuration"]["working_dir"])
    assert folder.is_dir() and folder.name == jid

    r = cli("admin", "delete", jid, code=1)
    assert "--yes" in r.stderr and "not a terminal" in r.stderr
    assert cli.json("admin", "delete", jid, "--dry-run")["deleted"][0]["from_status"] == "failed"
    monkeypatch.setattr(admin_cli, "interactive", lambda: True)
    r = cli("admin", "delete", jid, input="n\n", code=1)
    assert "not confirmed" in r.stderr
    assert queue.job(jid)["status"] == "failed" and folder.is_dir()

    cli("admin", "delete", jid, input="y\n")
    job = queue.job(jid)
    assert job["status"] == "deleted" and job["message"].startswith("deleted by ")
    assert not folder.exists()
    assert zk.get_children(queue.layout.batch_members(bid, "deleted")) == [jid]
    assert zk.get_children(queue.layout.batch_members(bid, "failed")) == []
    r = cli("admin", "delete", jid, "--yes", code=1)
    assert "illegal transition deleted -> deleted" in r.stderr

    batch_dir = Path(cfg.path("work_dir")) / bid
    batch_dir.mkdir(parents=True, exist_ok=True)
    doc = cli.json("admin", "delete-batch", bid, "--yes")
    assert doc["delete_jobs"] == [] and len(doc["keep_jobs"]) == 3
    assert queue.batch(bid)["status"] == "deleted"
    assert not batch_dir.exists()
    assert sorted(j["status"] for j in queue.batch_status(bid)["jobs"]) == [
        "completed", "completed", "deleted"]


def test_delete_batch_refuses_completed_and_running_then_deletes_held(cli, queue, cfg,
                                                                      merritt, zk):
    done = queue.submit(f"{merritt.url}/tumbleBug.jpg", "demo")
    merritt.fail_next("/call911.jpg", status=404, method="GET")
    failing = queue.submit(f"{merritt.url}/call911.checkm", "demo")
    run_worker(cfg)
    r = cli("admin", "delete-batch", done, "--yes", code=1)
    assert f"batch {done}: illegal transition completed -> deleted" in r.stderr

    (jid,) = queue.batch_job_ids(failing)
    cli("admin", "requeue", jid)
    r = cli("admin", "delete-batch", failing, "--yes", code=1)
    assert f"batch {failing} has jobs still queued or running: {jid} (downloading)" in r.stderr
    assert queue.batch(failing)["status"] == "failed"
    assert queue.job(jid)["status"] == "downloading"

    cli("admin", "hold-collection", "demo")
    held = queue.submit(f"{merritt.url}/4blocks.checkm", "demo")
    run_worker(cfg, states="batch-pending")
    assert queue.batch(held)["status"] == "held"
    assert cli.json("admin", "delete-batch", held, "--dry-run")["from_status"] == "held"
    assert queue.batch(held)["status"] == "held"
    cli("admin", "delete-batch", held, "--yes")
    assert queue.batch(held)["status"] == "deleted"
    assert zk.get_children(queue.layout.batch_state_dir("deleted")) == [held]


def test_deleting_the_last_held_jobs_lets_a_waiting_worker_report(cli, queue, cfg, merritt):
    bid = queue.submit(f"{merritt.url}/sampleBatchOfFiles.checkm", "demo")
    run_worker(cfg, states="batch-pending,batch-processing")
    assert len(cli.json("admin", "hold-collection", "demo")["jobs"]) == 3
    w = Worker(cfg, threads=2)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        assert wait_for(lambda: ("batch", bid) in w.backoff), "the worker deferred the report"
        cli("admin", "delete", *queue.batch_job_ids(bid), "--yes")
        assert wait_for(lambda: queue.batch(bid)["status"] == "completed"), (
            "the worker was woken, not left to its 60 s deferral")
    finally:
        w.stop()
        t.join(15)
    assert queue.batch_status(bid)["counts"] == {"deleted": 3}


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
