"""Requeue failed jobs and report a failed batch again.

Guarantees: a requeue first checks every named job and refuses the whole command, writing
nothing, when one of them cannot be requeued (only ``failed`` jobs can; the refusal for any other
status is the transition table's own message). Each job then moves, in one transaction, from
``failed`` to the status after its ``last_successful_status`` with ``retry_count`` + 1.
"""

from __future__ import annotations

from kazoo.client import KazooClient

from admin.actor import actor
from admin.errors import Refused, refuse_missing
from admin.znodes import children_many
from zkqueue import states
from zkqueue.layout import Layout
from zkqueue.transitions import read_batch, read_job, transition_batch, transition_job

# The last successful status of a failed batch whose expansion finished (all its jobs exist).
# One that failed earlier (payload or manifest refused, expansion stopped) is never reported.
REPORTABLE_AFTER = frozenset({"processing", "reporting", "update-reporting"})


def plan_requeue(zk: KazooClient, layout: Layout, jids: list[str]) -> list[dict]:
    """What requeueing ``jids`` would do, one entry per job; raises on the first that can't."""
    plans = []
    for jid in dict.fromkeys(jids):
        with refuse_missing():
            cur, _, _, bid = read_job(zk, layout, jid)
        status = cur.get("status")
        to = states.resume_status(cur.get("last_successful_status"))
        if status != "failed":
            states.check(states.JOB, jid, status, to)
            raise Refused(f"job {jid} is {status}; only failed jobs are requeued")
        plans.append({"job_id": jid, "batch_id": bid, "from_status": status, "to_status": to,
                      "retry_count": int(cur.get("retry_count") or 0) + 1,
                      "failure": cur.get("message", "")})
    return plans


def failed_jobs(zk: KazooClient, layout: Layout, bid: str) -> list[str]:
    """The failed jobs of batch ``bid`` (from its membership dir)."""
    with refuse_missing():
        read_batch(zk, layout, bid)
    return children_many(zk, [layout.batch_members(bid, "failed")])[
        layout.batch_members(bid, "failed")] or []


def requeue(zk: KazooClient, layout: Layout, plans: list[dict]) -> list[dict]:
    """Carry out :func:`plan_requeue`'s plans; each must still find its job failed."""
    done = []
    for p in plans:
        r = transition_job(zk, layout, p["job_id"], p["to_status"], expect={"failed"}, retry=True,
                           message=f"requeued by {actor()} (was: {p['failure']})")
        done.append({**p, "to_status": r.to_status, "retry_count": r.record["retry_count"]})
    return done


def check_update_reporting(zk: KazooClient, layout: Layout, bid: str) -> dict:
    """Whether batch ``bid`` may be reported again; raises when it may not."""
    with refuse_missing():
        cur, _ = read_batch(zk, layout, bid)
    status, last = cur.get("status"), cur.get("last_successful_status")
    states.check(states.BATCH, bid, status, "update-reporting")
    if last not in REPORTABLE_AFTER:
        raise Refused(f"batch {bid} failed before all its jobs were created (last successful"
                      f" status: {last or 'none'}; {cur.get('message', '')}); submit it again")
    running = children_many(zk, [layout.batch_members(bid, "processing")])
    return {"batch_id": bid, "from_status": status, "to_status": "update-reporting",
            "jobs_running": len(running[layout.batch_members(bid, "processing")] or [])}


def update_reporting(zk: KazooClient, layout: Layout, bid: str) -> dict:
    """Move a failed batch to ``update-reporting``; a worker reports it once no job runs.

    The report says ``completed`` when every job has now succeeded, else ``failed`` again.
    """
    plan = check_update_reporting(zk, layout, bid)
    transition_batch(zk, layout, bid, "update-reporting", expect={"failed"},
                     message=f"reporting again, asked by {actor()}")
    return plan
