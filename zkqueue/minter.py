"""ARK minting: a local minter (sequential ARKs, counter in ZooKeeper) or EZID over HTTP.

Guarantees: a local minter never returns the same ARK twice, whatever the number of threads,
processes and hosts sharing its counter (increments are version-checked; a lost reply may skip a
number, never repeat one). EZID errors never contain the password. A minted ARK that is never
used is harmless, so minting is retried freely; callers make it idempotent by saving the ARK
before using it.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Protocol
from urllib.parse import quote, urlsplit

import requests
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.recipe.counter import Counter
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

_SHOULDER = re.compile(r"ark:/[0-9A-Za-z]+/[0-9A-Za-z]*")


class MintError(Exception):
    """No ARK could be minted; ``permanent`` says whether trying again can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Minter(Protocol):
    def mint(self) -> str: ...


def _check_shoulder(shoulder: str) -> str:
    if not _SHOULDER.fullmatch(shoulder or ""):
        raise ValueError(f"not an ARK shoulder (like ark:/99999/fk4): {shoulder!r}")
    return shoulder


class LocalMinter:
    """ARKs ``<shoulder><n:07d>`` with n = 1, 2, 3... from a ZooKeeper counter at counter_path."""

    def __init__(self, client: KazooClient, counter_path: str, shoulder: str) -> None:
        self.shoulder = _check_shoulder(shoulder)
        self.counter_path = counter_path
        self._counter = Counter(client, counter_path)
        # Counter keeps the result of the last change on the instance; one change at a time.
        self._lock = threading.Lock()

    def mint(self) -> str:
        try:
            with self._lock:
                self._counter += 1
                number = self._counter.post_value
        except KazooException as exc:
            raise MintError(
                f"cannot advance the ARK counter {self.counter_path}: {type(exc).__name__}"
            ) from exc
        return f"{self.shoulder}{number:07d}"


def _anvl_value(value: str) -> str:
    return value.replace("%", "%25").replace("\n", "%0A").replace("\r", "%0D")


class EzidMinter:
    """Mints through EZID's API: ``POST {url}/shoulder/{shoulder}`` with HTTP Basic auth.

    Connection errors, timeouts, 5xx, 408 and 429 are retried ``retries`` more times with
    exponential backoff and jitter; anything else EZID refuses (400, 401, 403...) fails at once
    with EZID's own error text.
    """

    def __init__(
        self,
        url: str,
        shoulder: str,
        user: str,
        password: str,
        timeout: float = 30.0,
        retries: int = 3,
        *,
        target: str | None = None,
        backoff: float = 1.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"EZID URL must be http(s)://host..., not {url!r}")
        if parts.username or parts.password:
            raise ValueError("put EZID credentials in user and password, not in the URL")
        self.url = url.rstrip("/")
        self.shoulder = _check_shoulder(shoulder)
        self.user, self._password = user, password
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.target = target

    def __repr__(self) -> str:
        return f"EzidMinter({self.url}, {self.shoulder}, user={self.user!r})"

    def mint(self) -> str:
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, MintError) and not e.permanent),
            stop=stop_after_attempt(1 + max(0, self.retries)),
            wait=wait_random_exponential(multiplier=self.backoff, max=60 * self.backoff),
            reraise=True,
        )
        return retrying(self._mint_once)

    def _mint_once(self) -> str:
        endpoint = f"{self.url}/shoulder/{quote(self.shoulder, safe=':/')}"
        body = f"_target: {_anvl_value(self.target)}\n" if self.target else ""
        try:
            reply = requests.post(
                endpoint,
                data=body.encode("utf-8"),
                headers={"Content-Type": "text/plain; charset=UTF-8", "Accept": "text/plain"},
                auth=(self.user, self._password),
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise MintError(f"EZID at {self.url} unreachable: {type(exc).__name__}") from exc
        text = self._clean(reply.text)
        if reply.status_code in (200, 201) and text.startswith("success:"):
            identifier = text[len("success:") :].split("|", 1)[0].strip()
            if not identifier.startswith(self.shoulder) or len(identifier) == len(self.shoulder):
                raise MintError(
                    f"EZID minted {identifier!r}, which is not under {self.shoulder}",
                    permanent=True,
                )
            return identifier
        transient = reply.status_code >= 500 or reply.status_code in (408, 429)
        raise MintError(
            f"EZID refused to mint under {self.shoulder}: HTTP {reply.status_code}: "
            f"{text or '(no message)'}",
            permanent=not transient,
        )

    def _clean(self, text: str) -> str:
        first = text.strip().splitlines()[0].strip() if text.strip() else ""
        if self._password:
            first = first.replace(self._password, "***")
        return first[:500]


def open_minter(cfg: dict, client: KazooClient, counter_root: str) -> Minter:
    """The minter a ``minter:`` configuration asks for.

    ``{"type": "local", "shoulder"}``: the counter lives at ``<counter_root>/<quoted shoulder>``,
    so each shoulder has its own sequence. ``{"type": "ezid", "url", "shoulder", "user",
    "password" | "password_env", "timeout"?, "retries"?, "target"?}``.
    """
    kind = cfg.get("type", "local")
    shoulder = cfg.get("shoulder")
    if not shoulder:
        raise ValueError("minter configuration needs a shoulder")
    if kind == "local":
        path = f"{counter_root.rstrip('/')}/{quote(shoulder, safe='')}"
        return LocalMinter(client, path, shoulder)
    if kind == "ezid":
        missing = [k for k in ("url", "user") if not cfg.get(k)]
        if missing:
            raise ValueError(f"EZID minter configuration needs {', '.join(missing)}")
        password = cfg.get("password")
        if cfg.get("password_env"):
            password = os.environ.get(cfg["password_env"])
            if password is None:
                raise ValueError(f"minter.password_env names {cfg['password_env']}, not set")
        if not password:
            raise ValueError("EZID minter configuration needs password or password_env")
        return EzidMinter(
            cfg["url"],
            shoulder,
            cfg["user"],
            password,
            timeout=float(cfg.get("timeout", 30.0)),
            retries=int(cfg.get("retries", 3)),
            target=cfg.get("target"),
        )
    raise ValueError(f"unknown minter type {kind!r}: use local or ezid")
