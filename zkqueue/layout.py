"""The znode layout of DESIGN §2, as path functions under one root.

Nothing else in the project spells a znode path: every reader and writer asks this module, so the
layout can be checked (``fsck``) and changed in one place.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

ID_RE = re.compile(r"^(bid|jid)\d{10}$")
ENTRY_RE = re.compile(r"^(\d{2})-(jid\d{10})$")


def encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes | None) -> Any:
    if not data:
        return None
    text = data.decode()
    try:
        return json.loads(text)
    except ValueError:
        return text


def clamp_priority(value: int | float | str) -> int:
    """0..99, whatever comes in (Merritt overflowed two digits; this cannot)."""
    try:
        n = int(float(value))
    except (TypeError, ValueError):
        n = 5
    return max(0, min(99, n))


def priority_text(value: int | float | str) -> str:
    return f"{clamp_priority(value):02d}"


def entry_name(priority: int | str, jid: str) -> str:
    return f"{priority_text(priority)}-{jid}"


def parse_entry(name: str) -> tuple[int, str] | None:
    m = ENTRY_RE.match(name)
    return (int(m.group(1)), m.group(2)) if m else None


@dataclass(frozen=True)
class Layout:
    root: str = "/zkqueue"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", "/" + self.root.strip("/"))

    def p(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    # batches
    @property
    def batches(self) -> str:
        return self.p("batches")

    def batch(self, bid: str) -> str:
        return self.p("batches", bid)

    def batch_submission(self, bid: str) -> str:
        return self.p("batches", bid, "submission")

    def batch_status(self, bid: str) -> str:
        return self.p("batches", bid, "status")

    def batch_lock(self, bid: str) -> str:
        return self.p("batches", bid, "lock")

    def batch_members(self, bid: str, outcome: str | None = None) -> str:
        return self.p("batches", bid, "states", *([outcome] if outcome else []))

    def batch_member(self, bid: str, outcome: str, jid: str) -> str:
        return self.p("batches", bid, "states", outcome, jid)

    def batch_rows(self, bid: str) -> str:
        """Expansion markers: one child per manifest row already turned into a job."""
        return self.p("batches", bid, "rows")

    def batch_row(self, bid: str, key: str) -> str:
        return self.p("batches", bid, "rows", key)

    def batch_state_dir(self, status: str) -> str:
        return self.p("batch-states", status)

    def batch_state_entry(self, status: str, bid: str) -> str:
        return self.p("batch-states", status, bid)

    def batch_uuid(self, uuid: str) -> str:
        return self.p("batch-uuids", uuid)

    # jobs
    @property
    def jobs(self) -> str:
        return self.p("jobs")

    def job(self, jid: str) -> str:
        return self.p("jobs", jid)

    def job_node(self, jid: str, name: str) -> str:
        """configuration, status, priority, space_needed, ark, version, lock."""
        return self.p("jobs", jid, name)

    def job_state_dir(self, status: str) -> str:
        return self.p("jobs", "states", status)

    def job_state_entry(self, status: str, priority: int | str, jid: str) -> str:
        return self.p("jobs", "states", status, entry_name(priority, jid))

    # locks and counters
    def collection_hold(self, profile: str) -> str:
        return self.p("locks", "collections", profile)

    @property
    def collection_holds(self) -> str:
        return self.p("locks", "collections")

    @property
    def queue_pause(self) -> str:
        return self.p("locks", "queue", "ingest")

    def localid_lock(self, profile: str, local_id: str) -> str:
        from urllib.parse import quote

        return self.p("locks", "localid", profile, quote(local_id, safe=""))

    def counter(self, name: str) -> str:
        return self.p("counters", name)

    @property
    def workers(self) -> str:
        """Ephemeral heartbeat nodes, one per live worker process."""
        return self.p("workers")
