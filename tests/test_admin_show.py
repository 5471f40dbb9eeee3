"""Admin show against a real ZooKeeper."""

from __future__ import annotations

import pytest

from tests.admin_cli import Cli
from tests.conftest import run_worker
from zkqueue import claims, transitions


@pytest.fixture
def cli(cfg, tmp_path):
    return Cli(cfg, tmp_path)


def test_show_decodes_every_znode_of_a_job_and_a_batch(cli, queue, cfg, merritt, zk):
    bid = queue.submit(f"{merritt.url}/call911.checkm", "demo", "curator", uuid="deposit-7")
    run_worker(cfg, states="batch-pending,batch-processing")
    (jid,) = queue.batch_job_ids(bid)
    transitions.transition_job(zk, queue.layout, jid, "estimating")
    claim = claims.claim(zk, queue.layout, "job", jid, "estimating", owner="host:1:w0")

    doc = cli.json("admin", "show", jid)
    nodes = doc["nodes"]
    assert doc["kind"] == "job" and doc["status"] == "estimating"
    assert nodes["configuration"]["data"]["batch_id"] == bid
    assert nodes["status"]["data"]["last_successful_status"] == "pending"
    assert nodes["priority"]["data"] == "05"
    assert nodes["lock"]["data"]["owner"] == "host:1:w0"
    assert nodes["lock"]["ephemeral_owner"] == f"{zk.client_id[0]:#x}"
    assert doc["index"]["queue_entry"] == {
        "path": queue.layout.job_state_entry("estimating", 5, jid), "present": True}
    assert doc["index"]["batch_member"]["present"]
    text = cli("admin", "show", jid).stdout
    assert "lock" in text and "host:1:w0" in text and "ephemeral" in text
    claims.release(zk, claim)

    doc = cli.json("admin", "show", bid)
    assert doc["kind"] == "batch" and doc["status"] == "reporting"
    assert doc["nodes"]["submission"]["data"]["submitter"] == "curator"
    assert doc["nodes"]["states/processing"]["children"] == 1
    assert f"states/processing/{jid}" in doc["nodes"]
    assert doc["index"]["state_entry"]["present"]
    assert doc["index"]["uuid"] == {"path": queue.layout.batch_uuid("deposit-7"), "present": True}

    zk.delete(queue.layout.batch_uuid("deposit-7"))
    assert "MISSING" in cli("admin", "show", bid).stdout
    assert "no job jid0000999999" in cli("admin", "show", "jid0000999999", code=1).stderr
    cli("admin", "show", "job-1", code=2)
