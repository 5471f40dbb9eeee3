"""Reading and removing znode trees for the admin commands: pipelined reads, chunked deletes.

Guarantees: :func:`delete_groups` commits each group of operations whole (a group never spans
two transactions), keeps every transaction at or under ``CHUNK_OPS`` operations, and checks
every commit's results (:func:`zkqueue.txn.commit`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import ZnodeStat

from zkqueue import txn
from zkqueue.layout import decode

CHUNK_OPS = 300


@dataclass(frozen=True)
class Node:
    path: str
    data: object
    stat: ZnodeStat


def get_many(zk: KazooClient, paths: Sequence[str]) -> dict[str, Node | None]:
    """Each path's decoded data and stat (None when it does not exist), read pipelined."""
    futures = [(p, zk.get_async(p)) for p in paths]
    out: dict[str, Node | None] = {}
    for p, f in futures:
        try:
            data, stat = f.get()
        except NoNodeError:
            out[p] = None
            continue
        out[p] = Node(p, decode(data), stat)
    return out


def children_many(zk: KazooClient, paths: Sequence[str]) -> dict[str, list[str] | None]:
    """Each path's children, sorted (None when it does not exist), read pipelined."""
    futures = [(p, zk.get_children_async(p)) for p in paths]
    out: dict[str, list[str] | None] = {}
    for p, f in futures:
        try:
            out[p] = sorted(f.get())
        except NoNodeError:
            out[p] = None
    return out


def exists_many(zk: KazooClient, paths: Iterable[str]) -> dict[str, ZnodeStat | None]:
    """Each path's stat (None when it does not exist), read pipelined."""
    futures = [(p, zk.exists_async(p)) for p in paths]
    return {p: f.get() for p, f in futures}


def subtree(zk: KazooClient, path: str) -> list[str]:
    """Every node under ``path`` and ``path`` itself, children before parents (empty if gone)."""
    if zk.exists(path) is None:
        return []
    levels = [[path]]
    while True:
        listed = children_many(zk, levels[-1])
        below = [f"{p}/{c}" for p in levels[-1] for c in (listed[p] or [])]
        if not below:
            break
        levels.append(below)
    return [p for level in reversed(levels) for p in level]


def delete_groups(zk: KazooClient, groups: Sequence[Sequence[tuple]]) -> list[tuple[int, str]]:
    """Commit groups of operations (as :func:`commit_ops` takes them).

    Groups are packed into transactions of at most ``CHUNK_OPS`` operations. When a packed
    transaction fails, its groups are committed one by one so that one changed item does not
    hold back the others. Returns ``(group index, reason)`` for every group not committed.
    """
    failed: list[tuple[int, str]] = []
    batch: list[int] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size
        if not batch:
            return
        try:
            commit_ops(zk, [op for i in batch for op in groups[i]])
        except txn.TransactionFailed as e:
            if len(batch) == 1:
                failed.append((batch[0], str(e)))
            else:
                for i in batch:
                    try:
                        commit_ops(zk, groups[i])
                    except txn.TransactionFailed as e1:
                        failed.append((i, str(e1)))
        batch, size = [], 0

    for i, group in enumerate(groups):
        if len(group) > CHUNK_OPS:
            raise ValueError(f"a group of {len(group)} operations exceeds {CHUNK_OPS}")
        if size + len(group) > CHUNK_OPS:
            flush()
        batch.append(i)
        size += len(group)
    flush()
    return failed


def commit_ops(zk: KazooClient, ops: Sequence[tuple]) -> None:
    """One checked transaction of ``("delete", path, version)``, ``("check", path, version)``
    and ``("create", path, data)`` operations, in order; raises ``txn.TransactionFailed``."""
    tx = zk.transaction()
    for kind, path, arg in ops:
        if kind == "delete":
            tx.delete(path, version=arg)
        elif kind == "check":
            tx.check(path, arg)
        elif kind == "create":
            tx.create(path, arg)
        else:
            raise ValueError(f"unknown operation {kind!r}")
    txn.commit(tx)


def remove_folder(folder: str | Path | None, name: str) -> bool:
    """Remove a working folder; only one whose last component is ``name`` (the item's id).

    The id check keeps a damaged configuration from pointing the removal anywhere else.
    Returns True when something was removed.
    """
    if not folder:
        return False
    p = Path(folder)
    if p.name != name or not p.is_dir():
        return False
    shutil.rmtree(p, ignore_errors=True)
    return True
