"""Admin cleanup: finished batches leave ZooKeeper, their record stays in the inventory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from admin import cleanup
from admin.znodes import CHUNK_OPS
from tests.admin_cli import Cli
from tests.conftest import run_worker
from zkqueue import states, txn
from zkqueue.inventory import Inventory
from zkqueue.layout import encode
from zkqueue.queue import ensure_layout
from zkqueue.transitions import status_record


@pytest.fixture
def cli(cfg, tmp_path):
    return Cli(cfg, tmp_path)


def test_parse_age():
    assert cleanup.parse_age("30d") == timedelta(days=30)
    assert cleanup.parse_age("12h") == timedelta(hours=12)
    assert cleanup.parse_age("90m") == timedelta(minutes=90)
    assert cleanup.parse_age("0s") == timedelta(0)
    for bad in ("30", "d", "-1d", "1y", "1.5h"):
        with pytest.raises(ValueError, match="unit"):
            cleanup.parse_age(bad)


def test_cleanup_removes_finished_batches_and_keeps_failures(cli, queue, cfg, merritt, zk):
    lay = queue.layout
    done = queue.submit(f"{merritt.url}/4blocks.checkm", "demo", uuid="u-done")
    merritt.fail_next("/goldenDragon.jpg", status=404, method="GET")
    failed = queue.submit(f"{merritt.url}/sampleBatchOfFiles.checkm", "demo")
    run_worker(cfg)
    assert queue.batch(done)["status"] == "completed" and queue.batch(failed)["status"] == "failed"
    (done_jid,) = queue.batch_job_ids(done)
    ark = queue.job(done_jid)["ark"]
    jobs = queue.batch_status(failed)["jobs"]
    (bad,) = [j["job_id"] for j in jobs if j["status"] == "failed"]
    good = sorted(j["job_id"] for j in jobs if j["status"] == "completed")

    assert cli.json("admin", "cleanup", "--older-than", "30d")["batches"] == []
    later = datetime.now(UTC) + timedelta(days=31)
    assert len(cleanup.plan_cleanup(zk, lay, timedelta(days=30), now=later)) == 2
    cli("admin", "cleanup", "--older-than", "30x", code=2)
    dry = cli.json("admin", "cleanup", "--older-than", "0s", "--dry-run")
    plans = {p["batch_id"]: p for p in dry["batches"]}
    assert plans[done]["remove_batch"] and plans[done]["prune_jobs"] == [done_jid]
    assert not plans[failed]["remove_batch"] and sorted(plans[failed]["prune_jobs"]) == good
    assert plans[failed]["keep_jobs"] == [{"job_id": bad, "status": "failed"}]
    r = cli("admin", "cleanup", "--older-than", "0s", code=1)
    assert "--yes" in r.stderr
    assert zk.exists(lay.batch(done)) and zk.exists(lay.job(done_jid))

    out = cli.json("admin", "cleanup", "--older-than", "0s", "--yes")
    result = {r["batch_id"]: r for r in out["batches"]}
    assert result[done]["batch_removed"] and result[done]["removed_jobs"] == 1
    assert not result[failed]["batch_removed"] and result[failed]["removed_jobs"] == 2
    assert not zk.exists(lay.batch(done)) and not zk.exists(lay.job(done_jid))
    assert not zk.exists(lay.batch_uuid("u-done"))
    assert done not in zk.get_children(lay.batch_state_dir("completed"))
    assert zk.get_children(lay.job_state_dir("completed")) == []
    assert [g for g in good if zk.exists(lay.job(g))] == []
    assert zk.get_children(lay.job_state_dir("failed")) == [f"05-{bad}"]
    assert zk.get_children(lay.batch_members(failed, "failed")) == [bad]
    assert zk.get_children(lay.batch_members(failed, "completed")) == []
    assert len(zk.get_children(lay.batch_rows(failed))) == 1
    assert cli.json("admin", "fsck")["ok"], "cleanup leaves no dangling entry"

    archived = cli.json("status", done)
    assert archived["archived"] and archived["status"] == "completed"
    assert [(j["job_id"], j["ark"]) for j in archived["jobs"]] == [(done_jid, ark)]
    inv = Inventory.open(cfg["inventory"]["url"])
    try:
        outcomes = {o["job_id"]: o["status"] for o in inv.job_outcomes(failed)}
        assert outcomes == {**dict.fromkeys(good, "completed"), bad: "failed"}
    finally:
        inv.close()
    assert cli.json("status", failed)["counts"] == {"failed": 1}
    assert cli.json("admin", "cleanup", "--older-than", "0s", "--yes")["batches"] == []

    cli("admin", "delete-batch", failed, "--yes")
    out = cli.json("admin", "cleanup", "--older-than", "0s", "--yes")
    assert [r["batch_id"] for r in out["batches"]] == [failed]
    assert not zk.exists(lay.batch(failed)) and not zk.exists(lay.job(bad))
    archived = cli.json("status", failed)
    assert archived["status"] == "deleted"
    assert archived["counts"] == {"completed": 2, "deleted": 1}, "earlier pruned jobs stay"


def completed_batch(zk, lay, n: int) -> tuple[str, list[str]]:
    """A completed batch of n completed jobs, written by hand the way the queue lays it out."""
    ensure_layout(zk, lay)
    bid = zk.create(lay.batch("bid"), sequence=True).rsplit("/", 1)[1]
    done = status_record("completed", last_successful="reporting")
    tx = zk.transaction()
    tx.create(lay.batch_submission(bid), encode({"profile": "demo", "uuid": f"u-{bid}"}))
    tx.create(lay.batch_status(bid), encode(done))
    tx.create(lay.batch_members(bid))
    for o in states.BATCH_OUTCOMES:
        tx.create(lay.batch_members(bid, o))
    tx.create(lay.batch_rows(bid))
    tx.create(lay.batch_state_entry("completed", bid))
    tx.create(lay.batch_uuid(f"u-{bid}"), encode(bid))
    txn.commit(tx)
    jids = []
    for i in range(n):
        jid = zk.create(lay.job("jid"), sequence=True).rsplit("/", 1)[1]
        tx = zk.transaction()
        tx.create(lay.job_node(jid, "configuration"),
                  encode({"batch_id": bid, "profile": "demo", "row": f"r{i}", "local_id": ""}))
        tx.create(lay.job_node(jid, "status"), encode(status_record("completed", "", "notify")))
        tx.create(lay.job_node(jid, "priority"), encode("05"))
        tx.create(lay.job_node(jid, "ark"), encode(f"ark:/99999/fk4t{i}"))
        tx.create(lay.job_state_entry("completed", 5, jid))
        tx.create(lay.batch_member(bid, "completed", jid))
        tx.create(lay.batch_row(bid, f"r{i}"), encode(jid))
        txn.commit(tx)
        jids.append(jid)
    return bid, jids


def test_cleanup_of_a_large_batch_is_chunked(cli, queue, zk):
    lay = queue.layout
    bid, _ = completed_batch(zk, lay, 90)
    assert 90 * 8 > max(2 * CHUNK_OPS, txn.MAX_OPS), "more than one transaction can hold"
    assert cli.json("admin", "fsck")["ok"]
    (r,) = cli.json("admin", "cleanup", "--older-than", "0s", "--yes")["batches"]
    assert r["batch_removed"] and r["removed_jobs"] == 90 and r["errors"] == []
    assert zk.get_children(lay.jobs) == ["states"]
    assert zk.get_children(lay.batches) == []
    assert zk.get_children(lay.job_state_dir("completed")) == []
    assert cli.json("status", bid)["counts"] == {"completed": 90}
