"""Fetching payloads, manifests and files over HTTP(S) (file:// only when the configuration allows
it), under the configured URL policy, with bounded retries of transient failures.

Every failure is a FetchError that says whether retrying later could help (`permanent`), and
whose message is fit for a depositor: the URL (credentials removed), and what went wrong.
"""

from __future__ import annotations

import email.utils
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential, wait_random_exponential

from handlers.digests import new_hash, normalize_digest

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_CHUNK = 256 * 1024
_MAX_REDIRECTS = 10
_USERINFO = re.compile(r"(?<=//)[^/@\s]*@")


def redact(text: str) -> str:
    """`text` with the user:password@ part of every URL in it removed."""
    return _USERINFO.sub("", text)


class FetchError(Exception):
    """A fetch that failed. `permanent` is False when the same request may succeed later."""

    def __init__(self, message: str, *, url: str, permanent: bool) -> None:
        self.message = redact(message)
        self.url = redact(url)
        self.permanent = permanent
        self.detail = self.message  # what went wrong, without the URL where it is known
        super().__init__(self.message)


class FetchCancelled(FetchError):
    """The caller's cancel event was set; message "cancelled", not permanent."""

    def __init__(self, *, url: str) -> None:
        super().__init__("cancelled", url=url, permanent=False)


