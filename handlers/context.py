"""What a step handler gets, and how it says what happened.

A handler receives a :class:`JobContext` (or :class:`BatchContext`) for an item this process has
claimed, and returns an :class:`Outcome` naming the next status. It says "not now" by raising
:class:`Defer` (the claim is released, nothing is written), and "this cannot succeed" by raising
:class:`StepFailed` with a message for the depositor. Handlers never write status: the worker does,
through :mod:`zkqueue.transitions`. Everything a handler writes to ZooKeeper goes through
:meth:`ItemContext.write`, fenced by the claim, and must be safe to write again on a rerun.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from kazoo.exceptions import ConnectionLoss, NoNodeError

from zkqueue import txn
from zkqueue.claims import Claim
from zkqueue.layout import decode, encode
from zkqueue.services import Services


@dataclass
class Outcome:
    status: str
    priority: int | None = None
    message: str = ""


class StepFailed(Exception):
    """The step cannot succeed as submitted; ``message`` tells the depositor why."""

    def __init__(self, message: str, error_class: str = "invalid_input"):
        super().__init__(message)
        self.message, self.error_class = message, error_class


class Defer(Exception):
    """Not now: release the claim unchanged and look again after ``delay`` seconds."""

    def __init__(self, reason: str, delay: float = 5.0, wake_path: str | None = None):
        super().__init__(reason)
        self.reason, self.delay, self.wake_path = reason, delay, wake_path


class Cancelled(Exception):
    """The worker is stopping or lost its session: abandon the step without writing."""


@dataclass
class ItemContext:
    services: Services
    claim: Claim
    cancel: threading.Event
    log: logging.LoggerAdapter
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def zk(self):
        return self.services.zk

    @property
    def layout(self):
        return self.services.layout

    @property
    def cfg(self):
        return self.services.cfg

    @property
    def ident(self) -> str:
        return self.claim.ident

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(f"{self.ident}: step abandoned (worker stopping or session lost)")

    def node_path(self, name: str) -> str:
        raise NotImplementedError

    def held(self, fn: Callable[[], Any]) -> Any:
        """Run a ZooKeeper call; across a connection loss, wait and retry while the session (and
        so the claim) survives, else abandon the step."""
        for _ in range(3):
            try:
                return fn()
            except ConnectionLoss:
                wait = self.services.await_session
                if wait is None or not wait(self.claim.session_id):
                    raise Cancelled(f"{self.ident}: connection lost with the session") from None
        raise Cancelled(f"{self.ident}: connection keeps failing")

    def read(self, name: str) -> Any:
        try:
            return decode(self.held(lambda: self.zk.get(self.node_path(name)))[0])
        except NoNodeError:
            return None

    def write(self, name: str, value: Any) -> None:
        """Create or replace a child node of this item, only while the claim is ours."""
        path = self.node_path(name)

        def attempt() -> None:
            tx = self.zk.transaction()
            tx.check(self.claim.node_path, self.claim.node_version)
            if self.zk.exists(path) is not None:
                tx.set_data(path, encode(value))
            else:
                tx.create(path, encode(value))
            txn.commit(tx)

        try:
            self.held(attempt)
        except txn.TransactionFailed as e:
            if e.exists:  # a retried create that had gone through before the connection broke
                return self.write(name, value)
            raise Cancelled(f"{self.ident}: claim lost while writing {name}") from e


@dataclass
class JobContext(ItemContext):
    conf: dict = field(default_factory=dict)

    def node_path(self, name: str) -> str:
        return self.layout.job_node(self.ident, name)

    @property
    def workdir(self) -> Path:
        return Path(self.conf["working_dir"])

    @cached_property
    def submission(self) -> dict:
        bid = self.conf.get("batch_id", "")
        try:
            return decode(self.zk.get(self.layout.batch_submission(bid))[0]) or {}
        except NoNodeError:
            return {}


@dataclass
class BatchContext(ItemContext):
    submission: dict = field(default_factory=dict)

    def node_path(self, name: str) -> str:
        return self.layout.p("batches", self.ident, name)
