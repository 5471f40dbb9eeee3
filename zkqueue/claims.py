"""Claims: who works on a job or batch right now.

A claim is one ``multi``: check the status node at the version just read, bump the item's own
node (its data names the owner; its new version is the claim's epoch) and create the ephemeral
``lock`` node with the owner. Then the status is read again and must still be the one claimed.

Guarantees:

* At most one live claim per item: the ephemeral lock exists once; a loser gets ``None``.
* A claim dies with its ZooKeeper session (the lock is ephemeral), so a dead worker's items come
  back by themselves in the state they were in.
* Fencing: every write made under a claim checks the item node still has the claim's epoch
  version. A worker whose session expired and whose item was claimed again cannot write, even
  after its client reconnected with a new session.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from . import txn
from .layout import Layout, decode, encode
from .transitions import now_iso


def owner_id() -> str:
    """host:pid:thread, as recorded in every lock."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


@dataclass
class Claim:
    kind: str  # "job" | "batch"
    ident: str
    status: str
    status_version: int
    node_path: str
    node_version: int
    lock_path: str
    owner: str
    session_id: int
    released: bool = False


def _paths(layout: Layout, kind: str, ident: str) -> tuple[str, str, str]:
    if kind == "job":
        return layout.job(ident), layout.job_node(ident, "status"), layout.job_node(ident, "lock")
    return layout.batch(ident), layout.batch_status(ident), layout.batch_lock(ident)


def claim(zk: KazooClient, layout: Layout, kind: str, ident: str, expected: str,
          owner: str | None = None) -> Claim | None:
    """Claim ``ident`` if it is in status ``expected`` and nobody holds it; else None."""
    owner = owner or owner_id()
    node, status_path, lock = _paths(layout, kind, ident)
    try:
        st_a, node_a = zk.get_async(status_path), zk.exists_async(node)
        data, stat = st_a.get()
        node_stat = node_a.get()
    except NoNodeError:
        return None
    if node_stat is None or (decode(data) or {}).get("status") != expected:
        return None
    session_id = zk.client_id[0] if zk.client_id else 0
    stamp = {"owner": owner, "since": now_iso(), "session": f"{session_id:#x}"}
    tx = zk.transaction()
    tx.check(status_path, stat.version)
    tx.set_data(node, encode(stamp), version=node_stat.version)
    tx.create(lock, encode(stamp), ephemeral=True)
    try:
        txn.commit(tx)
    except txn.TransactionFailed as e:
        if e.conflict:
            return None
        raise
    c = Claim(kind, ident, expected, stat.version, node, node_stat.version + 1, lock, owner,
              session_id)
    again, again_stat = zk.get(status_path)
    if (decode(again) or {}).get("status") != expected or again_stat.version != stat.version:
        release(zk, c)
        return None
    return c


def release(zk: KazooClient, c: Claim) -> bool:
    """Drop the lock if the claim is still ours; False when it was already gone or taken."""
    if c.released:
        return False
    tx = zk.transaction()
    tx.check(c.node_path, c.node_version)
    tx.delete(c.lock_path)
    try:
        txn.commit(tx)
    except txn.TransactionFailed:
        return False
    finally:
        c.released = True
    return True


def lock_owner(zk: KazooClient, lock_path: str) -> dict | None:
    try:
        data, stat = zk.get(lock_path)
    except NoNodeError:
        return None
    info = decode(data) or {}
    if not isinstance(info, dict):
        info = {"owner": str(info)}
    info["ephemeral_owner"] = f"{stat.ephemeralOwner:#x}"
    return info
