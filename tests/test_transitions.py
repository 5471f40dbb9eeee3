"""Transitions and claims against a real ZooKeeper."""

import threading

import pytest
from kazoo.client import KazooClient

from zkqueue import claims, states, transitions
from zkqueue.config import load
from zkqueue.layout import Layout
from zkqueue.queue import Queue, SubmissionError


@pytest.fixture
def queue(zk, zk_root):
    cfg = load(environ={}, overrides={"zookeeper": {"root": zk_root}})
    return Queue(zk, Layout(zk_root), cfg)


def started_clients(hosts: str, n: int) -> list[KazooClient]:
    clients = [KazooClient(hosts=hosts) for _ in range(n)]
    for c in clients:
        c.start(timeout=20)
    return clients


def race(clients: list[KazooClient], attempt) -> list:
    """Run ``attempt(client)`` on every client at once; the (client, result) pairs that won."""
    barrier = threading.Barrier(len(clients))
    won: list = []

    def run(c):
        barrier.wait()
        got = attempt(c)
        if got:
            won.append((c, got))

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_table_refuses_illegal_moves_naming_both_states():
    with pytest.raises(states.IllegalTransition, match="completed -> pending"):
        states.check(states.JOB, "jid0000000001", "completed", "pending")
    with pytest.raises(states.IllegalTransition, match="pending -> storing"):
        states.check(states.JOB, "jid0000000001", "pending", "storing")
    states.check(states.BATCH, "bid0000000001", "failed", "update-reporting")
    assert states.resume_status("downloading") == "processing"
    assert states.resume_status(None) == "pending"


def test_submit_is_idempotent_on_uuid(queue, zk):
    a = queue.submit("http://127.0.0.1/x.checkm", profile="demo", uuid="u-1")
    b = queue.submit("http://127.0.0.1/x.checkm", profile="demo", uuid="u-1")
    c = queue.submit("http://127.0.0.1/x.checkm", profile="demo", uuid="u-2")
    assert a == b != c
    assert sorted(zk.get_children(queue.layout.batch_state_dir("pending"))) == sorted([a, c])
    assert queue.batch(a)["status"] == "pending"


def test_submit_refuses_unknown_profile_and_scheme(queue, zk):
    with pytest.raises(SubmissionError, match="profile 'nope' is not configured"):
        queue.submit("http://127.0.0.1/x", profile="nope")
    with pytest.raises(SubmissionError, match="scheme 'ftp' is not allowed"):
        queue.submit("ftp://127.0.0.1/x", profile="demo")
    assert not zk.exists(queue.layout.batches) or zk.get_children(queue.layout.batches) == []


def test_batch_transition_moves_entry_in_one_step(queue, zk):
    bid = queue.submit("http://127.0.0.1/x", profile="demo")
    lay = queue.layout
    r = transitions.transition_batch(zk, lay, bid, "held")
    assert r.from_status == "pending" and r.to_status == "held"
    assert zk.get_children(lay.batch_state_dir("pending")) == []
    assert zk.get_children(lay.batch_state_dir("held")) == [bid]
    with pytest.raises(states.IllegalTransition, match="held -> reporting"):
        transitions.transition_batch(zk, lay, bid, "reporting")
    assert zk.get_children(lay.batch_state_dir("held")) == [bid]


def test_two_clients_race_for_one_claim_exactly_one_wins(queue, zk, zk_hosts):
    bid = queue.submit("http://127.0.0.1/x", profile="demo")
    clients = started_clients(zk_hosts, 6)
    won = race(clients, lambda c: claims.claim(c, queue.layout, "batch", bid, "pending"))
    assert len(won) == 1
    winner, claim = won[0]
    loser = next(c for c in clients if c is not winner)
    assert claims.claim(loser, queue.layout, "batch", bid, "pending") is None
    # the winner's session dies: the lock goes with it and another client can claim
    winner.stop()
    winner.close()
    again = claims.claim(loser, queue.layout, "batch", bid, "pending")
    assert again is not None
    # the old claim is fenced: its epoch is stale, so it cannot write
    with pytest.raises(transitions.LostClaim):
        transitions.transition_batch(loser, queue.layout, bid, "processing", claim=claim)
    transitions.transition_batch(loser, queue.layout, bid, "processing", claim=again, release=True)
    assert queue.batch(bid)["status"] == "processing"
    assert not zk.exists(queue.layout.batch_lock(bid))
    for c in clients:
        if c is not winner:
            c.stop()


def test_worker_processes_racing_for_one_job_exactly_one_moves_it(queue, zk, zk_hosts, tmp_path):
    """Many clients claim the same pending job and, if they won, move it on: one move only."""
    from zkqueue import expansion
    from zkqueue.payloads import JobSpec

    bid = queue.submit("http://127.0.0.1/x.checkm", "demo")
    expansion.create_jobs(zk, queue.layout, bid, queue.batch(bid)["submission"],
                          [JobSpec("000007", "http://127.0.0.1/o.txt", "file", "o.txt")],
                          tmp_path)
    (jid,) = queue.batch_job_ids(bid)
    clients = started_clients(zk_hosts, 8)

    def claim_and_move(c):
        got = claims.claim(c, queue.layout, "job", jid, "pending")
        if got:
            transitions.transition_job(c, queue.layout, jid, "estimating", claim=got,
                                       release=True)
        return got

    moved = race(clients, claim_and_move)
    for c in clients:
        c.stop()
    assert len(moved) == 1
    job = queue.job(jid)
    assert job["status"] == "estimating" and job["lock"] is None
    lay = queue.layout
    assert zk.get_children(lay.job_state_dir("pending")) == []
    assert [e[3:] for e in zk.get_children(lay.job_state_dir("estimating"))] == [jid]
    assert zk.get_children(lay.batch_members(bid, "processing")) == [jid]
