"""The worker's backoff table is shared by its threads: every write holds the worker's lock.

``_next`` walks the table under that lock; a write from another thread without it can change
the table's size mid-walk ("dictionary changed size during iteration"), and that exception
escapes ``_loop`` and ends the thread silently (with --threads 1, the whole worker).
"""

from __future__ import annotations

import threading

from tests.conftest import run_worker
from tests.processes import wait_for
from zkqueue import claims
from zkqueue.worker import Worker


class GuardedDict(dict):
    """Records every key written or removed while ``cond`` was not held by the writer."""

    def __init__(self, cond: threading.Condition) -> None:
        super().__init__()
        self.cond = cond
        self.unguarded: list = []

    def __setitem__(self, key, value) -> None:
        if not self.cond._is_owned():
            self.unguarded.append(key)
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        if not self.cond._is_owned():
            self.unguarded.append(key)
        super().__delitem__(key)


def test_a_job_held_by_another_worker_is_backed_off_under_the_lock(queue, cfg, merritt, zk):
    bid = queue.submit(f"{merritt.url}/sampleBatchOfFiles.checkm", "demo")
    run_worker(cfg, states="batch-pending,batch-processing")
    jid = queue.batch_job_ids(bid)[0]
    other = claims.claim(zk, queue.layout, "job", jid, "pending", owner="w1:42:t1")
    assert other is not None
    w = Worker(cfg, threads=1, states_spec="pending")
    w.backoff = GuardedDict(w.cond)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: ("job", jid) in w.backoff, 30, what="the held job to be backed off")
    finally:
        w.stop()
        t.join(15)
        claims.release(zk, other)
    assert w.backoff.unguarded == []
