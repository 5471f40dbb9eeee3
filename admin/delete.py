"""Delete held or failed jobs and batches, and their working folders.

Guarantees: every named item is checked before anything is written, and the command is refused
as a whole when one cannot go: a locked item (someone is working on it), a status the transition
table does not allow to become ``deleted`` (only ``held`` and ``failed`` may), or a batch with
jobs that are still queued or running. Each status change is one transaction through
:mod:`zkqueue.transitions`; completed jobs of a deleted batch stay completed (their objects are
stored). Working folders are removed only after the status change.
"""

from __future__ import annotations

from pathlib import Path

from kazoo.client import KazooClient

from admin.actor import actor
from admin.errors import Refused, refuse_missing
from admin.znodes import children_many, exists_many, get_many, remove_folder
from zkqueue import claims, states
from zkqueue.layout import Layout
from zkqueue.queue import Queue
from zkqueue.transitions import read_batch, read_job, transition_batch, transition_job

DELETABLE = frozenset({"held", "failed"})
NAMED = 20


def _lock_refusal(kind: str, ident: str, status: str, lock: dict) -> Refused:
    return Refused(f"{kind} {ident} is being worked on ({status}, locked by"
                   f" {lock.get('owner', '?')} since {lock.get('since', '?')}); it cannot be"
                   " deleted now")


def plan_delete_jobs(zk: KazooClient, layout: Layout, jids: list[str]) -> list[dict]:
    """What deleting ``jids`` would do; raises on the first job that cannot be deleted."""
    plans = []
    for jid in dict.fromkeys(jids):
        with refuse_missing():
            cur, _, _, bid = read_job(zk, layout, jid)
        status = cur.get("status")
        lock = claims.lock_owner(zk, layout.job_node(jid, "lock"))
        if lock is not None:
            raise _lock_refusal("job", jid, status, lock)
        states.check(states.JOB, jid, status, "deleted")
        conf = get_many(zk, [layout.job_node(jid, "configuration")])
        node = conf[layout.job_node(jid, "configuration")]
        working_dir = node.data.get("working_dir") if node and isinstance(node.data, dict) else None
        plans.append({"job_id": jid, "batch_id": bid, "from_status": status,
                      "working_dir": working_dir})
    return plans


def delete_jobs(zk: KazooClient, layout: Layout, plans: list[dict]) -> list[dict]:
    """Carry out :func:`plan_delete_jobs`'s plans; each job must still be held or failed."""
    done = []
    for p in plans:
        transition_job(zk, layout, p["job_id"], "deleted", expect=DELETABLE,
                       message=f"deleted by {actor()}")
        removed = remove_folder(p["working_dir"], p["job_id"])
        done.append({**p, "working_dir_removed": removed})
    return done


def _names(items: list[str]) -> str:
    more = f" and {len(items) - NAMED} more" if len(items) > NAMED else ""
    return ", ".join(items[:NAMED]) + more


def plan_delete_batch(zk: KazooClient, layout: Layout, bid: str, work_dir: Path) -> dict:
    """What deleting batch ``bid`` would do; raises when it cannot be deleted."""
    with refuse_missing():
        cur, _ = read_batch(zk, layout, bid)
    status = cur.get("status")
    lock = claims.lock_owner(zk, layout.batch_lock(bid))
    if lock is not None:
        raise _lock_refusal("batch", bid, status, lock)
    states.check(states.BATCH, bid, status, "deleted")
    dirs = [layout.batch_members(bid, o) for o in states.BATCH_OUTCOMES]
    jids = sorted(j for names in children_many(zk, dirs).values() for j in names or [])
    jobs = Queue(zk, layout).jobs(jids)
    locks = exists_many(zk, [layout.job_node(j["job_id"], "lock") for j in jobs])
    busy = []
    for j in jobs:
        locked = locks[layout.job_node(j["job_id"], "lock")] is not None
        if locked or j["status"] not in DELETABLE | states.TERMINAL:
            busy.append(f"{j['job_id']} ({j['status']}{', locked' if locked else ''})")
    if busy:
        raise Refused(f"batch {bid} has jobs still queued or running: {_names(busy)}; wait for"
                      " them to settle (or hold the collection) and try again")
    return {"batch_id": bid, "from_status": status,
            "delete_jobs": [j["job_id"] for j in jobs if j["status"] in DELETABLE],
            "keep_jobs": [j["job_id"] for j in jobs if j["status"] not in DELETABLE],
            "working_dir": str(work_dir / bid)}


def delete_batch(zk: KazooClient, layout: Layout, plan: dict) -> dict:
    """Carry out :func:`plan_delete_batch`'s plan: its held/failed jobs, then the batch."""
    by = actor()
    for jid in plan["delete_jobs"]:
        transition_job(zk, layout, jid, "deleted", expect=DELETABLE,
                       message=f"deleted with batch {plan['batch_id']} by {by}")
    transition_batch(zk, layout, plan["batch_id"], "deleted", expect=DELETABLE,
                     message=f"deleted by {by}")
    removed = remove_folder(plan["working_dir"], plan["batch_id"])
    return {**plan, "working_dir_removed": removed}
