"""The queue with PostgreSQL as its database of record: every Merritt sample ingests, a local id
gets a second version, and a batch cleaned out of ZooKeeper still answers `zkqueue status`."""

from __future__ import annotations

import hashlib

import psycopg

from tests import pg
from tests.admin_cli import Cli
from tests.conftest import make_config, run_worker
from tests.deposits import Deposit, row
from tests.test_pipeline_merritt import SAMPLES
from zkqueue.inventory import Inventory
from zkqueue.layout import Layout
from zkqueue.queue import Queue

PASSWORD_ENV = "ZKQ_TEST_PG_PASSWORD"


def test_merritt_samples_through_postgres(pg_server, merritt, zk, zk_hosts, zk_root, tmp_path,
                                          monkeypatch):
    url = pg_server.new_database()
    monkeypatch.setenv(PASSWORD_ENV, pg.PASSWORD)
    # No password in the URL: workers and the CLI alike must take it from the environment.
    bare = pg_server.url(url.rsplit("/", 1)[1], password=False)
    cfg = make_config(tmp_path, zk_hosts, zk_root,
                      inventory={"url": bare, "password_env": PASSWORD_ENV})
    queue = Queue(zk, Layout(cfg.zk_root), cfg)
    deposit = Deposit(tmp_path / "deposit", merritt.url)

    bids = {name: queue.submit(f"{merritt.url}/{name}", "demo", "tester") for name in SAMPLES}
    first = queue.submit(deposit.batch("v1.checkm", "batch",
                                       [row(f"{merritt.url}/4blocks.checkm", "obj-pg")]), "demo")
    run_worker(cfg, threads=3)
    second = queue.submit(deposit.batch("v2.checkm", "batch",
                                        [row(f"{merritt.url}/call911.checkm", "obj-pg")]), "demo")
    run_worker(cfg, threads=3)

    inv = Inventory.from_config(cfg)
    arks = set()
    for name, bid in bids.items():
        doc = queue.batch_status(bid)
        assert doc["status"] == "completed", (name, doc)
        assert doc["counts"] == {"completed": SAMPLES[name][1]}, name
        for job in doc["jobs"]:
            arks.add(job["ark"])
            (v1,) = inv.versions(job["ark"])
            assert v1.job_id == job["job_id"] and v1.batch_id == bid
            for f in v1.files:
                stored = (tmp_path / "storage" / f.storage_key).read_bytes()
                assert hashlib.sha256(stored).hexdigest() == f.sha256 and len(stored) == f.size
        assert inv.batch_summary(bid)["status"] == "completed"
    assert len(arks) == 13

    (job1,) = queue.batch_status(first)["jobs"]
    (job2,) = queue.batch_status(second)["jobs"]
    assert job1["ark"] == job2["ark"] == inv.ark_for_local_id("demo", "obj-pg")
    v1, v2 = inv.versions(job1["ark"])
    assert (v1.version, v1.job_id, v2.version, v2.job_id) == (1, job1["job_id"], 2, job2["job_id"])
    producer = sorted(f.path for f in v2.files if f.path.startswith("producer/"))
    assert producer == ["producer/4blocks.jpg", "producer/4blocks.txt",
                        "producer/call911.jpg", "producer/call911.txt"], "add keeps version 1"
    inv.close()

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM versions").fetchone() == (15,)
        assert conn.execute("SELECT COUNT(*) FROM batch_summaries").fetchone() == (9,)
    assert not list(tmp_path.rglob("*.db")), "no SQLite inventory on the side"

    cli = Cli(cfg, tmp_path)
    done = bids["sampleBatchOfManifests.checkm"]
    live = cli.json("status", done)
    cli.json("admin", "cleanup", "--older-than", "0s", "--yes")
    assert queue.batch_status(done) is None
    archived = cli.json("status", done)
    assert archived["archived"] and archived["status"] == "completed"
    assert archived["counts"] == {"completed": 3}
    key = ("job_id", "ark")
    assert sorted(tuple(j[k] for k in key) for j in archived["jobs"]) == sorted(
        tuple(j[k] for k in key) for j in live["jobs"])


def test_jobs_wait_while_the_database_is_down_and_go_on_after(zk, zk_hosts, zk_root, tmp_path):
    import threading
    import time

    from tests.httpserver import LoopbackServer
    from tests.test_rerun import FIRST_HALF
    from zkqueue.worker import Worker

    server = pg.start()
    try:
        cfg = make_config(tmp_path, zk_hosts, zk_root,
                          inventory={"url": server.new_database()})
        q = Queue(zk, Layout(zk_root), cfg)
        folder = tmp_path / "deposit"
        folder.mkdir()
        with LoopbackServer(folder) as http:
            d = Deposit(folder, http.url)
            bid = q.submit(d.object_manifest("obj.checkm", {"a.txt": None}), "demo")
            run_worker(cfg, states=FIRST_HALF)  # the job now waits in recording
        (jid,) = q.batch_job_ids(bid)
        assert q.job(jid)["status"] == "recording"
        server.pause()
        w = Worker(cfg, threads=1, drain=True)
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        time.sleep(4)  # the worker tries, finds no database, and waits
        job = q.job(jid)
        assert job["status"] == "recording", job
        assert t.is_alive()
        server.resume()
        t.join(60)
        assert not t.is_alive(), "the worker did not go on once the database was back"
        assert q.batch_status(bid)["status"] == "completed"
        assert q.job(jid)["retry_count"] == 0
    finally:
        server.stop()
