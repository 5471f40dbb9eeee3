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
