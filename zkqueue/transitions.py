"""Status changes of jobs and batches, each one ZooKeeper transaction.

Guarantees:

* Every change is checked against :mod:`zkqueue.states` first; an illegal one raises
  :class:`~zkqueue.states.IllegalTransition` and writes nothing.
* One ``multi`` sets the status node at the version it was read at, moves the queue entry from the
  old state dir to the new one, moves the batch membership entry, rewrites the priority if it
  changed and (for a claimed item) checks the claim is still ours and may drop the lock. After any
  crash an item is in exactly one state dir, matching its status.
* A writer that loses a race re-reads and tries again while the change is still legal and still
  wanted (``expect``); a claimed writer whose claim was taken over raises :class:`LostClaim`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from . import states, txn
from .layout import Layout, clamp_priority, decode, encode

if TYPE_CHECKING:
    from .claims import Claim

MESSAGE_LIMIT = 4096
BACKWARD = frozenset({"failed", "held", "deleted", "pending"})


class StaleStatus(RuntimeError):
    """The item is no longer in a status the caller expected; nothing was written."""


class LostClaim(RuntimeError):
    """Our claim on the item was lost (session gone or taken over); nothing was written."""


class NotFound(LookupError):
    """No such job or batch."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cap_message(message: str, limit: int = MESSAGE_LIMIT) -> str:
    raw = (message or "").encode()
    if len(raw) <= limit:
        return message or ""
    return raw[: limit - 3].decode(errors="ignore") + "..."


def status_record(status: str, message: str = "", last_successful: str | None = None,
                  retry_count: int = 0) -> dict:
    return {
        "status": status,
        "last_modified": now_iso(),
        "message": cap_message(message),
        "last_successful_status": last_successful,
        "retry_count": retry_count,
    }


@dataclass
class Result:
    ident: str
    from_status: str
    to_status: str
    record: dict
    version: int
    priority: int | None = None


def _next_record(kind: str, ident: str, cur: dict, to: str, message: str | None,
                 retry: bool) -> dict:
    """The new status record; ``last_successful_status`` advances only on a forward move."""
    frm = cur["status"]
    states.check(kind, ident, frm, to)
    last_ok = cur.get("last_successful_status")
    if kind == states.JOB and frm in states.JOB_STEPS and to == states.next_step(frm):
        last_ok = frm
    elif kind == states.BATCH and frm in states.BATCH_ACTIVE and to not in BACKWARD:
        last_ok = frm
    retries = int(cur.get("retry_count") or 0) + (1 if retry else 0)
    if not message and frm == "failed" and cur.get("message"):
        message = f"rerun after: {cur['message']}"  # what went wrong stays readable
    return status_record(to, message or "", last_ok, retries)


def read_job(zk: KazooClient, layout: Layout, jid: str) -> tuple[dict, int, int, str]:
    """(status record, status version, priority, batch id) read together."""
    st_a = zk.get_async(layout.job_node(jid, "status"))
    pr_a = zk.get_async(layout.job_node(jid, "priority"))
    cf_a = zk.get_async(layout.job_node(jid, "configuration"))
    try:
        data, stat = st_a.get()
        prio = clamp_priority(decode(pr_a.get()[0]) or 5)
        conf = decode(cf_a.get()[0]) or {}
    except NoNodeError as e:
        raise NotFound(f"job {jid} does not exist") from e
    return decode(data), stat.version, prio, conf.get("batch_id", "")


def _move(zk: KazooClient, kind: str, ident: str, to: str, read: Callable[[], tuple],
          ops: Callable[..., int | None], *, message: str | None, expect, claim: Claim | None,
          release: bool, retry: bool, attempts: int) -> Result:
    """The shared transaction loop: read, check, build one multi, commit, re-read on a race."""
    for attempt in range(attempts):
        cur, version, extra = read()
        frm = cur["status"]
        if expect is not None and frm not in expect:
            raise StaleStatus(f"{kind} {ident} is {frm}, expected {'/'.join(sorted(expect))}")
        if claim is not None and (claim.status != frm or claim.status_version != version):
            raise LostClaim(f"{kind} {ident} changed under our claim ({claim.status} -> {frm})")
        rec = _next_record(kind, ident, cur, to, message, retry)
        tx = zk.transaction()
        if claim is not None:
            tx.check(claim.node_path, claim.node_version)
        prio = ops(tx, frm, version, rec, extra)
        if release and claim is not None:
            tx.delete(claim.lock_path)
        try:
            txn.commit(tx)
        except txn.TransactionFailed as e:
            if claim is not None:
                raise LostClaim(f"{kind} {ident}: claim lost at commit ({e})") from e
            if e.conflict and attempt + 1 < attempts:
                time.sleep(0.01 * (attempt + 1))
                continue
            raise
        if claim is not None:
            claim.status, claim.status_version = to, version + 1
            claim.released = claim.released or release
        return Result(ident, frm, to, rec, version + 1, prio)
    raise StaleStatus(f"{kind} {ident}: gave up after {attempts} conflicting writers")


