"""The inventory: the database of record for every stored object version, its files and digests,
local-id bindings, and the outcome of every job and batch.

One schema and one set of statements for SQLite (``sqlite:///PATH``, the embedded default) and
PostgreSQL (``postgresql://user[:password]@host[:port]/db`` or ``postgres://...``, through
psycopg 3): the SQL is plain (``ON CONFLICT`` upserts, ``LIMIT``, no engine-only types) and
written with ``?`` placeholders that a dialect object translates to its driver's paramstyle. The
dialects differ only in how they connect, begin transactions and lock.

Guarantees:

- :meth:`Inventory.record_version` writes an object version and all its files in one transaction,
  or nothing; recording the same (ark, version, job) again is a no-op, and a version recorded by a
  different job, a gap in the version sequence or a local id bound to another ARK is refused.
- A local id, once bound to an ARK in a profile, stays bound to it.
- Safe to share between threads (a small pool of connections, one per transaction in flight) and
  between processes and hosts: writers of one ARK take turns, so each checks what the one before
  it committed (SQLite: write transactions take the database's write lock up front; PostgreSQL:
  they create the ARK's ``objects`` row if missing, ``ON CONFLICT DO NOTHING``, and lock it
  ``FOR UPDATE``). Should a unique key still be violated, the loser re-runs its checks once and
  gets the answer it would have got coming second.
- Lock waits are bounded (30 s), after which the operation fails with a transient error.
- A password never appears in an error message: URLs are shown as ``user:***@host``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config

BUSY_TIMEOUT_SECONDS = 30
SCHEMA_VERSION = 1
IDLE_CONNECTIONS = 8
RETRIES = 3
# pg_advisory_xact_lock key serialising schema creation (two processes opening a new database).
SCHEMA_LOCK_KEY = 0x7A6B71756575

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS schema_info (
        version INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS objects (
        ark TEXT PRIMARY KEY,
        profile TEXT NOT NULL,
        local_id TEXT NOT NULL,
        created TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS local_ids (
        profile TEXT NOT NULL,
        local_id TEXT NOT NULL,
        ark TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (profile, local_id)
    )""",
    """CREATE TABLE IF NOT EXISTS versions (
        ark TEXT NOT NULL REFERENCES objects (ark),
        version INTEGER NOT NULL,
        profile TEXT NOT NULL,
        local_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        submission_mode TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (ark, version)
    )""",
    """CREATE TABLE IF NOT EXISTS version_files (
        ark TEXT NOT NULL,
        version INTEGER NOT NULL,
        path TEXT NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        md5 TEXT,
        storage_key TEXT NOT NULL,
        PRIMARY KEY (ark, version, path),
        FOREIGN KEY (ark, version) REFERENCES versions (ark, version)
    )""",
    """CREATE TABLE IF NOT EXISTS batch_summaries (
        batch_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        summary TEXT NOT NULL,
        updated TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS job_outcomes (
        job_id TEXT PRIMARY KEY,
        batch_id TEXT NOT NULL,
        status TEXT NOT NULL,
        local_id TEXT NOT NULL,
        ark TEXT NOT NULL,
        message TEXT NOT NULL,
        updated TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS job_outcomes_batch ON job_outcomes (batch_id)",
    "CREATE INDEX IF NOT EXISTS versions_job ON versions (job_id)",
]


class InventoryError(Exception):
    """The inventory refused or failed an operation; ``permanent`` says whether a retry can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class FileRecord:
    path: str
    size: int
    sha256: str
    storage_key: str
    md5: str | None = None


