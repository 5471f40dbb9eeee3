"""Turning a batch's manifest rows into jobs, in chunked transactions.

Guarantees:

* Each row has one deterministic key; the transaction that creates a row's job also creates the
  marker ``/batches/<bid>/rows/<key>``. A chunk is all-or-nothing, so after any crash every row
  has either a complete job or nothing, and a worker that resumes skips the rows already marked:
  no job is duplicated or lost.
* Ids are allocated with pipelined sequential creates; a crash between allocation and the chunk's
  commit leaves only an empty ``/jobs/jid...`` node, which readers ignore and ``fsck`` removes.
* Chunks are committed pipelined (several in flight), each well under the ``multi`` size limit.
* Backpressure: before each window the pending job dir's size is read from its stat
  (``numChildren``, no listing); over the limit, expansion stops and reports how far it got.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from kazoo.client import KazooClient

from . import txn
from .claims import Claim
from .layout import Layout, encode, priority_text
from .payloads import JobSpec
from .transitions import status_record

WINDOW = 8  # chunks in flight at once


def job_configuration(bid: str, submission: dict, spec: JobSpec, jid: str,
                      work_dir: Path) -> dict:
    conf = {
        "batch_id": bid,
        "profile": submission["profile"],
        "submitter": submission.get("submitter", ""),
        "payload_url": spec.payload_url,
        "payload_type": spec.payload_type,
        "local_id": spec.local_id,
        "submission_mode": submission.get("submission_mode", "add"),
        "working_dir": str(work_dir / bid / jid),
        "row": spec.key,
    }
    extra = {k: v for k, v in asdict(spec).items() if k not in conf and k != "key"}
    conf.update({k: v for k, v in extra.items() if v not in (None, "")})
    return conf


def _job_ops(tx, layout: Layout, bid: str, jid: str, conf: dict, prio: str,
             spec: JobSpec) -> None:
    tx.create(layout.job_node(jid, "configuration"), encode(conf))
    tx.create(layout.job_node(jid, "status"), encode(status_record("pending")))
    tx.create(layout.job_node(jid, "priority"), encode(prio))
    if spec.primary_id:
        tx.create(layout.job_node(jid, "ark"), encode(spec.primary_id))
    tx.create(layout.job_state_entry("pending", prio, jid))
    tx.create(layout.batch_member(bid, "processing", jid))
    tx.create(layout.batch_row(bid, spec.key), encode(jid))


def create_jobs(
    zk: KazooClient,
    layout: Layout,
    bid: str,
    submission: dict,
    specs: Sequence[JobSpec],
    work_dir: Path,
    *,
    claim: Claim | None = None,
    chunk: int = 40,
    max_pending: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, bool]:
    """Create the jobs not yet created; returns (jobs created now, finished)."""
    done = set(zk.get_children(layout.batch_rows(bid)))
    todo = [s for s in specs if s.key not in done]
    prio = priority_text(submission.get("priority", 5))
    created = 0
    per_job = 7
    chunk = max(1, min(chunk, (txn.MAX_OPS - 1) // per_job))
    chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
    for w in range(0, len(chunks), WINDOW):
        if max_pending is not None:
            stat = zk.exists(layout.job_state_dir("pending"))
            if stat is not None and stat.numChildren >= max_pending:
                return created, False
        window = chunks[w : w + WINDOW]
        allocs = [[zk.create_async(layout.job("jid"), sequence=True) for _ in c] for c in window]
        jids = [[a.get().rsplit("/", 1)[1] for a in al] for al in allocs]
        inflight = []
        for rows, ids in zip(window, jids, strict=True):
            tx = zk.transaction()
            if claim is not None:
                tx.check(claim.node_path, claim.node_version)
            for spec, jid in zip(rows, ids, strict=True):
                conf = job_configuration(bid, submission, spec, jid, work_dir)
                _job_ops(tx, layout, bid, jid, conf, prio, spec)
            inflight.append((tx, tx.commit_async(), ids))
        failure = None
        for tx, res, ids in inflight:
            try:
                txn.check_results(tx, res.get())
                created += len(ids)
                if progress:
                    progress(len(ids))
            except txn.TransactionFailed as e:
                for jid in ids:  # the allocated ids are now orphans: remove them
                    zk.delete_async(layout.job(jid))
                failure = failure or e
        if failure is not None:
            raise failure
    return created, True
