"""The HTTP API of ``zkqueue serve``: submission, batch progress (seed 001), jobs, health and the
queue's ``/metrics``. Decisions and examples: ``docs/api.md``; the OpenAPI description is served
at ``/openapi.json`` and kept in ``docs/openapi.json``.

Guarantees:

* Reading never writes to ZooKeeper; only ``POST /batches`` writes, through :meth:`Queue.submit`
  (one transaction, idempotent on ``uuid``).
* Every answer is JSON (``/metrics``: Prometheus text). Bad input gets a 4xx with
  ``{"error": ...}``; ids are checked against their pattern before any ZooKeeper path is built;
  ZooKeeper or inventory trouble is a 503; anything unforeseen is a JSON 500 without traceback.
* With a token configured, every request except ``/healthz`` and the API description needs
  ``Authorization: Bearer <token>``, checked in constant time before routing or body parsing.
  Without a token, :func:`serve` listens on a loopback address only. The token is never logged.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, FastAPI, Path, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from kazoo.exceptions import ConnectionClosedError, ConnectionLoss, SessionExpiredError
from kazoo.handlers.threading import KazooTimeoutError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__, states
from .config import Config, ConfigError
from .exporter import DEFAULT_SCAN_LIMIT, DEFAULT_TIMEOUT, QueueCollector
from .inventory import Inventory, InventoryError
from .queue import SUBMISSION_MODES, Queue, SubmissionError

log = logging.getLogger("zkqueue.api")

BID_PATTERN = r"^bid\d{10}$"
JID_PATTERN = r"^jid\d{10}$"
# A znode name: no '/', not '.' or '..', no control characters.
UUID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}$"
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
UNAVAILABLE = (ConnectionLoss, SessionExpiredError, ConnectionClosedError, KazooTimeoutError)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class APIError(Exception):
    """An answer other than success: status code, message, and extra JSON fields."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers, extra


# -- configuration ---------------------------------------------------------------------------

def resolve_token(cfg: Config, environ: dict[str, str] | None = None) -> str | None:
    """The API token from ``api.token`` or the variable named by ``api.token_env``; None when
    neither is set. Raises ConfigError for an unusable setting (never quoting the token)."""
    api = cfg.get("api") or {}
    token, env_name = api.get("token"), api.get("token_env")
    if token not in (None, "") and env_name:
        raise ConfigError(f"set only one of api.token and api.token_env in {cfg.source}")
    if env_name:
        environ = os.environ if environ is None else environ
        token = environ.get(str(env_name))
        if not token:
            raise ConfigError(f"api.token_env names ${env_name}, which is not set or empty")
    if token in (None, ""):
        return None
    if not isinstance(token, str):
        raise ConfigError(
            f"api.token in {cfg.source} (or $ZKQUEUE_API__TOKEN) must be a string, found a"
            f" {type(token).__name__}: quote it in YAML, or use api.token_env")
    return token


