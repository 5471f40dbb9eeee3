"""Admin requeue and update-reporting against a real ZooKeeper and an in-process worker."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.admin_cli import Cli
from tests.conftest import run_worker
from zkqueue.inventory import Inventory
from zkqueue.layout import decode


@pytest.fixture
def cli(cfg, tmp_path):
    return Cli(cfg, tmp_path)


def minted(zk, queue, cfg) -> int:
    path = queue.layout.counter("minter") + "/" + quote(cfg["minter"]["shoulder"], safe="")
    return decode(zk.get(path)[0])


def failed_batch(queue, cfg, merritt) -> tuple[str, str, list[str]]:
    """A batch of three objects whose call911 object failed downloading: (bid, failed, others)."""
    merritt.fail_next("/call911.jpg", status=404, method="GET")
    bid = queue.submit(f"{merritt.url}/sampleBatchOfManifests.checkm", "demo")
    run_worker(cfg)
    assert queue.batch(bid)["status"] == "failed"
    jobs = queue.batch_status(bid)["jobs"]
    failed = [j for j in jobs if j["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["message"].startswith("downloading:")
    return bid, failed[0]["job_id"], [j["job_id"] for j in jobs if j["status"] != "failed"]


def test_requeue_batch_failures_then_report_again(cli, queue, cfg, merritt, zk):
    bid, jid, done = failed_batch(queue, cfg, merritt)

    r = cli("admin", "requeue", done[0], code=1)
    assert f"job {done[0]}: illegal transition completed -> " in r.stderr
    r = cli("admin", "requeue", jid, done[0], code=1)
    assert queue.job(jid)["status"] == "failed", "a refused requeue writes nothing"
    cli("admin", "requeue", "--batch", bid, code=2)
    cli("admin", "requeue", jid, "--batch", bid, "--failed", code=2)
    cli("admin", "requeue", "jid12", code=2)

    plan = cli.json("admin", "requeue", "--batch", bid, "--failed", "--dry-run")
    assert [(p["job_id"], p["to_status"]) for p in plan["requeued"]] == [(jid, "downloading")]
    assert queue.job(jid)["status"] == "failed"

    r = cli("admin", "requeue", "--batch", bid, "--failed", "--json")
    assert f"update-reporting {bid}" in r.stderr
    job = queue.job(jid)
    assert (job["status"], job["retry_count"]) == ("downloading", 1)
    assert job["message"].startswith("requeued by ")
    assert "downloading:" in job["message"], "the failure it was requeued from is kept"

    doc = cli.json("admin", "update-reporting", bid)
    assert doc["jobs_running"] == 1 and doc["to_status"] == "update-reporting"
    assert queue.batch(bid)["status"] == "update-reporting"
    run_worker(cfg)
    job = queue.job(jid)
    assert (job["status"], job["retry_count"]) == ("completed", 1)
    assert queue.batch(bid)["status"] == "completed"
    assert minted(zk, queue, cfg) == 3, "one ARK per object, none minted twice"
    inv = Inventory.open(cfg["inventory"]["url"])
    try:
        assert [v.version for v in inv.versions(job["ark"])] == [1]
        assert inv.batch_summary(bid)["status"] == "completed"
    finally:
        inv.close()

    r = cli("admin", "update-reporting", bid, code=1)
    assert "illegal transition completed -> update-reporting" in r.stderr


def test_requeue_job_with_update_reporting_in_one_command(cli, queue, cfg, merritt):
    merritt.fail_next("/call911.jpg", status=404, method="GET")
    bid = queue.submit(f"{merritt.url}/call911.checkm", "demo")
    run_worker(cfg)
    (jid,) = queue.batch_job_ids(bid)
    assert queue.batch(bid)["status"] == "failed"
    doc = cli.json("admin", "requeue", jid, "--update-reporting")
    assert [r["batch_id"] for r in doc["update_reporting"]] == [bid]
    assert doc["requeued"][0]["retry_count"] == 1
    run_worker(cfg)
    assert queue.batch(bid)["status"] == "completed"
    assert queue.job(jid)["status"] == "completed"


def test_update_reporting_refuses_a_batch_that_never_expanded(cli, queue, cfg, merritt):
    bid = queue.submit(f"{merritt.url}/no-such.checkm", "demo")
    run_worker(cfg)
    assert queue.batch(bid)["status"] == "failed"
    r = cli("admin", "update-reporting", bid, code=1)
    assert "failed before all its jobs were created" in r.stderr
    assert queue.batch(bid)["status"] == "failed"
    assert cli.json("admin", "requeue", "--batch", bid, "--failed")["requeued"] == []
    cli("admin", "update-reporting", "bid0000999999", code=1)
