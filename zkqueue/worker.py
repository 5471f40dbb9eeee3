"""The worker runtime: claim the best item, run its steps, commit, repeat.

Guarantees:

* Claims go through :mod:`zkqueue.claims` and status changes through :mod:`zkqueue.transitions`;
  a worker never writes status any other way.
* One children watch per served state dir per process feeds a local, coalesced cache; claiming
  picks from the cache (lowest priority, then oldest; later pipeline stages first on a tie) and
  never lists a dir per attempt. A slow poll refreshes the caches as a safety net.
* On SUSPENDED no new step starts and commits wait; on LOST every in-flight step is abandoned
  without writing (its locks are gone; the fence refuses a late write anyway).
* SIGTERM (or :meth:`stop`): no new claims; running steps get ``shutdown_grace`` seconds to finish,
  then are cancelled; every claim is released before the process exits.
* A handler's failure fails the item with a message naming the step; the worker goes on.
"""

from __future__ import annotations

import heapq
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import ConnectionLoss, NoNodeError, SessionExpiredError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch
from prometheus_client import start_http_server

import handlers
from handlers.context import BatchContext, Cancelled, Defer, JobContext, StepFailed

from . import claims, metrics, states
from .config import Config
from .layout import decode, encode, parse_entry
from .queue import connect, ensure_layout
from .services import Services
from .transitions import LostClaim, now_iso, transition_batch, transition_job

log = logging.getLogger("zkqueue.worker")

BATCH_PREFIX = "batch-"
LOCKED_RETRY = 3.0
INVENTORY_RETRY = 5.0


def parse_states(spec: str | None) -> tuple[frozenset[str], frozenset[str]]:
    """``pending,estimating,batch-reporting`` -> (job states, batch states); empty = all."""
    if not spec:
        return frozenset(states.JOB_ACTIVE), frozenset(states.BATCH_ACTIVE)
    jobs, batches = set(), set()
    for raw in (s.strip() for s in spec.split(",") if s.strip()):
        if raw.startswith(BATCH_PREFIX) and raw[len(BATCH_PREFIX):] in states.BATCH_ACTIVE:
            batches.add(raw[len(BATCH_PREFIX):])
        elif raw in states.JOB_ACTIVE:
            jobs.add(raw)
        else:
            known = ", ".join(list(states.JOB_ACTIVE)
                              + [BATCH_PREFIX + b for b in states.BATCH_ACTIVE])
            raise ValueError(f"unknown state {raw!r}; known: {known}")
    return frozenset(jobs), frozenset(batches)


def database_down(exc: BaseException) -> bool:
    from .inventory import InventoryError

    return isinstance(exc, InventoryError) and not exc.permanent


