"""A worker whose ZooKeeper session is lost abandons its step, reconnects and goes on."""

from __future__ import annotations

import threading

from kazoo.client import KazooClient

from tests.deposits import Deposit
from tests.httpserver import LoopbackServer
from tests.processes import wait_for
from zkqueue.inventory import Inventory
from zkqueue.worker import Worker


def test_session_loss_mid_download_abandons_then_finishes(queue, cfg, zk, zk_hosts, tmp_path):
    folder = tmp_path / "deposit"
    folder.mkdir()
    with LoopbackServer(folder) as server:
        d = Deposit(folder, server.url)
        url = d.object_manifest("obj.checkm", {"a.txt": None, "b.txt": None})
        server.stall_next("/b.txt", 3, method="GET")
        bid = queue.submit(url, "demo")
        w = Worker(cfg, threads=2, drain=True)
        sessions = []
        w.listeners.append(lambda *change: sessions.append((change, w.zk.client_id[0])))
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        jid = wait_for(lambda: queue.batch_job_ids(bid), 30, what="the job")[0]
        lock = queue.layout.job_node(jid, "lock")
        wait_for(lambda: queue.job(jid)["status"] == "downloading" and zk.exists(lock), 30,
                 what="download under lock")
        old_session = w.zk.client_id
        # expire the worker's session on the server: the same session, closed by another client
        twin = KazooClient(hosts=zk_hosts, client_id=old_session)
        twin.start(timeout=20)
        twin.stop()
        twin.close()
        t.join(90)
        assert not t.is_alive(), "the worker did not finish after losing its session"
    after = [sid for change, sid in sessions
             if change[0] == "job" and change[3] in ("processing", "completed")]
    assert after and all(sid != old_session[0] for sid in after), "committed on a new session"
    doc = queue.batch_status(bid)
    assert doc["status"] == "completed", doc
    job = queue.job(jid)
    inv = Inventory.open(cfg["inventory"]["url"])
    assert [v.version for v in inv.versions(job["ark"])] == [1]
    inv.close()
    assert server.hits["/b.txt"] >= 3  # HEAD, the abandoned GET, the GET after reclaiming


def test_connection_loss_is_ridden_out_when_the_session_survives(tmp_path):
    """The server restarts while a step runs: the worker is SUSPENDED, holds its commits,
    reconnects on the same session (ZooKeeper keeps sessions across a restart) and goes on."""
    from tests.conftest import make_config
    from zkqueue import zkserver
    from zkqueue.queue import Queue

    port = zkserver.free_port()
    zkserver.start(tmp_path / "zk", port=port)
    try:
        cfg = make_config(tmp_path, f"127.0.0.1:{port}", "/suspend",
                          zookeeper={"session_timeout": 20.0})
        folder = tmp_path / "deposit"
        folder.mkdir()
        states_seen = []
        with LoopbackServer(folder) as http:
            d = Deposit(folder, http.url)
            http.stall_next("/b.txt", 6, method="GET")
            with Queue.connect(cfg) as q:
                bid = q.submit(d.object_manifest("obj.checkm", {"a.txt": None, "b.txt": None}),
                               "demo")
            w = Worker(cfg, threads=1, drain=True)
            w.zk.add_listener(states_seen.append)
            session = w.zk.client_id[0]
            commits = []
            w.listeners.append(lambda *change: commits.append(w.zk.client_id[0]))
            t = threading.Thread(target=w.run, daemon=True)
            t.start()
            wait_for(lambda: http.hits["/b.txt"] >= 2, 30, what="the stalled GET")
            zkserver.stop(tmp_path / "zk")
            wait_for(lambda: "SUSPENDED" in states_seen, 20, what="SUSPENDED")
            zkserver.start(tmp_path / "zk", port=port)
            t.join(90)
            assert not t.is_alive()
            with Queue.connect(cfg) as q:
                doc = q.batch_status(bid)
        # (the worker's own close at the end reports LOST; nothing before it did)
        assert states_seen[:2] == ["SUSPENDED", "CONNECTED"] and states_seen[2:] == ["LOST"]
        assert commits and set(commits) == {session}, "every commit on the one session"
        assert doc["status"] == "completed", doc
        job = doc["jobs"][0]
        assert job["ark"]
        assert http.hits["/b.txt"] == 2, "the download was not redone: the step rode it out"
    finally:
        zkserver.stop(tmp_path / "zk")
