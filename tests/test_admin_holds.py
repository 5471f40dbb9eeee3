"""Admin holds and pause against a real ZooKeeper and an in-process worker."""

from __future__ import annotations

import pytest

from tests.admin_cli import Cli
from tests.conftest import run_worker

BATCH_STEPS = "batch-pending,batch-processing"


@pytest.fixture
def cli(cfg, tmp_path):
    return Cli(cfg, tmp_path)


def statuses(queue, bid):
    return sorted(j["status"] for j in queue.batch_status(bid)["jobs"])


def test_held_collection_holds_new_batches_until_released(cli, queue, cfg, merritt, zk):
    doc = cli.json("admin", "hold-collection", "demo", "--reason", "storage migration")
    assert doc["held"] and not doc["already_held"]
    assert zk.exists(queue.layout.collection_hold("demo"))
    bid = queue.submit(f"{merritt.url}/call911.checkm", "demo")
    run_worker(cfg)
    assert queue.batch(bid)["status"] == "held"
    holds = cli.json("admin", "holds")
    assert holds["paused"] is False
    assert holds["collections"] == [{
        "profile": "demo", "held": True, "since": holds["collections"][0]["since"],
        "by": holds["collections"][0]["by"], "reason": "storage migration",
        "held_batches": 1, "held_jobs": 0}]
    assert "demo" in cli("admin", "holds").stdout and "1 batch(es)" in cli("admin", "holds").stdout

    doc = cli.json("admin", "release-collection", "demo")
    assert doc["batches"] == [bid] and doc["was_held"]
    assert queue.batch(bid)["status"] == "pending"
    assert not zk.exists(queue.layout.collection_hold("demo"))
    run_worker(cfg)
    assert queue.batch(bid)["status"] == "completed"
    assert statuses(queue, bid) == ["completed"]
    assert cli.json("admin", "holds")["collections"] == []


def test_hold_moves_pending_jobs_and_lets_started_ones_finish(cli, queue, cfg, merritt):
    started = queue.submit(f"{merritt.url}/sampleBatchOfFiles.checkm", "demo")
    run_worker(cfg, states=BATCH_STEPS + ",pending")  # its jobs get past pending, then wait
    assert statuses(queue, started) == ["estimating"] * 3
    waiting = queue.submit(f"{merritt.url}/sampleBatchOfManifests.checkm", "demo")
    run_worker(cfg, states=BATCH_STEPS)
    assert statuses(queue, waiting) == ["pending"] * 3

    doc = cli.json("admin", "hold-collection", "demo")
    assert sorted(doc["jobs"]) == queue.batch_job_ids(waiting) and doc["batches"] == []
    assert statuses(queue, waiting) == ["held"] * 3
    again = cli.json("admin", "hold-collection", "demo")
    assert again["already_held"] and again["jobs"] == []

    run_worker(cfg)
    assert queue.batch(started)["status"] == "completed"
    assert queue.batch(waiting)["status"] == "reporting"
    assert statuses(queue, waiting) == ["held"] * 3
    row = cli.json("admin", "holds")["collections"][0]
    assert (row["held_batches"], row["held_jobs"]) == (0, 3)

    assert len(cli.json("admin", "release-collection", "demo")["jobs"]) == 3
    run_worker(cfg)
    assert queue.batch(waiting)["status"] == "completed"
    assert statuses(queue, waiting) == ["completed"] * 3


def test_hold_and_release_refuse_what_they_cannot_mean(cli, queue):
    r = cli("admin", "hold-collection", "nope", code=1)
    assert "profile 'nope' is not configured" in r.stderr
    r = cli("admin", "release-collection", "demo", code=1)
    assert "collection demo is not held" in r.stderr
    assert not queue.zk.exists(queue.layout.collection_hold("nope"))


def test_pause_stops_claims_until_resumed(cli, queue, cfg, merritt, zk):
    assert cli.json("admin", "pause", "--reason", "upgrade") == {"paused": True,
                                                                 "already_paused": False}
    assert cli.json("admin", "pause")["already_paused"]
    bid = queue.submit(f"{merritt.url}/tumbleBug.jpg", "demo")
    run_worker(cfg)
    assert queue.batch(bid)["status"] == "pending"
    holds = cli.json("admin", "holds")
    assert holds["paused"] and holds["pause"]["reason"] == "upgrade"
    assert "PAUSED" in cli("admin", "holds").stdout

    assert cli.json("admin", "resume") == {"paused": False, "was_paused": True}
    assert not zk.exists(queue.layout.queue_pause)
    run_worker(cfg)
    assert queue.batch(bid)["status"] == "completed"
    assert cli.json("admin", "resume")["was_paused"] is False
