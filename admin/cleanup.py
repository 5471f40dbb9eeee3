"""Remove finished batches and their jobs from ZooKeeper; the inventory keeps their record.

Guarantees:

* Before anything of a batch is removed, its summary (merged with any summary already saved, so
  jobs pruned earlier stay in it) and the outcome of every job about to go are saved in the
  inventory database, where ``zkqueue status`` finds them once the batch is gone.
* A ``completed`` or ``deleted`` batch whose jobs are all completed or deleted goes whole. Any
  other finished batch (``failed``, or one with a job that is not finished) keeps its znodes and
  its unfinished and failed jobs; only its completed jobs are pruned. Failed jobs stay until an
  operator deletes them.
* Each job goes in one transaction with its queue entry, its batch membership and its row
  marker, so no dangling entry is left; transactions are chunked (``znodes.CHUNK_OPS``) and
  checked; children go before parents; a batch goes last, and only once none of its jobs is left.
  A run that stops part way leaves consistent items and can be run again.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kazoo.client import KazooClient

from admin.znodes import (
    CHUNK_OPS,
    children_many,
    delete_groups,
    exists_many,
    get_many,
    remove_folder,
    subtree,
)
from zkqueue import states
from zkqueue.inventory import Inventory
from zkqueue.layout import Layout, clamp_priority
from zkqueue.queue import Queue, status_counts

FINISHED = ("completed", "deleted", "failed")
AGE_RE = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``0s``, ``2w`` as a timedelta; ValueError otherwise."""
    m = AGE_RE.match(text.strip())
    if not m:
        raise ValueError(f"age {text!r} must be a number and a unit: s, m, h, d or w (e.g. 30d)")
    return timedelta(**{UNITS[m.group(2)]: int(m.group(1))})


def _when(stamp: str | None) -> datetime | None:
    try:
        t = datetime.fromisoformat(stamp or "")
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def plan_cleanup(zk: KazooClient, layout: Layout, older_than: timedelta,
                 now: datetime | None = None) -> list[dict]:
    """One plan per finished batch last modified at least ``older_than`` ago with something
    to remove. A plan's ``summary`` is the batch's status document as read now."""
    cutoff = (now or datetime.now(UTC)) - older_than
    dirs = [layout.batch_state_dir(s) for s in FINISHED]
    bids = sorted(b for names in children_many(zk, dirs).values() for b in names or [])
    nodes = get_many(zk, [layout.batch_status(b) for b in bids])
    locks = exists_many(zk, [layout.batch_lock(b) for b in bids])
    q = Queue(zk, layout)
    plans = []
    for bid in bids:
        node = nodes[layout.batch_status(bid)]
        rec = node.data if node is not None and isinstance(node.data, dict) else {}
        when = _when(rec.get("last_modified"))
        if rec.get("status") not in FINISHED or when is None or when > cutoff:
            continue
        if locks[layout.batch_lock(bid)] is not None:
            continue
        doc = q.batch_status(bid)
        if doc is None:
            continue
        jobs = doc["jobs"]
        whole = doc["status"] in states.TERMINAL and all(
            j["status"] in states.TERMINAL for j in jobs)
        prune = [j for j in jobs if whole or j["status"] == "completed"]
        if not whole and not prune:
            continue
        plans.append({"batch_id": bid, "status": doc["status"],
                      "last_modified": rec.get("last_modified"), "remove_batch": whole,
                      "prune_jobs": [j["job_id"] for j in prune],
                      "keep_jobs": [{"job_id": j["job_id"], "status": j["status"]}
                                    for j in jobs if j not in prune],
                      "summary": doc})
    return plans


def merged_summary(saved: dict | None, doc: dict) -> dict:
    """``doc`` with the jobs of an earlier saved summary that ZooKeeper no longer has."""
    jobs = {j["job_id"]: j for j in (saved or {}).get("jobs", [])}
    jobs.update({j["job_id"]: j for j in doc["jobs"]})
    merged = sorted(jobs.values(), key=lambda j: j["job_id"])
    return {**(saved or {}), **doc, "jobs": merged, "counts": status_counts(merged)}