class _Transient(FetchError):
    def __init__(self, url: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{url}: {detail}", url=url, permanent=False)
        self.detail = redact(detail)
        self.retry_after = retry_after


def _permanent(url: str, detail: str) -> FetchError:
    error = FetchError(f"{url}: {detail}", url=url, permanent=True)
    error.detail = redact(detail)
    return error


class UrlPolicy:
    """Which URLs may be fetched: http and https (file:// only when allowed), and when
    allowed_hosts is not empty, only from those hosts (compared case-insensitively)."""

    def __init__(self, allow_file_urls: bool = False, allowed_hosts: Sequence[str] = ()) -> None:
        self.allow_file_urls = allow_file_urls
        self.allowed_hosts = frozenset(h.strip().lower() for h in allowed_hosts if h.strip())

    def check(self, url: str) -> None:
        """Return if `url` may be fetched; else raise FetchError(permanent=True) naming the
        scheme or host and what is allowed."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "file":
            if not self.allow_file_urls:
                raise _permanent(url, "file:// URLs are not allowed here (configuration "
                                      "payloads.allow_file_urls); use an http or https URL")
            if parts.netloc not in ("", "localhost"):
                raise _permanent(url, f"file:// URL names the host {parts.netloc!r}; only local "
                                      "files (file:///absolute/path) can be read")
            return
        if scheme not in ("http", "https"):
            allowed = "http, https, file" if self.allow_file_urls else "http, https"
            raise _permanent(url, f"URL scheme {scheme or '(none)'!r} is not allowed; "
                                  f"allowed: {allowed}")
        host = parts.hostname
        if not host:
            raise _permanent(url, "the URL has no host name")
        if self.allowed_hosts and host not in self.allowed_hosts:
            raise _permanent(url, f"host {host!r} is not allowed; allowed hosts: "
                                  f"{', '.join(sorted(self.allowed_hosts))}")


@dataclass
class HttpSettings:
    timeout: float = 30.0
    retries: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    threads: int = 4
    max_manifest_bytes: int = 16 * 2**20
    user_agent: str = "zkqueue/0.1"


@dataclass(frozen=True)
class Downloaded:
    """A complete, verified file: `digests` has "sha256" and the verified algorithm, if any."""

    path: Path
    size: int
    digests: dict[str, str]


class _Backoff:
    """Exponential backoff with jitter: the n-th wait lies between half and all of
    initial * 2**(n-1), capped at maximum; never shorter than a Retry-After the server sent
    (itself capped at maximum)."""

    def __init__(self, initial: float, maximum: float) -> None:
        half, half_max = initial / 2, maximum / 2
        self._wait = (wait_exponential(multiplier=half, max=half_max)
                      + wait_random_exponential(multiplier=half, max=half_max))
        self._maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        delay = self._wait(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            delay = max(delay, min(retry_after, self._maximum))
        return delay


class _PolicySession(requests.Session):
    """A session that applies the URL policy to every redirect before following it."""

    def __init__(self, policy: UrlPolicy) -> None:
        super().__init__()
        self._policy = policy
        self.max_redirects = _MAX_REDIRECTS

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target:
            absolute = urljoin(resp.url, target)
            # A remote server must never make us read local files, whatever the policy says.
            if urlsplit(absolute).scheme.lower() not in ("http", "https"):
                resp.close()
                raise _permanent(resp.url, f"redirected to a non-HTTP URL {absolute}")
            try:
                self._policy.check(absolute)
            except FetchError as exc:
                resp.close()
                raise _permanent(resp.url, f"redirected to {absolute}, which is refused: "
                                           f"{exc.detail}") from None
        return target


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


_INCOMPLETE = re.compile(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)")
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


def _why(exc: Exception) -> str:
    """The useful end of a requests/urllib3 exception chain ("[Errno 111] Connection refused")
    rather than its whole nested repr."""
    text = str(exc)
    short = _INCOMPLETE.search(text)
    if short:
        return (f"the connection closed after {short.group(1)} bytes, "
                f"{short.group(2)} more were announced")
    found = _ERRNO.search(text)
    if found:
        return found.group(0).strip()
    return text if len(text) <= 300 else text[:300] + "..."


def _content_length(resp: requests.Response) -> int | None:
    value = resp.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None


def _is_file_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "file"


def _local_path(url: str) -> Path:
    return Path(url2pathname(unquote(urlsplit(url).path)))


class Fetcher:
    """Fetches under a UrlPolicy with HttpSettings. Safe to share between threads (each thread
    gets its own HTTP session).

    Transient failures (connection refused or reset, timeouts, HTTP 5xx and 429, a body shorter
    than announced) are retried inside each call, settings.retries more times, with exponential
    backoff and jitter; `on_retry(url, error)` is called before each retry with the URL without
    credentials and a FetchError describing the failure (its __cause__ is the original
    exception). Everything else fails at once with FetchError(permanent=True).
    """

    def __init__(
        self,
        settings: HttpSettings,
        policy: UrlPolicy,
        on_retry: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.on_retry = on_retry
        self._local = threading.local()

    # -- plumbing --------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = _PolicySession(self.policy)
            session.headers["User-Agent"] = self.settings.user_agent
            # The bytes we store must be the file's own bytes, not a transfer encoding of them.
            session.headers["Accept-Encoding"] = "identity"
            self._local.session = session
        return session

    def _retrying(self, url: str, attempt: Callable[[], T],
                  cancel: threading.Event | None = None) -> T:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("retrying %s (attempt %d failed): %s", redact(url),
                        state.attempt_number, exc)
            if self.on_retry is not None and exc is not None:
                try:
                    self.on_retry(redact(url), exc)
                except Exception:  # a metrics hook must not break a download
                    log.exception("on_retry hook failed")

        def sleep(seconds: float) -> None:
            if cancel is None:
                time.sleep(seconds)
            elif cancel.wait(seconds):
                raise FetchCancelled(url=url)

        retrying = Retrying(
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=_Backoff(self.settings.backoff_initial, self.settings.backoff_max),
            retry=retry_if_exception_type(_Transient),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Transient as exc:
            attempts = self.settings.retries + 1
            raise FetchError(
                f"{url}: gave up after {attempts} attempts; last error: {exc.detail}",
                url=url, permanent=False,
            ) from exc

    def _open(self, method: str, url: str, *, stream: bool,
              pass_statuses: frozenset[int] = frozenset()) -> requests.Response:
        """One request; raises _Transient or a permanent FetchError unless the answer is 2xx
        (or one of pass_statuses)."""
        timeout = self.settings.timeout
        try:
            resp = self._session().request(method, url, stream=stream, timeout=(timeout, timeout))
        except FetchError:
            raise
        except requests.Timeout as exc:
            raise _Transient(url, f"timed out after {timeout:g} s ({type(exc).__name__})") from exc
        except requests.exceptions.SSLError as exc:
            raise _permanent(url, f"TLS error: {_why(exc)}") from exc
        except requests.TooManyRedirects as exc:
            raise _permanent(url, f"more than {_MAX_REDIRECTS} redirects") from exc
        except requests.ConnectionError as exc:
            raise _Transient(url, f"connection failed: {_why(exc)}") from exc
        except requests.RequestException as exc:
            raise _permanent(url, f"cannot be requested: {_why(exc)}") from exc
        code = resp.status_code
        if 200 <= code < 300 or code in pass_statuses:
            return resp
        resp.close()
        reason = f"HTTP {code}{' ' + resp.reason if resp.reason else ''}"
        if code == 429 or code >= 500:
            raise _Transient(url, reason, _retry_after(resp))
        if code in (404, 410):
            raise _permanent(url, f"not found (HTTP {code})")
        if code in (401, 403):
            raise _permanent(url, f"access denied ({reason}); check the URL's permissions")
        raise _permanent(url, f"refused ({reason})")

    def _chunks(self, resp: requests.Response, url: str,
                cancel: threading.Event | None = None) -> Iterator[bytes]:
        received = 0
        try:
            for chunk in resp.iter_content(_CHUNK):
                if cancel is not None and cancel.is_set():
                    raise FetchCancelled(url=url)
                received += len(chunk)
                yield chunk
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError,
                requests.Timeout) as exc:
            raise _Transient(url, f"connection broken: {_why(exc)}") from exc
        except requests.exceptions.ContentDecodingError as exc:
            raise _permanent(url, f"the server sent a body that cannot be decoded: {exc}") from exc
        declared = _content_length(resp)
        if declared is not None and "Content-Encoding" not in resp.headers and received < declared:
            raise _Transient(url, f"incomplete body: received {received} of {declared} bytes")

    # -- public ----------------------------------------------------------------------------

    def head_size(self, url: str) -> int | None:
        """The size the server announces (Content-Length), or None when it announces none.
        Uses HEAD, or a GET whose body is not read when HEAD is not supported (405/501)."""
        self.policy.check(url)
        if _is_file_url(url):
            try:
                return _local_path(url).stat().st_size
            except OSError as exc:
                raise _permanent(url, f"cannot be read: {exc.strerror}") from exc

        def attempt() -> int | None:
            resp = self._open("HEAD", url, stream=False, pass_statuses=frozenset({405, 501}))
            if resp.status_code in (405, 501):
                resp.close()
                resp = self._open("GET", url, stream=True)
            with resp:
                return _content_length(resp)

        return self._retrying(url, attempt)

    def get_bytes(self, url: str, max_bytes: int | None = None, *, truncate: bool = False) -> bytes:
        """The whole body, at most max_bytes (default settings.max_manifest_bytes) long.

        A longer body is a permanent FetchError, or with truncate=True its first max_bytes
        bytes are returned (enough to tell a manifest from a file payload).
        """
        limit = self.settings.max_manifest_bytes if max_bytes is None else max_bytes
        self.policy.check(url)

        def too_large() -> FetchError:
            return _permanent(url, f"larger than the limit of {limit} bytes")

        if _is_file_url(url):
            try:
                with open(_local_path(url), "rb") as handle:
                    data = handle.read(limit + 1)
            except OSError as exc:
                raise _permanent(url, f"cannot be read: {exc.strerror}") from exc
            if len(data) > limit and not truncate:
                raise too_large()
            return data[:limit]

        def attempt() -> bytes:
            with self._open("GET", url, stream=True) as resp:
                declared = _content_length(resp)
                if declared is not None and declared > limit and not truncate:
                    raise too_large()
                body = bytearray()
                for chunk in self._chunks(resp, url):
                    body += chunk
                    if len(body) > limit:
                        if truncate:
                            return bytes(body[:limit])
                        raise too_large()
                return bytes(body)

        return self._retrying(url, attempt)

    def download(
        self,
        url: str,
        dest: Path,
        *,
        digest: dict | None = None,
        expected_size: int | None = None,
        cancel: threading.Event | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> Downloaded:
        """Fetch `url` into `dest` (its folder is created).

        Guarantees: `dest` appears only complete and verified (the body is written to
        dest + ".part" in the same folder, synced, then renamed); on any failure the .part file
        is removed and an existing `dest` is left as it was. `digest` ({"algorithm", "value"})
        and `expected_size` are checked; a mismatch is permanent. `on_bytes(n)` is called for
        every chunk written, including chunks of attempts that are later retried. When `cancel`
        is set the download stops between chunks (or during a backoff) with FetchCancelled.
        """
        dest = Path(dest)
        self.policy.check(url)
        expected = None
        if digest is not None:
            try:
                expected = normalize_digest(digest["algorithm"], digest["value"])
            except (KeyError, TypeError, ValueError) as exc:
                raise _permanent(url, f"unusable digest {digest!r}: {exc}") from exc
        algorithms = ["sha256"]
        if expected and expected["algorithm"] != "sha256":
            algorithms.append(expected["algorithm"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            if _is_file_url(url):
                size, digests = self._copy_local(url, part, algorithms, cancel, on_bytes)
            else:
                size, digests = self._retrying(
                    url,
                    lambda: self._download_once(url, part, algorithms, expected_size, cancel,
                                                on_bytes),
                    cancel,
                )
            if expected_size is not None and size != expected_size:
                raise _permanent(url, f"size expected {expected_size} bytes, found {size}")
            if expected:
                algo, value = expected["algorithm"], expected["value"]
                if digests[algo] != value:
                    raise _permanent(url, f"{algo} expected {value}, found {digests[algo]}")
            os.replace(part, dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return Downloaded(path=dest, size=size, digests=digests)

    def _write(self, chunks: Iterable[bytes], part: Path, algorithms: list[str],
               on_bytes: Callable[[int], None] | None) -> tuple[int, dict[str, str]]:
        hashes = {a: new_hash(a) for a in algorithms}
        size = 0
        with open(part, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                for h in hashes.values():
                    h.update(chunk)
                size += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        return size, {a: h.hexdigest() for a, h in hashes.items()}

    def _download_once(self, url: str, part: Path, algorithms: list[str],
                       expected_size: int | None, cancel: threading.Event | None,
                       on_bytes: Callable[[int], None] | None) -> tuple[int, dict[str, str]]:
        if cancel is not None and cancel.is_set():
            raise FetchCancelled(url=url)
        with self._open("GET", url, stream=True) as resp:
            declared = _content_length(resp)
            if (expected_size is not None and declared is not None
                    and "Content-Encoding" not in resp.headers and declared != expected_size):
                raise _permanent(url, f"size expected {expected_size} bytes, "
                                      f"the server announces {declared}")
            return self._write(self._chunks(resp, url, cancel), part, algorithms, on_bytes)

    def _copy_local(self, url: str, part: Path, algorithms: list[str],
                    cancel: threading.Event | None,
                    on_bytes: Callable[[int], None] | None) -> tuple[int, dict[str, str]]:
        def chunks(handle: Any) -> Iterator[bytes]:
            while chunk := handle.read(_CHUNK):
                if cancel is not None and cancel.is_set():
                    raise FetchCancelled(url=url)
                yield chunk

        try:
            handle = open(_local_path(url), "rb")
        except OSError as exc:
            raise _permanent(url, f"cannot be read: {exc.strerror}") from exc
        with handle:
            return self._write(chunks(handle), part, algorithms, on_bytes)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """fn over items on settings.threads threads; results in item order.

        Every item runs even when some fail; then the exception of the first failed item (in
        item order) is raised.
        """
        items = list(items)
        with ThreadPoolExecutor(max_workers=max(1, self.settings.threads),
                                thread_name_prefix="fetch") as pool:
            futures = [pool.submit(fn, item) for item in items]
        for future in futures:
            exc = future.exception()
            if exc is not None:
                raise exc
        return [future.result() for future in futures]
