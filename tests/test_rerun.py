"""Reruns are safe: a step run again mints no second ARK and stores no second copy."""

from __future__ import annotations

from urllib.parse import quote

from tests.conftest import run_worker
from tests.deposits import Deposit
from tests.httpserver import LoopbackServer
from zkqueue import transitions
from zkqueue.inventory import Inventory
from zkqueue.layout import decode

FIRST_HALF = "pending,estimating,provisioning,downloading,processing,storing," + ",".join(
    f"batch-{s}" for s in ("pending", "processing", "reporting"))


def test_rerun_from_processing_after_storing_reuses_ark_and_copies(queue, cfg, zk, tmp_path):
    folder = tmp_path / "deposit"
    folder.mkdir()
    with LoopbackServer(folder) as server:
        d = Deposit(folder, server.url)
        url = d.object_manifest("obj.checkm", {"a.txt": None, "b.txt": None})
        bid = queue.submit(url, "demo")
        run_worker(cfg, states=FIRST_HALF)  # stops once jobs wait in recording
        jid = queue.batch_job_ids(bid)[0]
        job = queue.job(jid)
        assert job["status"] == "recording"
        ark = job["ark"]
        storage = tmp_path / "storage" / quote(ark, safe="")
        stored = {p: p.stat().st_mtime_ns for p in storage.rglob("*") if p.is_file()}
        assert len(stored) == 5  # a.txt, b.txt, erc, dc, storage manifest
        # the job is failed by hand, then resumed at processing, as an operator's rerun would
        transitions.transition_job(zk, queue.layout, jid, "failed", message="simulated crash")
        transitions.transition_job(zk, queue.layout, jid, "processing", retry=True)
        run_worker(cfg)
    job = queue.job(jid)
    assert job["status"] == "completed" and job["ark"] == ark and job["retry_count"] == 1
    minted = decode(zk.get(queue.layout.counter("minter") + "/" + quote(cfg["minter"]["shoulder"],
                                                                      safe=""))[0])
    assert minted == 1, "exactly one ARK was minted"
    now = {p: p.stat().st_mtime_ns for p in storage.rglob("*") if p.is_file()}
    assert now == stored, "no file was written to storage a second time"
    inv = Inventory.open(cfg["inventory"]["url"])
    assert [v.version for v in inv.versions(ark)] == [1]
    inv.close()


def test_second_submission_of_a_local_id_adds_a_version(queue, cfg, tmp_path):
    folder = tmp_path / "deposit"
    folder.mkdir()
    from tests.deposits import row

    with LoopbackServer(folder) as server:
        d = Deposit(folder, server.url)
        v1 = d.object_manifest("v1.checkm", {"a.txt": b"first a", "b.txt": b"first b"})
        b1 = queue.submit(d.batch("b1.checkm", "batch", [row(v1, "obj-1")]), "demo")
        run_worker(cfg)
        v2 = d.object_manifest("v2.checkm", {"b.txt": b"second b", "c.txt": b"new c"})
        b2 = queue.submit(d.batch("b2.checkm", "batch", [row(v2, "obj-1")]), "demo")
        v3 = d.object_manifest("v3.checkm", {"c.txt": b"new c"})
        run_worker(cfg)
        b3 = queue.submit(d.batch("b3.checkm", "batch", [row(v3, "obj-1")]), "demo",
                          submission_mode="update")
        run_worker(cfg)
    arks = {queue.batch_status(b)["jobs"][0]["ark"] for b in (b1, b2, b3)}
    assert len(arks) == 1, "the same local id keeps its ARK"
    ark = arks.pop()
    inv = Inventory.open(cfg["inventory"]["url"])
    versions = inv.versions(ark)
    inv.close()
    assert [v.version for v in versions] == [1, 2, 3]
    files = [{f.path: f for f in v.files if f.path.startswith("producer/")} for v in versions]
    assert sorted(files[0]) == ["producer/a.txt", "producer/b.txt"]
    assert sorted(files[1]) == ["producer/a.txt", "producer/b.txt", "producer/c.txt"]  # add
    assert files[1]["producer/a.txt"].storage_key == files[0]["producer/a.txt"].storage_key
    assert files[1]["producer/b.txt"].storage_key != files[0]["producer/b.txt"].storage_key
    assert sorted(files[2]) == ["producer/c.txt"]  # update: exactly these files
    assert files[2]["producer/c.txt"].storage_key == files[1]["producer/c.txt"].storage_key