def _job_groups(zk: KazooClient, layout: Layout, bid: str,
                jids: list[str]) -> tuple[list[list[tuple]], list[str], list[str]]:
    """(one operation group per removable job, their ids, jobs skipped because locked)."""
    names = ("status", "priority", "configuration")
    got = get_many(zk, [layout.job_node(j, n) for j in jids for n in names])
    kids = children_many(zk, [layout.job(j) for j in jids])
    indexed: dict[str, list[str]] = {}
    for jid in jids:
        status, prio, conf = (got[layout.job_node(jid, n)] for n in names)
        paths = []
        if status is not None and isinstance(status.data, dict):
            p = clamp_priority(prio.data if prio is not None else 5)
            paths.append(layout.job_state_entry(status.data.get("status"), p, jid))
            paths.append(layout.batch_member(bid, states.batch_outcome(status.data["status"]),
                                             jid))
        row = conf.data.get("row") if conf is not None and isinstance(conf.data, dict) else None
        if row:
            paths.append(layout.batch_row(bid, row))
        indexed[jid] = paths
    present = exists_many(zk, [p for ps in indexed.values() for p in ps])
    groups, ids, locked = [], [], []
    for jid in jids:
        children = kids[layout.job(jid)]
        if children is None:
            ops = []
        elif "lock" in children:
            locked.append(jid)
            continue
        else:
            status = got[layout.job_node(jid, "status")]
            ops = [("delete", layout.job_node(jid, c),
                    status.stat.version if c == "status" and status else -1) for c in children]
            ops.append(("delete", layout.job(jid), -1))
        ops += [("delete", p, -1) for p in indexed[jid] if present[p] is not None]
        if ops:
            groups.append(ops)
            ids.append(jid)
    return groups, ids, locked


def _batch_groups(zk: KazooClient, layout: Layout, bid: str, status: str) -> list[list[tuple]]:
    """The batch's own nodes, deepest first, in chunks; the last chunk holds the batch node,
    its direct children, its state entry and its uuid, so the batch disappears at once."""
    root = layout.batch(bid)
    paths = subtree(zk, root)
    depth = root.count("/")
    deep = [p for p in paths if p.count("/") > depth + 1]
    top = [p for p in paths if p.count("/") <= depth + 1]
    groups = [[("delete", p, -1) for p in deep[i:i + CHUNK_OPS]]
              for i in range(0, len(deep), CHUNK_OPS)]
    last = [("delete", p, -1) for p in top]
    sub = get_many(zk, [layout.batch_submission(bid)])[layout.batch_submission(bid)]
    uuid = sub.data.get("uuid") if sub is not None and isinstance(sub.data, dict) else None
    extra = [layout.batch_state_entry(status, bid)]
    if uuid:
        owner = get_many(zk, [layout.batch_uuid(uuid)])[layout.batch_uuid(uuid)]
        if owner is not None and owner.data == bid:
            extra.append(layout.batch_uuid(uuid))
    present = exists_many(zk, extra)
    last += [("delete", p, -1) for p in extra if present[p] is not None]
    return groups + [last]


def run_cleanup(zk: KazooClient, layout: Layout, inventory: Inventory, plans: list[dict],
                work_dir: Path | None = None) -> list[dict]:
    """Carry out :func:`plan_cleanup`'s plans; returns what was removed and what failed."""
    results = []
    for plan in plans:
        bid, doc = plan["batch_id"], plan["summary"]
        inventory.save_batch_summary(bid, doc["status"],
                                     merged_summary(inventory.batch_summary(bid), doc))
        by_id = {j["job_id"]: j for j in doc["jobs"]}
        for jid in plan["prune_jobs"]:
            j = by_id[jid]
            inventory.save_job_outcome(jid, bid, j["status"], j["local_id"], j["ark"],
                                       j["message"])
        groups, ids, locked = _job_groups(zk, layout, bid, plan["prune_jobs"])
        failed = delete_groups(zk, groups)
        errors = [f"job {ids[i]}: {why}" for i, why in failed]
        errors += [f"job {jid} is locked; left in place" for jid in locked]
        removed = len(ids) - len(failed)
        batch_removed = False
        if plan["remove_batch"] and not errors:
            not_done = delete_groups(zk, _batch_groups(zk, layout, bid, plan["status"]))
            errors += [f"batch {bid}: {why}" for _, why in not_done]
            batch_removed = not not_done
            if batch_removed and work_dir is not None:
                remove_folder(work_dir / bid, bid)
        results.append({**public(plan), "removed_jobs": removed, "batch_removed": batch_removed,
                        "errors": errors})
    return results


def public(plan: dict) -> dict:
    """A plan without its internal summary document (for output)."""
    return {k: v for k, v in plan.items() if k != "summary"}
