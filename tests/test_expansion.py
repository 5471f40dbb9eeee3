"""Batch expansion: pipelined chunked transactions, resumable without duplicates."""

from __future__ import annotations

from zkqueue import expansion
from zkqueue.layout import parse_entry
from zkqueue.payloads import JobSpec


def specs(n: int) -> list[JobSpec]:
    return [JobSpec(key=f"{i + 7:06d}", payload_url=f"http://127.0.0.1/o{i}.zip",
                    payload_type="container", file_name=f"o{i}.zip", local_id=f"loc-{i}",
                    line=i + 7) for i in range(n)]


def test_5000_jobs_expand_in_chunks_and_land_everywhere(queue, zk, tmp_path):
    bid = queue.submit("http://127.0.0.1/batch.checkm", "demo")
    sub = queue.batch(bid)["submission"]
    created, finished = expansion.create_jobs(zk, queue.layout, bid, sub, specs(5000),
                                              tmp_path, chunk=40)
    assert (created, finished) == (5000, True)
    lay = queue.layout
    pending = zk.get_children(lay.job_state_dir("pending"))
    members = zk.get_children(lay.batch_members(bid, "processing"))
    rows = zk.get_children(lay.batch_rows(bid))
    assert len(pending) == len(members) == len(rows) == 5000
    assert {parse_entry(e)[1] for e in pending} == set(members)
    assert {p[:2] for p in pending} == {"05"}
    job = queue.job(members[123])
    assert job["configuration"]["batch_id"] == bid
    assert job["status"] == "pending"


def test_resumed_expansion_creates_no_duplicates(queue, zk, tmp_path):
    bid = queue.submit("http://127.0.0.1/batch.checkm", "demo")
    sub = queue.batch(bid)["submission"]
    all_specs = specs(230)
    # a first worker got through part of the batch, then died
    expansion.create_jobs(zk, queue.layout, bid, sub, all_specs[:97], tmp_path, chunk=40)
    created, finished = expansion.create_jobs(zk, queue.layout, bid, sub, all_specs, tmp_path,
                                              chunk=40)
    assert (created, finished) == (133, True)
    again = expansion.create_jobs(zk, queue.layout, bid, sub, all_specs, tmp_path)
    assert again == (0, True)
    jobs = queue.jobs(queue.batch_job_ids(bid))
    assert len(jobs) == 230
    assert sorted(j["local_id"] for j in jobs) == sorted(f"loc-{i}" for i in range(230))


def test_backpressure_stops_at_the_pending_limit(queue, zk, tmp_path):
    bid = queue.submit("http://127.0.0.1/batch.checkm", "demo")
    sub = queue.batch(bid)["submission"]
    created, finished = expansion.create_jobs(zk, queue.layout, bid, sub, specs(1000), tmp_path,
                                              chunk=20, max_pending=300)
    assert not finished
    # windows of 8 chunks x 20: it stops at the first window boundary at or past the limit
    assert 300 <= created < 300 + 8 * 20
    assert zk.exists(queue.layout.job_state_dir("pending")).numChildren == created