@dataclass
class VersionRecord:
    ark: str
    version: int
    profile: str
    local_id: str
    job_id: str
    batch_id: str
    submission_mode: str
    created: str
    files: list[FileRecord] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _SQLite:
    """The SQLite dialect: how to connect, how to start transactions, which errors mean what."""

    paramstyle = "qmark"
    error: Any = sqlite3.Error
    integrity_error: Any = sqlite3.IntegrityError
    retryable: Any = ()
    # BEGIN IMMEDIATE already serialises writers.
    for_update = ""

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun explicitly (see begin_write).
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA foreign_keys = ON")
        # The database of record: NORMAL (WAL's usual setting) may lose the last commits on
        # power loss, after the queue has already moved the job on.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def prepare(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise InventoryError(f"cannot put {self.path} in WAL mode (got {mode})")

    def lock_schema(self, cur: _Cursor) -> None:
        pass

    def begin_write(self, conn: sqlite3.Connection) -> None:
        # IMMEDIATE takes the write lock now; a deferred transaction that reads and then writes
        # can fail with "database is locked" without waiting for the busy timeout.
        conn.execute("BEGIN IMMEDIATE")

    def begin_read(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")

    def usable(self, conn: sqlite3.Connection) -> bool:
        return True

    def redact(self, text: str) -> str:
        return text


class _Postgres:
    """The PostgreSQL dialect (psycopg 3); ``url`` is handed to libpq as it is, ``password``
    (when given) overrides the URL's."""

    paramstyle = "format"
    for_update = " FOR UPDATE"

    def __init__(self, url: str, password: str | None) -> None:
        import psycopg
        from psycopg import errors

        self._psycopg = psycopg
        self.error = psycopg.Error
        self.integrity_error = psycopg.IntegrityError
        self.retryable = (errors.DeadlockDetected, errors.SerializationFailure)
        self.url = url
        self._secrets = [p for p in (password, *_url_passwords(url)) if p]
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise InventoryError(
                f"inventory URL {redact_url(url)} is not valid: {self.redact(str(exc))}",
                permanent=True,
            ) from exc
        if params.get("password"):
            self._secrets.append(str(params["password"]))
        if not params.get("dbname"):
            raise InventoryError(
                f"inventory URL {redact_url(url)} names no database: use "
                "postgresql://user[:password]@host[:port]/DATABASE",
                permanent=True,
            )
        self._extra: dict[str, Any] = {"autocommit": True}
        if password is not None:
            self._extra["password"] = password
        if "application_name" not in params:
            self._extra["application_name"] = "zkqueue"
        if "connect_timeout" not in params:
            self._extra["connect_timeout"] = BUSY_TIMEOUT_SECONDS

    def connect(self) -> Any:
        # autocommit: transactions are begun explicitly, as with SQLite.
        conn = self._psycopg.connect(self.url, **self._extra)
        try:
            conn.execute(f"SET lock_timeout = '{BUSY_TIMEOUT_SECONDS}s'")
            # A client that stalls inside a transaction must not hold an ARK's lock for ever.
            conn.execute("SET idle_in_transaction_session_timeout = '5min'")
        except BaseException:
            conn.close()
            raise
        return conn

    def prepare(self, conn: Any) -> None:
        pass

    def lock_schema(self, cur: _Cursor) -> None:
        # CREATE TABLE IF NOT EXISTS is not safe against itself in PostgreSQL: two processes
        # creating the schema at once can both pass the check and one then fails.
        cur.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_KEY,))

    def begin_write(self, conn: Any) -> None:
        conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")

    def begin_read(self, conn: Any) -> None:
        # One snapshot for the several SELECTs of a read, as SQLite's read transaction gives.
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def usable(self, conn: Any) -> bool:
        return not (conn.closed or conn.broken)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _url_passwords(url: str) -> list[str]:
    """The password part of url's user info, as written and decoded (a best guess, for redaction
    of a URL libpq could not parse)."""
    from urllib.parse import unquote

    userinfo = url.split("://", 1)[-1].rpartition("@")[0]
    if ":" not in userinfo:
        return []
    raw = userinfo.split(":", 1)[1]
    return [raw, unquote(raw)]


