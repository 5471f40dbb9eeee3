"""Collection holds and the whole-queue pause.

A hold is the persistent node ``layout.collection_hold(profile)``; the pause is
``layout.queue_pause``. Workers honour both when they admit an item (a held collection's pending
batch or job goes to ``held``; a paused queue leaves pending items unclaimed). Holding also moves
the collection's pending items to ``held`` at once and releasing moves its held items back to
``pending``, each through :mod:`zkqueue.transitions`. Items already past ``pending`` finish.
"""

from __future__ import annotations

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from admin.actor import actor
from admin.errors import Refused
from admin.znodes import children_many, get_many
from zkqueue.layout import Layout, encode, parse_entry
from zkqueue.transitions import NotFound, StaleStatus, now_iso, transition_batch, transition_job


def _stamp(reason: str) -> bytes:
    return encode({"since": now_iso(), "by": actor(), "reason": reason})


def items_by_profile(zk: KazooClient, layout: Layout, status: str) -> dict[str, dict[str, list]]:
    """``{profile: {"batches": [bid...], "jobs": [jid...]}}`` of the batches and jobs in
    ``status``, read from the state dirs and each item's submission or configuration."""
    dirs = children_many(zk, [layout.batch_state_dir(status), layout.job_state_dir(status)])
    bids = dirs[layout.batch_state_dir(status)] or []
    jids = [e[1] for e in (parse_entry(n) for n in dirs[layout.job_state_dir(status)] or []) if e]
    subs = get_many(zk, [layout.batch_submission(b) for b in bids])
    confs = get_many(zk, [layout.job_node(j, "configuration") for j in jids])
    out: dict[str, dict[str, list]] = {}
    for kind, ids, nodes, path in (("batches", bids, subs, layout.batch_submission),
                                   ("jobs", jids, confs,
                                    lambda j: layout.job_node(j, "configuration"))):
        for ident in ids:
            node = nodes[path(ident)]
            if node is not None and isinstance(node.data, dict):
                entry = out.setdefault(node.data.get("profile"), {"batches": [], "jobs": []})
                entry[kind].append(ident)
    return out


def _move(zk: KazooClient, layout: Layout, profile: str, frm: str, to: str,
          message: str) -> dict:
    found = items_by_profile(zk, layout, frm).get(profile, {"batches": [], "jobs": []})
    moved: dict[str, list] = {"batches": [], "jobs": [], "skipped": []}
    for kind, ids, fn in (("batches", found["batches"], transition_batch),
                          ("jobs", found["jobs"], transition_job)):
        for ident in ids:
            try:
                fn(zk, layout, ident, to, expect={frm}, message=message)
            except (StaleStatus, NotFound) as e:
                moved["skipped"].append({"id": ident, "reason": str(e)})
                continue
            moved[kind].append(ident)
    return moved


def hold_collection(zk: KazooClient, layout: Layout, profile: str, reason: str = "") -> dict:
    """Hold ``profile``: create its hold node, then move its pending batches and jobs to held.

    Idempotent: holding a held collection keeps the original hold and sweeps again.
    """
    try:
        zk.create(layout.collection_hold(profile), _stamp(reason), makepath=True)
        already = False
    except NodeExistsError:
        already = True
    moved = _move(zk, layout, profile, "pending", "held", f"collection {profile} is held")
    return {"profile": profile, "held": True, "already_held": already, **moved}


def release_collection(zk: KazooClient, layout: Layout, profile: str) -> dict:
    """Release ``profile``: remove its hold node, then move its held batches and jobs to pending.

    The hold goes first, so a worker admitting a released item does not hold it again. Refused
    when the collection is neither held nor has held items (most likely a mistyped profile).
    """
    try:
        zk.delete(layout.collection_hold(profile))
        was_held = True
    except NoNodeError:
        was_held = False
    moved = _move(zk, layout, profile, "held", "pending", f"collection {profile} released")
    if not was_held and not (moved["batches"] or moved["jobs"] or moved["skipped"]):
        raise Refused(f"collection {profile} is not held (see 'zkqueue admin holds')")
    return {"profile": profile, "held": False, "was_held": was_held, **moved}


def list_holds(zk: KazooClient, layout: Layout) -> dict:
    """The pause, every held collection, and held items per profile (also of profiles whose
    hold is gone, so items left behind in ``held`` show up)."""
    names = children_many(zk, [layout.collection_holds])[layout.collection_holds] or []
    nodes = get_many(zk, [layout.queue_pause] + [layout.collection_hold(n) for n in names])
    held = items_by_profile(zk, layout, "held")
    rows = []
    for profile in sorted(set(names) | {p for p in held if p}):
        node = nodes.get(layout.collection_hold(profile))
        info = node.data if node is not None and isinstance(node.data, dict) else {}
        items = held.get(profile, {"batches": [], "jobs": []})
        rows.append({"profile": profile, "held": node is not None, "since": info.get("since"),
                     "by": info.get("by"), "reason": info.get("reason", ""),
                     "held_batches": len(items["batches"]), "held_jobs": len(items["jobs"])})
    pause = nodes[layout.queue_pause]
    return {"paused": pause is not None, "pause": pause.data if pause is not None else None,
            "collections": rows}


def pause(zk: KazooClient, layout: Layout, reason: str = "") -> dict:
    """Stop every worker from claiming pending batches and jobs; running work goes on."""
    try:
        zk.create(layout.queue_pause, _stamp(reason), makepath=True)
        already = False
    except NodeExistsError:
        already = True
    return {"paused": True, "already_paused": already}


def resume(zk: KazooClient, layout: Layout) -> dict:
    """Let workers claim pending items again (a no-op when the queue is not paused)."""
    try:
        zk.delete(layout.queue_pause)
        was = True
    except NoNodeError:
        was = False
    return {"paused": False, "was_paused": was}
