"""Everything ZooKeeper holds about one job or batch, decoded."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from kazoo.client import KazooClient

from admin.errors import Refused
from admin.znodes import exists_many, get_many, subtree
from zkqueue import states
from zkqueue.layout import ID_RE, Layout, clamp_priority


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _where(zk: KazooClient, paths: dict[str, str]) -> dict[str, dict]:
    found = exists_many(zk, paths.values())
    return {name: {"path": p, "present": found[p] is not None} for name, p in paths.items()}


def show(zk: KazooClient, layout: Layout, ident: str) -> dict:
    """Every znode under the item (data decoded, with version, times and, for ephemeral nodes
    such as a lock, the owning session), plus the entries that index it elsewhere: its state-dir
    entry, its batch membership (jobs) or its uuid (batches), each marked present or missing."""
    if not ID_RE.match(ident):
        raise ValueError(f"{ident!r} is neither a job id (jid + 10 digits) nor a batch id (bid...)")
    kind = "job" if ident.startswith("jid") else "batch"
    root = layout.job(ident) if kind == "job" else layout.batch(ident)
    paths = sorted(subtree(zk, root))
    if not paths:
        raise Refused(f"no {kind} {ident}")
    nodes = get_many(zk, paths)
    out: dict[str, dict] = {}
    for p in paths:
        node = nodes[p]
        if node is None:
            continue
        rel = p[len(root) + 1:] or "."
        entry = {"data": node.data, "version": node.stat.version, "created": _iso(node.stat.ctime),
                 "modified": _iso(node.stat.mtime), "children": node.stat.numChildren}
        if node.stat.ephemeralOwner:
            entry["ephemeral_owner"] = f"{node.stat.ephemeralOwner:#x}"
        out[rel] = entry
    status = (out.get("status") or {}).get("data") or {}
    doc = {"id": ident, "kind": kind, "path": root, "status": status.get("status"),
           "nodes": out, "index": {}}
    if not isinstance(status, dict) or "status" not in status:
        return doc
    if kind == "job":
        prio = clamp_priority((out.get("priority") or {}).get("data") or 5)
        conf = (out.get("configuration") or {}).get("data") or {}
        index = {"queue_entry": layout.job_state_entry(status["status"], prio, ident)}
        if isinstance(conf, dict) and conf.get("batch_id"):
            index["batch_member"] = layout.batch_member(
                conf["batch_id"], states.batch_outcome(status["status"]), ident)
    else:
        sub = (out.get("submission") or {}).get("data") or {}
        index = {"state_entry": layout.batch_state_entry(status["status"], ident)}
        if isinstance(sub, dict) and sub.get("uuid"):
            index["uuid"] = layout.batch_uuid(sub["uuid"])
    doc["index"] = _where(zk, index)
    return doc


def text(doc: dict) -> str:
    """A human-readable rendering of :func:`show`'s document."""
    lines = [f"{doc['kind']} {doc['id']}: {doc['status'] or '(no status)'}  ({doc['path']})"]
    width = max(map(len, doc["nodes"]), default=0)
    for rel, n in doc["nodes"].items():
        owner = f"  [ephemeral, session {n['ephemeral_owner']}]" if "ephemeral_owner" in n else ""
        data = "" if n["data"] is None else json.dumps(n["data"], sort_keys=True)
        lines.append(f"  {rel:<{width}}  v{n['version']:<3} {data}{owner}")
    for name, where in doc["index"].items():
        lines.append(f"  {name}: {where['path']} ({'present' if where['present'] else 'MISSING'})")
    return "\n".join(lines)
