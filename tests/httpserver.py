"""A real HTTP server on 127.0.0.1 for tests, serving files from a folder, with faults on demand.

    with LoopbackServer(folder) as server:
        server.fail_next("/a.jpg", status=503, times=2)   # then it serves the file
        requests.get(server.url + "/a.jpg")
        assert server.hits["/a.jpg"] == 1

API (keep it small; other tests use it):
- LoopbackServer(directory): serves GET and HEAD for files under `directory`; `.url` is
  "http://127.0.0.1:<port>" (no trailing slash); usable as a context manager, or start()/stop().
- hits[path]: requests seen per URL path (query string excluded), every method, faults included.
- fail_next(path, status=503, times=1, method=None, headers=None): answer the next `times`
  requests for `path` (only `method` ones, when given) with `status` and an empty body.
- drop_next(path, times=1): announce the full Content-Length, send half of the body, then
  close the connection.
- stall_next(path, seconds, times=1, method=None): wait `seconds` before answering.
- redirect(path, location, status=302): answer every request for `path` with a redirect.
- rewrite_urls(source_dir, dest_dir, base_url): copy a folder, pointing every URL in its .checkm
  files at base_url (for the Merritt samples, whose URLs name github).

For a test that speaks its own protocol (EZID, callbacks), not files:
- HandlerServer(handler, port=0): a threaded server on 127.0.0.1 for that handler class; `.url`
  as above; `with` serves it on a daemon thread, then shuts it down and closes it.
- QuietHandler: a BaseHTTPRequestHandler that logs nothing, to subclass.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class _Handler(SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def _fault(self) -> bool:
        path = urlsplit(self.path).path
        srv = self.server.owner
        with srv._lock:
            srv.hits[path] += 1
            faults = srv._faults[path]
            fault = next((f for f in faults if f["method"] in (None, self.command)), None)
            if fault is not None:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    faults.remove(fault)
            redirect = srv._redirects.get(path)
        if fault is not None and fault["kind"] == "stall":
            time.sleep(fault["seconds"])
            fault = None
        if redirect is not None:
            self.send_response(redirect[1])
            self.send_header("Location", redirect[0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        if fault is None:
            return False
        if fault["kind"] == "status":
            self.send_response(fault["status"])
            for key, value in (fault["headers"] or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        self._drop(path)
        return True

    def _drop(self, path: str) -> None:
        file = Path(self.translate_path(path))
        body = file.read_bytes() if file.is_file() else b"x" * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
        self.close_connection = True

    def do_GET(self) -> None:
        if not self._fault():
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._fault():
            super().do_HEAD()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackServer

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (timeout tests) is expected; anything else is still reported.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LoopbackServer:
    """See the module docstring."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._faults: defaultdict[str, list[dict]] = defaultdict(list)
        self._redirects: dict[str, tuple[str, int]] = {}
        self._httpd = _Server(("127.0.0.1", 0), partial(_Handler, directory=str(self.directory)))
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _add(self, path: str, fault: dict) -> None:
        with self._lock:
            self._faults[path].append(fault)

    def fail_next(self, path: str, status: int = 503, times: int = 1, method: str | None = None,
                  headers: dict[str, str] | None = None) -> None:
        self._add(path, {"kind": "status", "status": status, "times": times, "method": method,
                         "headers": headers})

    def drop_next(self, path: str, times: int = 1) -> None:
        self._add(path, {"kind": "drop", "times": times, "method": None})

    def stall_next(self, path: str, seconds: float, times: int = 1,
                   method: str | None = None) -> None:
        self._add(path, {"kind": "stall", "seconds": seconds, "times": times, "method": method})

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        with self._lock:
            self._redirects[path] = (location, status)


class QuietHandler(BaseHTTPRequestHandler):
    """A test's own request handler: subclass it and add do_GET/do_POST. Logs nothing."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


class HandlerServer(ThreadingHTTPServer):
    """See the module docstring."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> HandlerServer:
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()


def rewrite_urls(source_dir: Path, dest_dir: Path, base_url: str) -> Path:
    """Copy the files of source_dir into dest_dir (writable copies); in every .checkm file,
    replace the part of each row's URL before its file name with base_url. Returns dest_dir."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    base = base_url.rstrip("/") + "/"
    for source in source_dir.iterdir():
        if not source.is_file():
            continue
        target = dest_dir / source.name
        shutil.copyfile(source, target)
        if source.suffix == ".checkm":
            lines = target.read_text(encoding="utf-8").split("\n")
            for i, line in enumerate(lines):
                if line.strip() and not line.lstrip().startswith("#"):
                    url, sep, rest = line.partition("|")
                    lines[i] = base + url.strip().rsplit("/", 1)[-1] + " " + sep + rest
            target.write_text("\n".join(lines), encoding="utf-8")
    return dest_dir