def is_loopback(host: str) -> bool:
    """True for a loopback address or name: what may be served without a token."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- request and response documents ------------------------------------------------------------

class SubmitRequest(BaseModel):
    """The fields of ``zkqueue submit``."""

    model_config = ConfigDict(extra="forbid")

    payload_url: str = Field(min_length=1, max_length=2048,
                             description="A checkm manifest or a single file (http/https).")
    profile: str = Field(min_length=1, max_length=200, description="A configured profile.")
    submitter: str = Field("", max_length=200, description="Who submits (shown in reports).")
    priority: int | None = Field(None, ge=0, le=99,
                                 description="00 (first) .. 99 (last); default from the profile.")
    uuid: str | None = Field(None, pattern=UUID_PATTERN,
                             description="Idempotency key: the same uuid gives the same batch.")
    callback_url: str | None = Field(None, max_length=2048,
                                     description="URL to POST each job's outcome to.")
    notify_email: str | None = Field(None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$",
                                     description="Where the batch summary is mailed.")
    submission_mode: str = Field("add", pattern="^(" + "|".join(SUBMISSION_MODES) + ")$",
                                 description="add: previous files + these; update: only these.")


class Submitted(BaseModel):
    batch_id: str
    created: bool = Field(description="False when the uuid was known: the existing batch.")


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    error: str
    fields: list[FieldError] | None = None


class JobSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    job_id: str
    status: str | None
    local_id: str | None = ""
    ark: str | None = ""
    message: str | None = ""


class BatchProgress(BaseModel):
    """The document of ``zkqueue status --json``; ``archived`` when read from the inventory."""

    model_config = ConfigDict(extra="allow")

    batch_id: str
    status: str
    counts: dict[str, int]
    jobs: list[JobSummary]
    archived: bool = False


class BatchListItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch_id: str
    status: str


class Health(BaseModel):
    status: str
    zookeeper: str


# -- the guard: authentication and body size, before routing -----------------------------------

class Guard:
    """ASGI middleware: bearer token (constant-time) and request body size."""

    def __init__(self, app: ASGIApp, token: str | None, max_body: int):
        self.app, self.max_body = app, max_body
        self.token = token.encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        if self.token is not None and scope["path"] not in PUBLIC_PATHS:
            if not self._authorized(headers.get(b"authorization", b"")):
                await self._reject(scope, receive, send, 401, "a valid bearer token is required",
                                   {"WWW-Authenticate": "Bearer"})
                return
        if b"content-length" not in headers and b"transfer-encoding" in headers:
            await self._reject(scope, receive, send, 411, "a Content-Length header is required")
            return
        length = headers.get(b"content-length", b"0").decode("latin-1")
        if not length.isdigit() or int(length) > self.max_body:
            await self._reject(scope, receive, send, 413,
                               f"the request body must be at most {self.max_body} bytes")
            return
        await self.app(scope, receive, send)

    def _authorized(self, header: bytes) -> bool:
        scheme, _, given = header.partition(b" ")
        ok = hmac.compare_digest(given.strip(), self.token or b"")
        return scheme.lower() == b"bearer" and ok

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, status: int, message: str,
                      headers: dict[str, str] | None = None) -> None:
        await JSONResponse({"error": message}, status, headers=headers)(scope, receive, send)


# -- error handlers ----------------------------------------------------------------------------

def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"field": ".".join(loc) or "request", "message": str(err.get("msg", ""))})
    return out


def _install_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse({"error": exc.message, **exc.extra}, exc.status, headers=exc.headers)

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_errors(exc)
        names = ", ".join(f["field"] for f in fields)
        return JSONResponse({"error": f"invalid request: {names}", "fields": fields}, 422)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        what = "the inventory" if isinstance(exc, InventoryError) else "ZooKeeper"
        return JSONResponse({"error": f"{what} is unavailable; try again later"}, 503,
                            headers={"Retry-After": "5"})

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error"}, 500)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for cls in (*UNAVAILABLE, InventoryError):
        app.add_exception_handler(cls, unavailable)
    app.add_exception_handler(Exception, internal)


# -- the application ---------------------------------------------------------------------------

class _Backend:
    """What the routes read: the queue, the inventory (opened on first need) and the metrics."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.queue: Queue | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self._inventory: Inventory | None = None
        self._lock = threading.Lock()

    def attach(self, queue: Queue) -> None:
        ex = self.cfg.get("exporter") or {}
        self.queue = queue
        self.registry.register(QueueCollector(
            queue.zk, queue.layout, timeout=float(ex.get("timeout", DEFAULT_TIMEOUT)),
            scan_limit=int(ex.get("pending_scan_limit", DEFAULT_SCAN_LIMIT))))

    def q(self) -> Queue:
        """The queue, or a 503 at once rather than a request blocked until ZooKeeper is back."""
        if self.queue is None or not self.queue.zk.connected:
            raise APIError(503, "not connected to ZooKeeper; try again later",
                           headers={"Retry-After": "5"})
        return self.queue

    def inventory(self) -> Inventory:
        with self._lock:
            if self._inventory is None:
                self._inventory = Inventory.from_config(self.cfg)
            return self._inventory

    def close(self) -> None:
        with self._lock:
            if self._inventory is not None:
                self._inventory.close()
                self._inventory = None


BidPath = Annotated[str, Path(pattern=BID_PATTERN, description="bid + 10 digits")]
JidPath = Annotated[str, Path(pattern=JID_PATTERN, description="jid + 10 digits")]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    422: {"model": ErrorBody, "description": "Invalid request (fields named)"},
    503: {"model": ErrorBody, "description": "ZooKeeper or the inventory is unavailable"},
}


