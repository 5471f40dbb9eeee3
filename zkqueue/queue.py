"""The public API for submission tools and status readers.

    >>> q = Queue.connect(config)               # or Queue(KazooClient(...), Layout("/zkqueue"))
    >>> bid = q.submit("https://host/deposit.checkm", profile="demo", submitter="me")
    >>> q.batch_status(bid)["status"]

Guarantees: a submission is one transaction (the batch appears whole or not at all); the same
``uuid`` always gives the same batch id; a submission to an unconfigured profile or with a refused
URL is rejected before anything is written. Readers never write to ZooKeeper.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from . import states, txn
from .config import Config, ConfigError
from .layout import Layout, clamp_priority, decode, encode, parse_entry, priority_text
from .transitions import now_iso, status_record

SUBMISSION_MODES = ("add", "update")


class SubmissionError(ValueError):
    """The submission was refused; nothing was queued."""


def status_counts(jobs: list[dict]) -> dict[str, int]:
    """Jobs per status, in order of first appearance (the ``counts`` of a status document)."""
    return dict(Counter(j["status"] for j in jobs))


def layout_dirs(layout: Layout) -> list[str]:
    dirs = [
        layout.batches,
        layout.jobs,
        layout.collection_holds,
        layout.p("locks", "queue"),
        layout.p("locks", "localid"),
        layout.p("counters"),
        layout.workers,
        layout.p("batch-uuids"),
    ]
    dirs += [layout.job_state_dir(s) for s in states.JOB_STATUSES]
    dirs += [layout.batch_state_dir(s) for s in states.BATCH_STATUSES]
    return dirs


def ensure_layout(zk: KazooClient, layout: Layout) -> None:
    """Create the fixed dirs (idempotent). Called by writers, never by read-only commands."""
    txn.ensure_paths(zk, layout_dirs(layout))


def connect(cfg: Config, read_only: bool = False) -> KazooClient:
    zk = KazooClient(
        hosts=cfg.zk_hosts, timeout=float(cfg["zookeeper"]["session_timeout"]), read_only=read_only
    )
    zk.start(timeout=float(cfg["zookeeper"].get("connect_timeout", 15)))
    return zk


class Queue:
    def __init__(self, zk: KazooClient, layout: Layout, cfg: Config | None = None):
        self.zk, self.layout, self.cfg = zk, layout, cfg or Config()
        self._ready = False

    @classmethod
    def connect(cls, cfg: Config) -> Queue:
        return cls(connect(cfg), Layout(cfg.zk_root), cfg)

    def close(self) -> None:
        self.zk.stop()
        self.zk.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ensure(self) -> None:
        if not self._ready:
            ensure_layout(self.zk, self.layout)
            self._ready = True

    # -- submission ------------------------------------------------------------------------
    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        pay = self.cfg["payloads"]
        schemes = ("http", "https", "file") if pay.get("allow_file_urls") else ("http", "https")
        if parts.scheme not in schemes:
            raise SubmissionError(
                f"payload URL scheme {parts.scheme or '(none)'!r} is not allowed"
                f" (allowed: {', '.join(schemes)})"
            )
        hosts = pay.get("allowed_hosts") or []
        if parts.scheme != "file" and hosts and parts.hostname not in hosts:
            raise SubmissionError(
                f"payload host {parts.hostname!r} is not allowed (allowed: {', '.join(hosts)})"
            )

    def submit(
        self,
        payload_url: str,
        profile: str,
        submitter: str = "",
        *,
        priority: int | None = None,
        uuid: str | None = None,
        callback_url: str | None = None,
        notify_email: str | None = None,
        submission_mode: str = "add",
        manifest_type: str | None = None,
    ) -> str:
        """Queue a batch; returns its id (the existing one when ``uuid`` was seen before)."""
        try:
            prof = self.cfg.profile(profile)
        except ConfigError as e:
            raise SubmissionError(str(e)) from e
        self.check_url(payload_url)
        if callback_url:
            cb = urlsplit(callback_url)
            if cb.scheme not in ("http", "https") or not cb.hostname:
                raise SubmissionError(f"callback URL {callback_url!r} must be http(s)://host/...")
        if submission_mode not in SUBMISSION_MODES:
            raise SubmissionError(
                f"submission mode {submission_mode!r} is not one of {', '.join(SUBMISSION_MODES)}"
            )
        uuid = uuid or str(uuidlib.uuid4())
        if (not uuid.strip() or uuid in (".", "..") or len(uuid) > 200
                or any(c == "/" or ord(c) < 32 or ord(c) == 127 for c in uuid)):
            raise SubmissionError(f"uuid {uuid!r} must be a name of at most 200 characters,"
                                  " without '/' or control characters, and not '.' or '..'")
        self._ensure()
        existing = self.batch_for_uuid(uuid)
        if existing:
            return existing
        prio = priority if priority is not None else prof.get("priority", 5)
        sub = {
            "profile": profile,
            "submitter": submitter,
            "payload_url": payload_url,
            "manifest_type": manifest_type,
            "submission_mode": submission_mode,
            "priority": priority_text(clamp_priority(prio)),
            "callback_url": callback_url,
            "notify_email": notify_email or prof.get("notify_email"),
            "uuid": uuid,
            "submitted_at": now_iso(),
        }
        path = self.zk.create(self.layout.batch("bid"), sequence=True)
        bid = path.rsplit("/", 1)[1]
        tx = self.zk.transaction()
        tx.create(self.layout.batch_uuid(uuid), encode(bid))
        tx.create(self.layout.batch_submission(bid), encode(sub))
        tx.create(self.layout.batch_status(bid), encode(status_record("pending")))
        tx.create(self.layout.batch_members(bid))
        for outcome in states.BATCH_OUTCOMES:
            tx.create(self.layout.batch_members(bid, outcome))
        tx.create(self.layout.batch_rows(bid))
        tx.create(self.layout.batch_state_entry("pending", bid))
        try:
            txn.commit(tx)
        except txn.TransactionFailed as e:
            self.zk.delete(path)
            if e.exists and e.path == self.layout.batch_uuid(uuid):
                # Someone else won this uuid; if their batch was cleaned out meanwhile, the
                # uuid is free again: submit anew.
                return self.batch_for_uuid(uuid) or self.submit(
                    payload_url, profile, submitter, priority=priority, uuid=uuid,
                    callback_url=callback_url, notify_email=notify_email,
                    submission_mode=submission_mode, manifest_type=manifest_type)
            raise
        return bid

    def batch_for_uuid(self, uuid: str) -> str | None:
        try:
            return decode(self.zk.get(self.layout.batch_uuid(uuid))[0])
        except NoNodeError:
            return None

    # -- reading ---------------------------------------------------------------------------
    def _get(self, path: str) -> Any:
        try:
            return decode(self.zk.get(path)[0])
        except NoNodeError:
            return None

    def batch(self, bid: str) -> dict | None:
        status = self._get(self.layout.batch_status(bid))
        if status is None:
            return None
        return {
            "batch_id": bid,
            **status,
            "submission": self._get(self.layout.batch_submission(bid)),
        }

    def batch_job_ids(self, bid: str) -> list[str]:
        futures = [
            self.zk.get_children_async(self.layout.batch_members(bid, o))
            for o in states.BATCH_OUTCOMES
        ]
        ids: list[str] = []
        for f in futures:
            try:
                ids.extend(f.get())
            except NoNodeError:
                pass
        return sorted(ids)

    def jobs(self, jids: list[str]) -> list[dict]:
        """Status, local id, ARK and message of each job, read pipelined."""
        names = ("status", "configuration", "ark", "priority")
        futs = [
            (jid, [self.zk.get_async(self.layout.job_node(jid, n)) for n in names]) for jid in jids
        ]
        out = []
        for jid, fs in futs:
            vals = []
            for f in fs:
                try:
                    vals.append(decode(f.get()[0]))
                except NoNodeError:
                    vals.append(None)
            status, conf, ark, prio = vals
            if status is None:
                continue
            conf = conf or {}
            out.append(
                {
                    "job_id": jid,
                    "batch_id": conf.get("batch_id"),
                    "status": status.get("status"),
                    "local_id": conf.get("local_id") or "",
                    "ark": ark or "",
                    "message": status.get("message", ""),
                    "priority": clamp_priority(prio) if prio is not None else None,
                    "last_modified": status.get("last_modified"),
                    "last_successful_status": status.get("last_successful_status"),
                    "retry_count": status.get("retry_count", 0),
                    "payload_url": conf.get("payload_url"),
                    "title": conf.get("title", ""),
                }
            )
        return out

    def job(self, jid: str) -> dict | None:
        found = self.jobs([jid])
        if not found:
            return None
        j = found[0]
        j["configuration"] = self._get(self.layout.job_node(jid, "configuration"))
        j["space_needed"] = self._get(self.layout.job_node(jid, "space_needed"))
        j["version"] = self._get(self.layout.job_node(jid, "version"))
        j["lock"] = self._get(self.layout.job_node(jid, "lock"))
        return j

    def batch_status(self, bid: str) -> dict | None:
        """The progress document of ``zkqueue status --json``."""
        b = self.batch(bid)
        if b is None:
            return None
        jobs = self.jobs(self.batch_job_ids(bid))
        sub = b.get("submission") or {}
        return {
            "batch_id": bid,
            "status": b["status"],
            "message": b.get("message", ""),
            "last_modified": b.get("last_modified"),
            "profile": sub.get("profile"),
            "submitter": sub.get("submitter"),
            "payload_url": sub.get("payload_url"),
            "manifest_type": sub.get("manifest_type"),
            "counts": status_counts(jobs),
            "jobs": jobs,
        }

    def _listed(self, kind: str, statuses: tuple[str, ...], status: str | None, state_dir,
                ident_of, limit: int | None) -> list[str]:
        """Ids in the wanted state dirs, queue order within each dir, at most ``limit``."""
        if status is not None and status not in statuses:
            raise ValueError(f"unknown {kind} status {status!r}; known: {', '.join(statuses)}")
        wanted = [status] if status else statuses
        futs = [self.zk.get_children_async(state_dir(s)) for s in wanted]
        ids: list[str] = []
        for f in futs:
            try:
                names = f.get()
            except NoNodeError:
                continue
            ids += sorted(i for i in map(ident_of, names) if i)
            if limit is not None and len(ids) >= limit:
                return ids[:limit]
        return ids

    def list_batches(self, status: str | None = None, limit: int | None = None) -> list[dict]:
        bids = self._listed("batch", states.BATCH_STATUSES, status, self.layout.batch_state_dir,
                            lambda n: n if n.startswith("bid") else None, limit)
        futs = [(bid, self.zk.get_async(self.layout.batch_status(bid)),
                 self.zk.get_async(self.layout.batch_submission(bid))) for bid in bids]
        out = []
        for bid, st_f, sub_f in futs:
            try:
                st, sub = decode(st_f.get()[0]) or {}, decode(sub_f.get()[0]) or {}
            except NoNodeError:
                continue
            out.append({"batch_id": bid, "status": st.get("status"),
                        "profile": sub.get("profile"), "submitter": sub.get("submitter"),
                        "message": st.get("message", ""),
                        "last_modified": st.get("last_modified")})
        return out

    def list_jobs(self, status: str | None = None, limit: int | None = None) -> list[dict]:
        # entries sort by priority, then id: the queue order
        entries = self._listed("job", states.JOB_STATUSES, status, self.layout.job_state_dir,
                               lambda n: n if parse_entry(n) else None, limit)
        return self.jobs([parse_entry(n)[1] for n in entries])

    def counts(self) -> dict[str, dict[str, int]]:
        """Items per status from the dirs' stat (numChildren), no listing."""

        def count(paths: dict[str, str]) -> dict[str, int]:
            futs = {s: self.zk.exists_async(p) for s, p in paths.items()}
            return {s: (f.get().numChildren if f.get() else 0) for s, f in futs.items()}

        return {
            "jobs": count({s: self.layout.job_state_dir(s) for s in states.JOB_STATUSES}),
            "batches": count({s: self.layout.batch_state_dir(s) for s in states.BATCH_STATUSES}),
        }