def redact_url(url: str) -> str:
    """url with the password of its user part (if any) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hosts = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hosts}"


class Inventory:
    """The inventory database; open it with :meth:`open` or :meth:`from_config`."""

    def __init__(self, dialect: _SQLite | _Postgres, where: str) -> None:
        self._dialect: Any = dialect
        self._where = where
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            conn, _ = self._checkout()
            try:
                dialect.prepare(conn)
            finally:
                self._checkin(conn)
            with self._write() as cur:
                dialect.lock_schema(cur)
                for statement in SCHEMA:
                    cur.execute(statement)
                cur.execute("SELECT version FROM schema_info")
                if cur.fetchone() is None:
                    cur.execute("INSERT INTO schema_info (version) VALUES (?)", (SCHEMA_VERSION,))
        except dialect.error as exc:
            self.close()
            raise InventoryError(
                f"cannot open inventory {where}: {dialect.redact(str(exc))}"
            ) from exc
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls,
        url: str,
        base_dir: Path | None = None,
        *,
        password: str | None = None,
        password_env: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Inventory:
        """Open (and create if needed) the inventory at ``url``.

        ``sqlite:///relative/path.db`` is relative to ``base_dir`` (default: the current
        directory), ``sqlite:////absolute/path.db`` is absolute; the folder is created.

        ``postgresql://user[:password]@host[:port]/db`` (or ``postgres://``; any libpq URI, query
        parameters such as ``sslmode`` included): the database must exist, the tables are created
        if missing. The password is taken from the environment variable ``password_env`` names
        (looked up in ``environ``, default ``os.environ``), else ``password``, else the URL;
        libpq's own ``PGPASSWORD`` and ``~/.pgpass`` work too. Both are ignored for SQLite.
        """
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme in ("postgresql", "postgres") and url[len(scheme) :].startswith("://"):
            if password_env:
                env = os.environ if environ is None else environ
                password = env.get(password_env)
                if password is None:
                    raise InventoryError(
                        f"inventory.password_env names {password_env}, which is not set",
                        permanent=True,
                    )
            return cls(_Postgres(url, password), redact_url(url))
        if not url.startswith("sqlite:///"):
            raise InventoryError(
                f"unsupported inventory URL scheme {scheme or redact_url(url)!r}: use "
                "sqlite:///PATH or postgresql://user[:password]@host[:port]/DATABASE",
                permanent=True,
            )
        raw = url[len("sqlite:///") :]
        if not raw or raw == ":memory:" or "?" in raw:
            raise InventoryError(f"inventory URL {url!r} names no database file", permanent=True)
        path = Path(raw)
        if not path.is_absolute():
            path = Path(base_dir if base_dir is not None else Path.cwd()) / path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InventoryError(f"cannot create {path.parent}: {exc.strerror}") from exc
        return cls(_SQLite(path), str(path))

    @classmethod
    def from_config(cls, cfg: Config) -> Inventory:
        """The inventory of a configuration's ``inventory: {url, password?, password_env?}``,
        relative paths against the configuration's folder."""
        section = cfg["inventory"]
        return cls.open(
            section["url"],
            base_dir=cfg.base_dir,
            password=section.get("password"),
            password_env=section.get("password_env"),
        )

    # connections and transactions -------------------------------------------------------------

    def _checkout(self) -> tuple[Any, bool]:
        """A connection for one transaction, and whether it was reused from the pool."""
        with self._lock:
            if self._closed:
                raise InventoryError("the inventory is closed", permanent=True)
            if self._idle:
                return self._idle.pop(), True
        try:
            return self._dialect.connect(), False
        except self._dialect.error as exc:
            raise InventoryError(
                f"cannot connect to inventory {self._where}: {self._dialect.redact(str(exc))}"
            ) from exc

    def _checkin(self, conn: Any) -> None:
        with self._lock:
            keep = not self._closed and len(self._idle) < IDLE_CONNECTIONS
            if keep and self._dialect.usable(conn):
                self._idle.append(conn)
                return
        self._close_quietly(conn)

    def _close_quietly(self, conn: Any) -> None:
        try:
            conn.close()
        except self._dialect.error:
            pass

    def _begin(self, write: bool) -> Any:
        begin = self._dialect.begin_write if write else self._dialect.begin_read
        while True:
            conn, reused = self._checkout()
            try:
                begin(conn)
                return conn
            except self._dialect.error as exc:
                self._close_quietly(conn)
                # A pooled connection the server has since dropped: nothing was sent that
                # counted, so a new connection can try again.
                if not (reused and not self._dialect.usable(conn)):
                    raise InventoryError(
                        f"inventory {self._where} is unavailable: "
                        f"{self._dialect.redact(str(exc))}"
                    ) from exc

    def _sql(self, text: str) -> str:
        return text if self._dialect.paramstyle == "qmark" else text.replace("?", "%s")

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[_Cursor]:
        conn = self._begin(write)
        cur = _Cursor(conn.cursor(), self._sql)
        committed = False
        try:
            yield cur
            conn.commit()
            committed = True
        finally:
            try:
                cur.close()
                if not committed:
                    conn.rollback()
            except self._dialect.error:
                self._close_quietly(conn)
            self._checkin(conn)

    def _write(self) -> Any:
        return self._transaction(write=True)

    def _read(self) -> Any:
        return self._transaction(write=False)

    def _run(self, doing: str, fn: Any, *args: Any) -> Any:
        """Call fn (one whole transaction), turning driver errors into InventoryError; a deadlock
        or serialization failure is retried a few times."""
        for attempt in range(RETRIES):
            try:
                return fn(*args)
            except self._dialect.error as exc:
                if isinstance(exc, self._dialect.retryable) and attempt < RETRIES - 1:
                    continue
                # A constraint violation will not go away by trying again; a locked database may.
                raise InventoryError(
                    f"{doing} failed in inventory {self._where}: {self._dialect.redact(str(exc))}",
                    permanent=isinstance(exc, self._dialect.integrity_error),
                ) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the idle connections now and those in use when their transaction ends; later
        calls raise InventoryError."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._close_quietly(conn)

    # local ids ----------------------------------------------------------------------------------

    def ark_for_local_id(self, profile: str, local_id: str) -> str | None:
        def read() -> str | None:
            with self._read() as cur:
                cur.execute(
                    "SELECT ark FROM local_ids WHERE profile = ? AND local_id = ?",
                    (profile, local_id),
                )
                row = cur.fetchone()
            return row[0] if row else None

        return self._run("looking up a local id", read)

    def bind_local_id(self, profile: str, local_id: str, ark: str) -> str:
        """Bind local_id to ark unless it is already bound; returns the ARK it is bound to now."""
        if not local_id or not ark:
            raise InventoryError("bind_local_id needs a local id and an ARK", permanent=True)

        def bind() -> str:
            with self._write() as cur:
                cur.execute(
                    "INSERT INTO local_ids (profile, local_id, ark, created) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (profile, local_id) DO NOTHING",
                    (profile, local_id, ark, _now()),
                )
                cur.execute(
                    "SELECT ark FROM local_ids WHERE profile = ? AND local_id = ?",
                    (profile, local_id),
                )
                return cur.fetchone()[0]

        return self._run("binding a local id", bind)

    # versions -----------------------------------------------------------------------------------

    def record_version(self, rec: VersionRecord) -> bool:
        """Record an object version with all its files in one transaction.

        Returns True when written, False when this job had already recorded this version (nothing
        is written). Raises InventoryError (permanent) when another job recorded this version,
        the version does not follow the latest recorded one, the ARK belongs to another profile,
        the local id is bound to another ARK, or two files share a path.
        """
        paths = [f.path for f in rec.files]
        duplicates = sorted({p for p in paths if paths.count(p) > 1})
        if duplicates:
            raise InventoryError(
                f"{rec.ark} version {rec.version}: duplicate file paths {duplicates}",
                permanent=True,
            )
        try:
            return self._run("recording a version", self._record, rec)
        except InventoryError as exc:
            if not isinstance(exc.__cause__, self._dialect.integrity_error):
                raise
        # A concurrent writer won a race the locks could not see: the re-run classifies the row
        # it wrote (or fails with the same constraint, if the record itself is at fault).
        return self._run("recording a version", self._record, rec)

    def _record(self, rec: VersionRecord) -> bool:
        with self._write() as cur:
            # Every writer of an ARK's versions first holds its objects row, so writers of one
            # ARK take turns and each sees what the one before it committed.
            cur.execute(
                "INSERT INTO objects (ark, profile, local_id, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (ark) DO NOTHING",
                (rec.ark, rec.profile, rec.local_id, rec.created),
            )
            cur.execute(
                f"SELECT profile FROM objects WHERE ark = ?{self._dialect.for_update}", (rec.ark,)
            )
            owner = cur.fetchone()[0]
            cur.execute(
                "SELECT job_id FROM versions WHERE ark = ? AND version = ?", (rec.ark, rec.version)
            )
            row = cur.fetchone()
            if row is not None:
                if row[0] == rec.job_id:
                    return False
                raise InventoryError(
                    f"{rec.ark} version {rec.version} was already recorded by job {row[0]}; "
                    f"job {rec.job_id} cannot record it again",
                    permanent=True,
                )
            if owner != rec.profile:
                raise InventoryError(
                    f"{rec.ark} belongs to profile {owner!r}, not {rec.profile!r} "
                    f"(job {rec.job_id})",
                    permanent=True,
                )
            cur.execute("SELECT MAX(version) FROM versions WHERE ark = ?", (rec.ark,))
            latest = cur.fetchone()[0] or 0
            if rec.version != latest + 1:
                raise InventoryError(
                    f"job {rec.job_id} cannot record {rec.ark} version {rec.version}: the latest "
                    f"recorded version is {latest}",
                    permanent=True,
                )
            if rec.local_id:
                self._bind_in(cur, rec)
            cur.execute(
                "INSERT INTO versions (ark, version, profile, local_id, job_id, batch_id, "
                "submission_mode, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.ark,
                    rec.version,
                    rec.profile,
                    rec.local_id,
                    rec.job_id,
                    rec.batch_id,
                    rec.submission_mode,
                    rec.created,
                ),
            )
            cur.executemany(
                "INSERT INTO version_files (ark, version, path, size, sha256, md5, storage_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (rec.ark, rec.version, f.path, f.size, f.sha256, f.md5, f.storage_key)
                    for f in rec.files
                ],
            )
            return True

    def _bind_in(self, cur: _Cursor, rec: VersionRecord) -> None:
        cur.execute(
            "INSERT INTO local_ids (profile, local_id, ark, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (profile, local_id) DO NOTHING",
            (rec.profile, rec.local_id, rec.ark, rec.created),
        )
        cur.execute(
            "SELECT ark FROM local_ids WHERE profile = ? AND local_id = ?",
            (rec.profile, rec.local_id),
        )
        bound = cur.fetchone()[0]
        if bound != rec.ark:
            raise InventoryError(
                f"local id {rec.local_id!r} of profile {rec.profile!r} is bound to {bound}, "
                f"not {rec.ark} (job {rec.job_id})",
                permanent=True,
            )

    def latest_version(self, ark: str) -> VersionRecord | None:
        found = self._versions(ark, latest_only=True)
        return found[0] if found else None

    def versions(self, ark: str) -> list[VersionRecord]:
        """Every recorded version of ark, oldest first, each with its files sorted by path."""
        return self._versions(ark, latest_only=False)

    def _versions(self, ark: str, latest_only: bool) -> list[VersionRecord]:
        columns = "ark, version, profile, local_id, job_id, batch_id, submission_mode, created"

        def read() -> list[VersionRecord]:
            with self._read() as cur:
                if latest_only:
                    cur.execute(
                        f"SELECT {columns} FROM versions WHERE ark = ? "
                        "ORDER BY version DESC LIMIT 1",
                        (ark,),
                    )
                else:
                    cur.execute(
                        f"SELECT {columns} FROM versions WHERE ark = ? ORDER BY version", (ark,)
                    )
                records = {row[1]: VersionRecord(*row, files=[]) for row in cur.fetchall()}
                if not records:
                    return []
                lowest = min(records)
                cur.execute(
                    "SELECT version, path, size, sha256, storage_key, md5 FROM version_files "
                    "WHERE ark = ? AND version >= ? ORDER BY version, path",
                    (ark, lowest),
                )
                for version, path, size, sha256, key, md5 in cur.fetchall():
                    if version in records:
                        records[version].files.append(FileRecord(path, size, sha256, key, md5))
            return list(records.values())

        return self._run("reading versions", read)

    # batches and jobs ---------------------------------------------------------------------------

    def save_batch_summary(self, batch_id: str, status: str, summary: dict) -> None:
        """Insert or replace the summary of a batch (kept after the batch leaves ZooKeeper)."""
        try:
            text = json.dumps(summary, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InventoryError(
                f"summary of {batch_id} is not JSON: {exc}", permanent=True
            ) from exc

        def save() -> None:
            with self._write() as cur:
                cur.execute(
                    "INSERT INTO batch_summaries (batch_id, status, summary, updated) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (batch_id) DO UPDATE SET "
                    "status = excluded.status, summary = excluded.summary, "
                    "updated = excluded.updated",
                    (batch_id, status, text, _now()),
                )

        self._run("saving a batch summary", save)

    def batch_summary(self, batch_id: str) -> dict | None:
        """The summary as saved, or None."""
        row = self._one("SELECT summary FROM batch_summaries WHERE batch_id = ?", (batch_id,))
        return json.loads(row[0]) if row else None

    def batch_status(self, batch_id: str) -> str | None:
        """The status saved with the batch's summary, or None."""
        row = self._one("SELECT status FROM batch_summaries WHERE batch_id = ?", (batch_id,))
        return row[0] if row else None

    def save_job_outcome(
        self, job_id: str, batch_id: str, status: str, local_id: str, ark: str, message: str
    ) -> None:
        """Insert or replace the outcome of a job."""

        def save() -> None:
            with self._write() as cur:
                cur.execute(
                    "INSERT INTO job_outcomes (job_id, batch_id, status, local_id, ark, message, "
                    "updated) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET "
                    "batch_id = excluded.batch_id, status = excluded.status, "
                    "local_id = excluded.local_id, ark = excluded.ark, "
                    "message = excluded.message, updated = excluded.updated",
                    (job_id, batch_id, status, local_id or "", ark or "", message or "", _now()),
                )

        self._run("saving a job outcome", save)

    def job_outcomes(self, batch_id: str) -> list[dict]:
        """Outcomes of a batch's jobs, ordered by job id."""
        columns = ("job_id", "batch_id", "status", "local_id", "ark", "message", "updated")

        def read() -> list[dict]:
            with self._read() as cur:
                cur.execute(
                    f"SELECT {', '.join(columns)} FROM job_outcomes WHERE batch_id = ? "
                    "ORDER BY job_id",
                    (batch_id,),
                )
                return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]

        return self._run("reading job outcomes", read)

    def _one(self, sql: str, params: Sequence[Any]) -> Any:
        def read() -> Any:
            with self._read() as cur:
                cur.execute(sql, params)
                return cur.fetchone()

        return self._run("reading", read)


class _Cursor:
    """A DB-API cursor that takes ``?`` placeholders whatever the driver's paramstyle."""

    def __init__(self, cursor: Any, translate: Any) -> None:
        self._cursor = cursor
        self._translate = translate

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._translate(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self._translate(sql), rows)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def close(self) -> None:
        self._cursor.close()