def _routes(backend: _Backend) -> tuple[APIRouter, APIRouter]:
    # The scheme is declared here for the API description; Guard does the checking.
    guarded = APIRouter(dependencies=[Security(HTTPBearer(auto_error=False))], responses=ERRORS)
    public = APIRouter()

    @guarded.post("/batches", status_code=201, response_model=Submitted, tags=["batches"],
                  responses={200: {"model": Submitted, "description": "The uuid was known"}})
    def submit_batch(body: SubmitRequest, response: Response) -> Submitted:
        """Queue a batch; the same ``uuid`` always answers with the same batch (200)."""
        q = backend.q()
        known = q.batch_for_uuid(body.uuid) if body.uuid else None
        if known:
            bid = known
            response.status_code = 200
        else:
            try:
                bid = q.submit(body.payload_url, body.profile, body.submitter,
                               priority=body.priority, uuid=body.uuid,
                               callback_url=body.callback_url, notify_email=body.notify_email,
                               submission_mode=body.submission_mode)
            except SubmissionError as e:
                raise APIError(422, str(e)) from e
        response.headers["Location"] = f"/batches/{bid}"
        return Submitted(batch_id=bid, created=not known)

    @guarded.get("/batches", response_model=list[BatchListItem], tags=["batches"],
                 responses={400: {"model": ErrorBody, "description": "Unknown status"}})
    def list_batches(
        status: Annotated[str | None, Query(
            max_length=40, description="One of: " + ", ".join(states.BATCH_STATUSES))] = None,
        limit: Annotated[int, Query(ge=1, le=10_000,
                                    description="At most this many, oldest first")] = 1000,
    ) -> list[dict]:
        """Batches, optionally only those in one status, oldest first, at most ``limit``."""
        if status is not None and status not in states.BATCH_STATUSES:
            raise APIError(400, f"unknown batch status {status!r}",
                           known=list(states.BATCH_STATUSES))
        return backend.q().list_batches(status, limit=limit)

    @guarded.get("/batches/{bid}", response_model=BatchProgress, tags=["batches"],
                 responses={404: {"model": ErrorBody, "description": "No such batch"}})
    def batch_progress(bid: BidPath) -> dict:
        """Progress: status, counts per job status, every job with its message. A batch already
        cleaned out of ZooKeeper answers from the inventory, marked ``archived``."""
        doc = backend.q().batch_status(bid)
        if doc is not None:
            return {**doc, "archived": False}
        summary = backend.inventory().batch_summary(bid)
        if summary is None:
            raise APIError(404, f"no batch {bid}")
        return {**summary, "archived": True}

    @guarded.get("/jobs/{jid}", response_model=JobSummary, tags=["jobs"],
                 responses={404: {"model": ErrorBody, "description": "No such job"}})
    def job(jid: JidPath) -> dict:
        """One job: status, message, ARK, configuration, lock owner."""
        doc = backend.q().job(jid)
        if doc is None:
            raise APIError(404, f"no job {jid}")
        return doc

    @guarded.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    def metrics() -> Response:
        """The queue-wide gauges read from ZooKeeper, and this process's metrics."""
        return Response(generate_latest(backend.registry), media_type=CONTENT_TYPE_LATEST)

    @public.get("/healthz", response_model=Health, tags=["operations"],
                responses={503: {"model": Health, "description": "Not connected to ZooKeeper"}})
    def healthz() -> JSONResponse:
        """Liveness and the ZooKeeper connection state; needs no token."""
        zk = backend.queue.zk if backend.queue else None
        state = str(zk.state) if zk else "NOT_STARTED"
        ok = bool(zk and zk.connected)
        return JSONResponse({"status": "ok" if ok else "unavailable", "zookeeper": state},
                            200 if ok else 503)

    return guarded, public


def create_app(cfg: Config, queue: Queue | None = None) -> FastAPI:
    """The API application. Given ``queue`` is used as is (and left open); without one, the
    app connects at startup and closes at shutdown. Raises ConfigError for a bad api setting."""
    token = resolve_token(cfg)
    backend = _Backend(cfg)
    if queue is not None:
        backend.attach(queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        own = backend.queue is None
        if own:
            backend.attach(Queue.connect(cfg))
        try:
            yield
        finally:
            backend.close()
            if own and backend.queue is not None:
                backend.queue.close()

    app = FastAPI(title="zkqueue", version=__version__, lifespan=lifespan,
                  description="Submission and progress API of the zkqueue ingest queue.")
    guarded, public = _routes(backend)
    app.include_router(guarded)
    app.include_router(public)
    _install_handlers(app)
    max_body = int((cfg.get("api") or {}).get("max_body_bytes") or 65536)
    app.add_middleware(Guard, token=token, max_body=max_body)
    app.state.backend = backend
    return app


def openapi_document() -> dict:
    """The OpenAPI description, independent of configuration (as in docs/openapi.json)."""
    return create_app(Config()).openapi()


class _Server(uvicorn.Server):
    """uvicorn's server, except that SIGTERM/SIGINT end it with exit code 0 (the CLI's "done")
    after the graceful shutdown, instead of re-raising the signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(cfg: Config, host: str = "127.0.0.1", port: int = 8080) -> int:
    """Run the API with uvicorn until SIGTERM/SIGINT; returns an exit code (1: refused to
    start)."""
    def fail(message: str) -> int:
        print(f"Error: {message}", file=sys.stderr)
        return 1

    try:
        token = resolve_token(cfg)
    except ConfigError as e:
        return fail(str(e))
    if token is None and not is_loopback(host):
        return fail(f"refusing to listen on {host}: no API token is configured. Set api.token"
                    " (or $ZKQUEUE_API__TOKEN) or api.token_env, or listen on 127.0.0.1")
    try:
        queue = Queue.connect(cfg)
    except KazooTimeoutError:
        return fail(f"cannot reach ZooKeeper at {cfg.zk_hosts}")
    try:
        app = create_app(cfg, queue)
        log.info("API listening on %s:%d (%s)", host, port,
                 "bearer token required" if token else "no token: loopback only")
        server = _Server(uvicorn.Config(app, host=host, port=port, log_config=None,
                                        server_header=False))
        server.run()
    finally:
        queue.close()
    return 0


if __name__ == "__main__":
    json.dump(openapi_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
