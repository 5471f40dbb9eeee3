"""Admin fsck: every kind of violation made by hand with the raw client, found and repaired."""

from __future__ import annotations

import pytest

from admin import fsck
from tests.admin_cli import Cli
from tests.conftest import run_worker
from zkqueue.layout import encode


@pytest.fixture
def cli(cfg, tmp_path):
    return Cli(cfg, tmp_path)


def kinds(doc: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in doc["findings"]:
        out.setdefault(f["kind"], set()).add(f["item"])
    return out


def test_fsck_finds_and_repairs_each_violation(cli, queue, cfg, merritt, zk):
    lay = queue.layout
    bid = queue.submit(f"{merritt.url}/sampleBatchOfFiles.checkm", "demo", uuid="u-1")
    run_worker(cfg, states="batch-pending,batch-processing")
    a, b, c = queue.batch_job_ids(bid)
    assert cli.json("admin", "fsck") == {
        "dry_run": False, "repair": False, "ok": True, "findings": [], "repaired": 0,
        "remaining": 0, "changed_during_check": [],
        "checked": {"jobs": 3, "batches": 1, "queue_entries": 3, "batch_entries": 1,
                    "uuids": 1}}

    ghost, ghost_bid = "jid9999999999", "bid9999999999"
    zk.delete(lay.job_state_entry("pending", 5, a))                    # entry missing
    zk.create(lay.job_state_entry("failed", 7, b))                     # stray entry
    zk.create(lay.job_state_entry("pending", 5, ghost))                # dangling entry
    zk.delete(lay.batch_member(bid, "processing", b))                  # member missing
    zk.create(lay.batch_member(bid, "completed", c))                   # stray member
    zk.create(lay.batch_member(bid, "failed", ghost))                  # dangling member
    zk.delete(lay.batch_members(bid, "deleted"))                       # batch dir missing
    zk.delete(lay.batch_state_entry("reporting", bid))                 # batch entry missing
    zk.create(lay.batch_state_entry("held", bid))                      # stray batch entry
    zk.create(lay.batch_state_entry("failed", ghost_bid))              # dangling batch entry
    zk.create(lay.batch_uuid("u-ghost"), encode(ghost_bid))            # dangling uuid
    zk.delete(lay.batch_uuid("u-1"))                                   # missing uuid
    orphan = zk.create(lay.job("jid"), sequence=True).rsplit("/", 1)[1]
    orphan_bid = zk.create(lay.batch("bid"), sequence=True).rsplit("/", 1)[1]
    zk.create(lay.job_node(a, "lock"), encode({"owner": "old:1:t"}))   # persistent lock
    zk.create(lay.job_node(c, "lock"), b"garbage", ephemeral=True)     # malformed lock
    zk.create(lay.batch_row(bid, "extra-row"), encode(ghost))          # rows mismatch

    found = cli.json("admin", "fsck", "--orphan-age", "0", code=1)
    expected = {
        "job-entry-missing": {a}, "job-entry-stray": {b}, "job-entry-dangling": {ghost},
        "job-member-missing": {b}, "job-member-stray": {c}, "job-member-dangling": {ghost},
        "batch-dir-missing": {bid}, "batch-entry-missing": {bid}, "batch-entry-stray": {bid},
        "batch-entry-dangling": {ghost_bid}, "uuid-dangling": {"u-ghost"}, "uuid-missing": {bid},
        "job-orphan-id": {orphan}, "batch-orphan-id": {orphan_bid},
        "lock-not-ephemeral": {a}, "lock-malformed": {c}, "batch-rows-mismatch": {bid},
    }
    assert kinds(found) == expected
    report_only = {f["kind"] for f in found["findings"] if f["fix"] is None}
    assert report_only == {"lock-malformed", "batch-rows-mismatch"}
    young = cli.json("admin", "fsck", code=1)
    assert "job-orphan-id" not in kinds(young), "a fresh id may still be filled"

    r = cli("admin", "fsck", "--repair", "--orphan-age", "0", code=1)
    assert "--yes" in r.stderr
    assert not zk.exists(lay.job_state_entry("pending", 5, a)), "nothing repaired unconfirmed"
    dry = cli.json("admin", "fsck", "--repair", "--dry-run", "--orphan-age", "0", code=1)
    assert dry["repaired"] == 0 and zk.exists(lay.job(orphan))

    fixed = cli.json("admin", "fsck", "--repair", "--yes", "--orphan-age", "0", code=1)
    assert {f["kind"] for f in fixed["findings"] if not f["repaired"]} == report_only
    assert fixed["remaining"] == 2 and all(f["error"] is None for f in fixed["findings"])
    assert zk.exists(lay.job_state_entry("pending", 5, a))
    assert not zk.exists(lay.job_state_entry("failed", 7, b))
    assert sorted(zk.get_children(lay.job_state_dir("pending"))) == [f"05-{j}" for j in (a, b, c)]
    assert sorted(zk.get_children(lay.batch_members(bid, "processing"))) == [a, b, c]
    assert zk.get_children(lay.batch_members(bid, "completed")) == []
    assert zk.get_children(lay.batch_members(bid, "failed")) == []
    assert zk.exists(lay.batch_members(bid, "deleted"))
    assert zk.get_children(lay.batch_state_dir("reporting")) == [bid]
    assert zk.get_children(lay.batch_state_dir("held")) == []
    assert zk.get_children(lay.batch_state_dir("failed")) == []
    assert zk.get_children(lay.p("batch-uuids")) == ["u-1"]
    assert not zk.exists(lay.job(orphan)) and not zk.exists(lay.batch(orphan_bid))
    assert not zk.exists(lay.job_node(a, "lock")) and zk.exists(lay.job_node(c, "lock"))
    text = cli("admin", "fsck", code=1)
    assert "lock-malformed" in text.stdout and "report only" in text.stdout
    assert "2 violation(s) remain" in text.stderr

    zk.delete(lay.job_node(c, "lock"))
    zk.delete(lay.batch_row(bid, "extra-row"))
    assert cli.json("admin", "fsck")["ok"]
    run_worker(cfg)
    assert queue.batch(bid)["status"] == "completed", "the repaired queue works"
    assert cli.json("admin", "fsck")["ok"]


def test_repair_refuses_an_item_that_moved_since_the_check(queue, zk):
    lay = queue.layout
    bid = queue.submit("http://127.0.0.1:9/x.checkm", "demo")
    zk.delete(lay.batch_state_entry("pending", bid))
    report = fsck.check(zk, lay)
    assert [f.kind for f in report.findings] == ["batch-entry-missing"]
    status, _ = zk.get(lay.batch_status(bid))
    zk.set(lay.batch_status(bid), status)  # another writer touched the batch
    fsck.repair(zk, report)
    (f,) = report.findings
    assert not f.repaired and "changed since the check" in f.error
    assert not zk.exists(lay.batch_state_entry("pending", bid))
