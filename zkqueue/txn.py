"""Checked ZooKeeper transactions.

kazoo's ``commit()`` does not raise when a ``multi`` fails: it returns one result per operation,
exceptions among them, and the ``with client.transaction()`` form throws those away. Every
transaction in zkqueue goes through :func:`commit`, which turns any failed operation into
:class:`TransactionFailed` naming the operation and the path.
"""

from __future__ import annotations

from collections.abc import Iterable

from kazoo.client import KazooClient, TransactionRequest
from kazoo.exceptions import (
    BadVersionError,
    KazooException,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
)

# ZooKeeper drops a multi larger than jute.maxbuffer as a connection loss, not a clean error.
MAX_OPS = 400


class TransactionFailed(KazooException):
    """A multi was rolled back; ``cause`` is the first real failure, ``path`` its znode."""

    def __init__(self, cause: Exception, path: str | None, op: str | None, results: list):
        self.cause, self.path, self.op, self.results = cause, path, op, results
        name = type(cause).__name__
        super().__init__(f"transaction rolled back: {op} {path} failed with {name}")

    @property
    def conflict(self) -> bool:
        """Lost a race: someone changed, created or removed a node this multi depended on."""
        return isinstance(self.cause, BadVersionError | NodeExistsError | NoNodeError)

    @property
    def version_conflict(self) -> bool:
        return isinstance(self.cause, BadVersionError)

    @property
    def exists(self) -> bool:
        return isinstance(self.cause, NodeExistsError)

    @property
    def missing(self) -> bool:
        return isinstance(self.cause, NoNodeError)


def _describe(op) -> tuple[str, str | None]:
    return type(op).__name__.lower(), getattr(op, "path", None)


def check_results(tx: TransactionRequest, results: list) -> list:
    ops = list(tx.operations)
    for op, res in zip(ops, results, strict=False):
        if isinstance(res, Exception) and not isinstance(
            res, RolledBackError | RuntimeInconsistency
        ):
            name, path = _describe(op)
            raise TransactionFailed(res, path, name, results)
    for res in results:
        if isinstance(res, Exception):
            raise TransactionFailed(res, None, None, results)
    return results


def commit(tx: TransactionRequest) -> list:
    """Commit ``tx``; return its results or raise :class:`TransactionFailed`."""
    if len(tx.operations) > MAX_OPS:
        raise ValueError(f"a transaction of {len(tx.operations)} ops exceeds {MAX_OPS}; chunk it")
    return check_results(tx, tx.commit())


def ensure_paths(client: KazooClient, paths: Iterable[str]) -> None:
    """Create persistent parent dirs, pipelined; existing ones are fine."""
    pending = [(p, client.ensure_path_async(p)) for p in paths]
    for _, res in pending:
        res.get()