def describe_failure(step: str, exc: BaseException) -> tuple[str, str]:
    """(message for the depositor, error class for metrics)."""
    from handlers.fetch import FetchError
    from handlers.unzip import UnsafeArchive

    from .checkm import ManifestError
    from .inventory import InventoryError
    from .minter import MintError
    from .safepaths import UnsafePath
    from .storage import StorageError

    if isinstance(exc, StepFailed):
        return f"{step}: {exc.message}", exc.error_class
    table = [
        (FetchError, lambda e: "fetch_permanent" if e.permanent else "fetch_transient"),
        (ManifestError, lambda e: "manifest"),
        (UnsafePath, lambda e: "unsafe_path"),
        (UnsafeArchive, lambda e: "unsafe_archive"),
        (StorageError, lambda e: "storage"),
        (MintError, lambda e: "minter"),
        (InventoryError, lambda e: "inventory"),
    ]
    for cls, label in table:
        if isinstance(exc, cls):
            return f"{step}: {exc}", label(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{step}: {exc.strerror or exc}{where}", "os_error"
    return f"{step}: internal error {type(exc).__name__}: {exc}", "internal"


@dataclass(order=True)
class Item:
    sort_key: tuple
    kind: str = field(compare=False)
    ident: str = field(compare=False)
    status: str = field(compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.ident)


class Worker:
    def __init__(self, cfg: Config, *, threads: int | None = None, states_spec: str | None = None,
                 drain: bool = False, zk: KazooClient | None = None):
        self.cfg = cfg
        self.n_threads = int(threads or cfg["worker"]["threads"])
        self.job_states, self.batch_states = parse_states(states_spec)
        self.drain = drain
        self.zk = zk or connect(cfg)
        self._own_zk = zk is None
        self.services = Services(cfg, self.zk)
        self.services.await_session = self.await_session
        self.layout = self.services.layout
        self.poll = float(cfg["worker"]["poll_interval"])
        self.grace = float(cfg["worker"].get("shutdown_grace", 10.0))
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.connected.set()
        self.cond = threading.Condition()
        self.caches: dict[str, list[Item]] = {}
        self.backoff: dict[tuple[str, str], float] = {}
        self.inflight: set[tuple[str, str]] = set()
        self.active: dict[tuple[str, str], threading.Event] = {}
        self.paused = False
        self.busy = 0
        self.drained = False
        self.heartbeat_path = self.layout.p(
            "workers", f"{socket.gethostname()}:{os.getpid()}:{id(self):x}")
        self.handled = 0
        self.metrics_server = None
        self._stop_at: float | None = None
        self.listeners: list = []  # called as fn(kind, ident, from_status, to_status)

    # -- connection and caches ---------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        if state == KazooState.CONNECTED:
            self.connected.set()
            with self.cond:
                self.cond.notify_all()
            return
        self.connected.clear()
        if state == KazooState.LOST:
            log.warning("zookeeper session lost: abandoning in-flight steps")
            metrics.CLAIMS_LOST.inc(len(self.active))
            for ev in list(self.active.values()):
                ev.set()

    def _dir_items(self, kind: str, status: str, names: list[str]) -> list[Item]:
        items = []
        if kind == "job":
            rank = -states.JOB_STEPS.index(status)
            for n in names:
                e = parse_entry(n)
                if e:
                    items.append(Item((e[0], rank, e[1]), "job", e[1], status))
        else:
            rank = -states.BATCH_ACTIVE.index(status)
            items = [Item((-1, rank, b), "batch", b, status) for b in names if b.startswith("bid")]
        items.sort()
        return items

    def _set_cache(self, kind: str, status: str, names: list[str]) -> None:
        items = self._dir_items(kind, status, names)
        with self.cond:
            self.caches[f"{kind}:{status}"] = items
            self.cond.notify_all()

    def _served_dirs(self) -> list[tuple[str, str, str]]:
        out = [("job", s, self.layout.job_state_dir(s)) for s in sorted(self.job_states)]
        out += [("batch", s, self.layout.batch_state_dir(s)) for s in sorted(self.batch_states)]
        return out

    def _watch(self) -> None:
        for kind, status, path in self._served_dirs():
            def fn(children, kind=kind, status=status):
                self._set_cache(kind, status, children or [])
                return not self.stopping.is_set()

            ChildrenWatch(self.zk, path, fn)

        def on_pause(data, stat):
            self.paused = stat is not None
            with self.cond:
                self.cond.notify_all()
            return not self.stopping.is_set()

        DataWatch(self.zk, self.layout.queue_pause, on_pause)

    def _refresh(self) -> None:
        for kind, status, path in self._served_dirs():
            try:
                self._set_cache(kind, status, self.zk.get_children(path))
            except (NoNodeError, ConnectionLoss, SessionExpiredError):
                pass

    def _heartbeat(self) -> None:
        doc = {"owner": f"{socket.gethostname()}:{os.getpid()}", "threads": self.n_threads,
               "states": sorted(self.job_states) + [BATCH_PREFIX + s for s in self.batch_states],
               "heartbeat": now_iso(), "handled": self.handled}
        metrics.HEARTBEAT.set_to_current_time()
        try:
            if self.zk.exists(self.heartbeat_path):
                self.zk.set(self.heartbeat_path, encode(doc))
            else:
                self.zk.create(self.heartbeat_path, encode(doc), ephemeral=True, makepath=True)
        except Exception as e:  # noqa: BLE001 - a missed heartbeat must not stop the worker
            log.warning("heartbeat failed: %s", e)

    # -- choosing work -----------------------------------------------------------------------
    def _next(self) -> Item | None:
        now = time.monotonic()
        for key in [k for k, t in self.backoff.items() if t <= now]:
            del self.backoff[key]
        for item in heapq.merge(*self.caches.values()):
            if item.key in self.inflight or item.key in self.backoff:
                continue
            if self.paused and item.status == "pending":
                continue
            self.inflight.add(item.key)
            return item
        return None

    def _wait_time(self) -> float:
        if not self.backoff:
            return self.poll
        return max(0.05, min(self.poll, min(self.backoff.values()) - time.monotonic()))

    def _nothing_left(self) -> bool:
        """For --drain: no step of ours running, no entry in a dir we serve that we could act on.

        Pending items of a paused queue and batches waiting for their jobs do not count: nothing
        this worker can do moves them. Items other workers hold do count (they may fail back).
        """
        if self.busy:
            return False
        zk, lay = self.zk, self.layout
        dirs = [lay.job_state_dir(s) for s in self.job_states
                if not (self.paused and s == "pending")]
        dirs += [lay.batch_state_dir(s) for s in ("pending", "processing")
                 if s in self.batch_states and not (self.paused and s == "pending")]
        futs = [zk.exists_async(d) for d in dirs]
        if any((f.get() and f.get().numChildren) for f in futs):
            return False
        for s in ("reporting", "update-reporting"):
            if s not in self.batch_states:
                continue
            for bid in zk.get_children(lay.batch_state_dir(s)):
                stat = zk.exists(lay.batch_members(bid, "processing"))
                if stat is None or stat.numChildren == 0:
                    return False  # ready to report
        return True

    # -- threads ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stopping.is_set():
            if not self.connected.wait(timeout=1.0):
                continue
            with self.cond:
                item = self._next()
                if item is None:
                    if self.drain and not self.busy:
                        try:
                            done = self._nothing_left()
                        except (ConnectionLoss, SessionExpiredError):
                            done = False
                        if done:
                            self.drained = True
                            self.stopping.set()
                            self.cond.notify_all()
                            return
                    self.cond.wait(timeout=self._wait_time() if not self.drain
                                   else min(1.0, self._wait_time()))
                    continue
                self.busy += 1
            try:
                self._run(item)
            except (ConnectionLoss, SessionExpiredError) as e:
                log.warning("connection trouble on %s %s: %s", item.kind, item.ident, e)
                self._back_off(item.key, 1.0)
            except Exception:  # noqa: BLE001 - the worker outlives any one item
                log.exception("unexpected error on %s %s", item.kind, item.ident)
                self._back_off(item.key, LOCKED_RETRY)
            finally:
                with self.cond:
                    self.busy -= 1
                    self.inflight.discard(item.key)
                    self.cond.notify_all()

    def _run(self, item: Item) -> None:
        c = claims.claim(self.zk, self.layout, item.kind, item.ident, item.status)
        if c is None:
            self._back_off(item.key, LOCKED_RETRY)
            return
        cancel = threading.Event()
        self.active[item.key] = cancel
        metrics.BUSY.inc()
        try:
            if item.kind == "job":
                self._run_job(c, cancel)
            else:
                self._run_batch(c, cancel)
            self.handled += 1
        finally:
            metrics.BUSY.dec()
            self.active.pop(item.key, None)
            if not c.released:
                try:
                    claims.release(self.zk, c)  # refused harmlessly if the session died
                except (ConnectionLoss, SessionExpiredError):
                    pass

    def await_session(self, session_id: int) -> bool:
        """Wait out a connection loss; True if we are connected again on ``session_id``."""
        if not self.connected.wait(timeout=float(self.cfg["zookeeper"]["session_timeout"])):
            return False
        current = self.zk.client_id[0] if self.zk.client_id else None
        return current == session_id

    def _await(self, c: claims.Claim) -> None:
        """Hold a commit while SUSPENDED; give up if the session (and so the claim) is gone."""
        if not self.await_session(c.session_id):
            raise LostClaim(f"{c.ident}: session gone, and the claim with it")

    def _step(self, kind: str, c: claims.Claim, fn, ctx):
        """Run one handler; returns its Outcome, or None after failing/deferring the item."""
        step = c.status
        t0 = time.monotonic()
        extra = {kind: c.ident, "step": step}
        try:
            for _ in range(3):
                ctx.check_cancel()
                try:
                    return fn(ctx)
                except ConnectionLoss:
                    # Held, not failed: the step is idempotent, so once the same session is
                    # back it simply runs again; a new session means the claim is gone.
                    if not self.await_session(c.session_id):
                        raise Cancelled(f"{c.ident}: connection lost with the session") from None
                    log.info("connection back: running the step again", extra=extra)
            raise Cancelled(f"{c.ident}: connection keeps failing")
        except Defer as d:
            metrics.DEFERRED.labels(kind=kind, step=step).inc()
            log.info("deferred: %s", d.reason, extra=extra)
            self._defer((kind, c.ident), d)
        except Cancelled as e:
            log.info("abandoned: %s", e, extra=extra)
        except LostClaim as e:
            metrics.CLAIMS_LOST.inc()
            log.warning("claim lost: %s", e, extra=extra)
        except Exception as e:  # noqa: BLE001 - every failure becomes the item's message
            if ctx.cancel.is_set():
                log.info("abandoned after %s: %s", type(e).__name__, e, extra=extra)
                return None
            if database_down(e):
                # The database of record being away is no fault of the deposit: the item
                # waits in its step, unchanged, and goes on when the database is back.
                log.warning("inventory unavailable, will retry: %s", e, extra=extra)
                metrics.DEFERRED.labels(kind=kind, step=step).inc()
                self._defer((kind, c.ident), Defer(str(e), delay=INVENTORY_RETRY))
                return None
            message, error_class = describe_failure(step, e)
            if error_class == "internal":
                log.exception("internal error", extra=extra)
            metrics.FAILURES.labels(kind=kind, step=step, error_class=error_class).inc()
            log.info("failed: %s", message, extra={**extra, "error_class": error_class})
            self._commit(kind, c, "failed", message=message, release=True)
        finally:
            metrics.STEP_SECONDS.labels(kind=kind, step=step).observe(time.monotonic() - t0)
        return None

    def _commit(self, kind: str, c: claims.Claim, to: str, *, message: str = "",
                priority: int | None = None, release: bool = True) -> bool:
        frm = c.status
        try:
            for attempt in range(3):
                self._await(c)
                try:
                    if kind == "job":
                        transition_job(self.zk, self.layout, c.ident, to, message=message,
                                       priority=priority, claim=c, release=release)
                    else:
                        transition_batch(self.zk, self.layout, c.ident, to, message=message,
                                         claim=c, release=release)
                    break
                except ConnectionLoss:
                    self._await(c)
                    if self._landed(kind, c, to):
                        break
                    if attempt == 2:
                        raise LostClaim(f"{c.ident}: connection keeps failing") from None
        except LostClaim as e:
            metrics.CLAIMS_LOST.inc()
            log.warning("not committed: %s", e, extra={kind: c.ident})
            return False
        metrics.TRANSITIONS.labels(kind=kind, from_status=frm, to_status=to).inc()
        for fn in self.listeners:
            fn(kind, c.ident, frm, to)
        log.info("%s -> %s", frm, to, extra={kind: c.ident, "status_message": message[:500]})
        return True

    def _landed(self, kind: str, c: claims.Claim, to: str) -> bool:
        """Did a commit cut off by a connection loss go through? (Then the claim follows it.)"""
        path = self.layout.job_node(c.ident, "status") if kind == "job" \
            else self.layout.batch_status(c.ident)
        data, stat = self.zk.get(path)
        if (decode(data) or {}).get("status") != to or stat.version != c.status_version + 1:
            return False
        c.status, c.status_version = to, stat.version
        c.released = not self.zk.exists(c.lock_path)
        return True

    def _run_job(self, c: claims.Claim, cancel: threading.Event) -> None:
        job_handlers, _ = handlers.load()
        conf = decode(self.zk.get(self.layout.job_node(c.ident, "configuration"))[0])
        ctx = JobContext(self.services, c, cancel,
                         logging.LoggerAdapter(log, {"job": c.ident}), conf=conf)
        while True:
            outcome = self._step("job", c, job_handlers[c.status], ctx)
            if outcome is None:
                self._settled(conf.get("batch_id", ""), c)
                return
            go_on = (outcome.status in self.job_states and not self.stopping.is_set()
                     and not cancel.is_set())
            if not self._commit("job", c, outcome.status, message=outcome.message,
                                priority=outcome.priority, release=not go_on):
                return
            self._settled(conf.get("batch_id", ""), c)
            if not go_on:
                return

    def _settled(self, bid: str, c: claims.Claim) -> None:
        """After a job settles: if its batch has no job running, report it without waiting.
        (The transition already signalled other processes; this wakes our own threads.)"""
        if c.status not in states.JOB_SETTLED or not bid:
            return
        stat = self.zk.exists(self.layout.batch_members(bid, "processing"))
        if stat is not None and stat.numChildren == 0:
            self._wake(("batch", bid))

    def _run_batch(self, c: claims.Claim, cancel: threading.Event) -> None:
        _, batch_handlers = handlers.load()
        sub = decode(self.zk.get(self.layout.batch_submission(c.ident))[0]) or {}
        ctx = BatchContext(self.services, c, cancel,
                           logging.LoggerAdapter(log, {"batch": c.ident}), submission=sub)
        while True:
            outcome = self._step("batch", c, batch_handlers[c.status], ctx)
            if outcome is None:
                return
            go_on = outcome.status in self.batch_states and not self.stopping.is_set()
            if not self._commit("batch", c, outcome.status, message=outcome.message,
                                release=not go_on) or not go_on:
                return
            ctx.submission = decode(self.zk.get(self.layout.batch_submission(c.ident))[0]) or {}

    def _defer(self, key: tuple[str, str], d: Defer) -> None:
        self._back_off(key, d.delay)
        if d.wake_path:
            def fire(event, key=key):
                self._wake(key)

            try:
                stat = self.zk.exists(d.wake_path, watch=fire)
                if stat is None or stat.numChildren == 0:
                    self._wake(key)
            except (ConnectionLoss, SessionExpiredError):
                pass

    def _back_off(self, key: tuple[str, str], delay: float) -> None:
        """Skip ``key`` for ``delay`` seconds. Under the lock: ``_next`` walks the table under it,
        and a write from another thread mid-walk would end that thread's loop."""
        with self.cond:
            self.backoff[key] = time.monotonic() + delay

    def _wake(self, key: tuple[str, str]) -> None:
        with self.cond:
            self.backoff.pop(key, None)
            self.cond.notify_all()

    # -- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop claiming; cancel running steps after the grace period."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self._stop_at = time.monotonic()
        with self.cond:
            self.cond.notify_all()

        def cancel_later():
            deadline = time.monotonic() + self.grace
            while self.busy and time.monotonic() < deadline:
                time.sleep(0.1)
            for ev in list(self.active.values()):
                ev.set()

        threading.Thread(target=cancel_later, daemon=True, name="shutdown").start()

    def run(self) -> int:
        """Serve until stopped (or, with drain, until nothing is left); returns an exit code."""
        if not self._serve_metrics():
            self.close()
            return 1
        self.services.check()
        ensure_layout(self.zk, self.layout)
        self.zk.add_listener(self._on_state)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        self._watch()
        self._heartbeat()
        threads = [threading.Thread(target=self._loop, name=f"w{i}", daemon=True)
                   for i in range(self.n_threads)]
        for t in threads:
            t.start()
        log.info("worker started", extra={"threads": self.n_threads,
                                          "job_states": sorted(self.job_states),
                                          "batch_states": sorted(self.batch_states)})
        next_poll = time.monotonic() + self.poll
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)
            if self._stop_at and time.monotonic() > self._stop_at + self.grace + 5.0:
                # A step stuck in I/O past its cancel: closing the session drops its locks.
                log.warning("steps still running after shutdown grace; closing the session")
                break
            if time.monotonic() >= next_poll and not self.stopping.is_set():
                next_poll = time.monotonic() + self.poll
                self._refresh()
                self._heartbeat()
        self.close()
        log.info("worker stopped", extra={"handled": self.handled, "drained": self.drained})
        return 0

    def _serve_metrics(self) -> bool:
        """This process's own /metrics on worker.metrics_port (0: off); Prometheus sums them."""
        port = int(self.cfg["worker"].get("metrics_port") or 0)
        if not port:
            return True
        addr = str(self.cfg["worker"].get("metrics_addr") or "0.0.0.0")
        try:
            self.metrics_server, _ = start_http_server(port, addr=addr)
        except OSError as e:
            log.error("cannot serve metrics on %s:%d: %s", addr, port, e.strerror or e)
            return False
        return True

    def close(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            self.metrics_server = None
        try:
            self.zk.delete(self.heartbeat_path)
        except Exception:  # noqa: BLE001 - the node is ephemeral anyway
            pass
        self.zk.remove_listener(self._on_state)
        self.services.close()
        if self._own_zk:
            self.zk.stop()
            self.zk.close()