def transition_job(
    zk: KazooClient,
    layout: Layout,
    jid: str,
    to: str,
    *,
    message: str | None = None,
    expect: frozenset[str] | set[str] | None = None,
    priority: int | None = None,
    claim: Claim | None = None,
    release: bool = False,
    retry: bool = False,
    attempts: int = 5,
) -> Result:
    """Move job ``jid`` to ``to``; see the module guarantees."""

    def read() -> tuple:
        cur, version, prio, bid = read_job(zk, layout, jid)
        return cur, version, (prio, bid)

    def ops(tx, frm: str, version: int, rec: dict, extra: tuple) -> int:
        old_prio, bid = extra
        new_prio = old_prio if priority is None else clamp_priority(priority)
        tx.set_data(layout.job_node(jid, "status"), encode(rec), version=version)
        tx.delete(layout.job_state_entry(frm, old_prio, jid))
        tx.create(layout.job_state_entry(to, new_prio, jid))
        if new_prio != old_prio:
            tx.set_data(layout.job_node(jid, "priority"), encode(f"{new_prio:02d}"))
        old_out, new_out = states.batch_outcome(frm), states.batch_outcome(to)
        if bid and old_out != new_out:
            tx.delete(layout.batch_member(bid, old_out, jid))
            tx.create(layout.batch_member(bid, new_out, jid))
        return new_prio

    result = _move(zk, states.JOB, jid, to, read, ops, message=message, expect=expect,
                   claim=claim, release=release, retry=retry, attempts=attempts)
    if states.batch_outcome(result.from_status) == "processing" != states.batch_outcome(to):
        _, _, _, bid = read_job(zk, layout, jid)
        if bid:
            signal_batch_ready(zk, layout, bid)
    return result


def signal_batch_ready(zk: KazooClient, layout: Layout, bid: str) -> bool:
    """If no job of ``bid`` is unsettled, write ``ready`` into its ``processing`` membership
    node: workers waiting to report the batch hold a data watch on it and wake at once.
    Every path that settles a job (worker, admin, API) passes here through transition_job."""
    members = layout.batch_members(bid, "processing")
    stat = zk.exists(members)
    if stat is None or stat.numChildren:
        return False
    try:
        zk.set(members, b"ready")
    except NoNodeError:
        return False
    return True


def read_batch(zk: KazooClient, layout: Layout, bid: str) -> tuple[dict, int]:
    try:
        data, stat = zk.get(layout.batch_status(bid))
    except NoNodeError as e:
        raise NotFound(f"batch {bid} does not exist") from e
    return decode(data), stat.version


def transition_batch(
    zk: KazooClient,
    layout: Layout,
    bid: str,
    to: str,
    *,
    message: str | None = None,
    expect: frozenset[str] | set[str] | None = None,
    claim: Claim | None = None,
    release: bool = False,
    attempts: int = 5,
) -> Result:
    """Move batch ``bid`` to ``to``; see the module guarantees."""

    def read() -> tuple:
        return (*read_batch(zk, layout, bid), None)

    def ops(tx, frm: str, version: int, rec: dict, extra: None) -> None:
        tx.set_data(layout.batch_status(bid), encode(rec), version=version)
        tx.delete(layout.batch_state_entry(frm, bid))
        tx.create(layout.batch_state_entry(to, bid))

    return _move(zk, states.BATCH, bid, to, read, ops, message=message, expect=expect,
                 claim=claim, release=release, retry=False, attempts=attempts)
