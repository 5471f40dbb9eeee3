"""Check the invariants of DESIGN §2/§3/§6 and repair what is safe to repair.

Invariants checked:

* every job with a status node has exactly one queue entry, in the state dir of its status,
  named after its priority node; every queue entry names an existing job of that status;
* every job of a batch is listed once in ``/batches/<bid>/states/<outcome>``, the outcome of its
  status; every membership entry names an existing job of that batch and outcome;
* every batch has exactly one entry in ``/batch-states``, the dir of its status, and its fixed
  dirs (``states/<outcome>``, ``rows``); its row markers match its jobs;
* every ``/batch-uuids/<uuid>`` names a batch with that uuid, and every batch's uuid is there;
* every lock is ephemeral and records its owner (and, when it records it, its own session);
* no id node (``/jobs/jidN``, ``/batches/bidN``) lives without a status node for longer than a
  minute (a crash between allocating the id and the transaction that fills it).

How it reads a live queue: a first pass lists everything; every item that looks wrong is read
again between two reads of its status node, and only reported when the status did not change in
between (a transition moves the status and the entries in one transaction, so such a view is
consistent). Items that moved during the check are counted as ``changed``, never reported.

Repairs: the status node is the source of truth. A missing entry or membership is created, a
stray or dangling one removed, a missing batch dir created, an old orphan id node or a
non-ephemeral lock removed, a batch's missing uuid node created. Each repair is one checked
transaction that also checks the item's status version, so a repair of an item that moved since
it was checked is refused (and reported) rather than applied. Everything else is reported only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kazoo.client import KazooClient

from admin.znodes import Node, children_many, commit_ops, exists_many, get_many
from zkqueue import states, txn
from zkqueue.layout import ID_RE, Layout, clamp_priority, encode, parse_entry

ORPHAN_AGE = 60.0
# Repairs run in this order: dirs before the entries created in them.
RANK = {"batch-dir-missing": 0}


@dataclass
class Finding:
    kind: str
    item: str
    detail: str
    ops: list[tuple] = field(default_factory=list, repr=False)
    repaired: bool = False
    error: str | None = None

    @property
    def fix(self) -> str | None:
        """What ``--repair`` does about it (None: report only)."""
        acts = [f"{op} {path}" for op, path, _ in self.ops if op != "check"]
        return "; ".join(acts) or None

    def public(self) -> dict:
        return {"kind": self.kind, "item": self.item, "detail": self.detail, "fix": self.fix,
                "repaired": self.repaired, "error": self.error}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired]

    def public(self) -> dict:
        return {"ok": not self.remaining, "checked": self.checked,
                "changed_during_check": self.changed,
                "findings": [f.public() for f in self.findings],
                "repaired": sum(f.repaired for f in self.findings),
                "remaining": len(self.remaining)}


def _dict(node: Node | None) -> dict | None:
    return node.data if node is not None and isinstance(node.data, dict) else None


@dataclass
class Snapshot:
    """The first pass: everything listed once (not a consistent view)."""

    jobs: list[str]
    job_nodes: dict[str, Node | None]
    entries: dict[str, list[str]]
    batches: list[str]
    batch_nodes: dict[str, Node | None]
    batch_entries: dict[str, list[str]]
    dirs: dict[str, list[str] | None]
    members: dict[str, list[str]]
    uuids: dict[str, Node | None]
    odd_entries: list[str]


def snapshot(zk: KazooClient, lay: Layout) -> Snapshot:
    top = children_many(zk, [lay.jobs, lay.batches, lay.p("jobs", "states"),
                             lay.p("batch-states"), lay.p("batch-uuids")])
    jobs = [n for n in top[lay.jobs] or [] if ID_RE.match(n) and n.startswith("jid")]
    batches = [n for n in top[lay.batches] or [] if ID_RE.match(n) and n.startswith("bid")]
    job_nodes = get_many(zk, [lay.job_node(j, n) for j in jobs
                              for n in ("status", "priority", "configuration", "lock")])
    batch_nodes = get_many(zk, [f(b) for b in batches
                                for f in (lay.batch_status, lay.batch_submission, lay.batch_lock)])
    qdirs = [lay.job_state_dir(d) for d in top[lay.p("jobs", "states")] or []]
    bdirs = [lay.batch_state_dir(d) for d in top[lay.p("batch-states")] or []]
    fixed = [lay.batch_members(b) for b in batches] + [lay.batch_rows(b) for b in batches]
    fixed += [lay.batch_members(b, o) for b in batches for o in states.BATCH_OUTCOMES]
    dirs = children_many(zk, qdirs + bdirs + fixed)
    entries: dict[str, list[str]] = {}
    odd = []
    for d in qdirs:
        for name in dirs[d] or []:
            parsed = parse_entry(name)
            if parsed is None:
                odd.append(f"{d}/{name}")
            else:
                entries.setdefault(parsed[1], []).append(f"{d}/{name}")
    batch_entries: dict[str, list[str]] = {}
    for d in bdirs:
        for name in dirs[d] or []:
            batch_entries.setdefault(name, []).append(f"{d}/{name}")
    members: dict[str, list[str]] = {}
    for b in batches:
        for o in states.BATCH_OUTCOMES:
            for jid in dirs[lay.batch_members(b, o)] or []:
                members.setdefault(jid, []).append(lay.batch_member(b, o, jid))
    uuids = get_many(zk, [lay.batch_uuid(u) for u in top[lay.p("batch-uuids")] or []])
    return Snapshot(jobs, job_nodes, entries, batches, batch_nodes, batch_entries, dirs, members,
                    uuids, odd)


class Checker:
    def __init__(self, zk: KazooClient, layout: Layout, orphan_age: float = ORPHAN_AGE):
        self.zk, self.lay, self.orphan_age = zk, layout, orphan_age
        self.report = Report()

    def add(self, kind: str, item: str, detail: str, ops: list[tuple] | None = None) -> None:
        self.report.findings.append(Finding(kind, item, detail, ops or []))

    def unchanged(self, ident: str, node: Node) -> tuple | None:
        """The guard for repairs of ``ident``: a check of its status node at the version first
        read (``node``). None, and ``ident`` counted as changed, when the status moved since."""
        again = self.zk.exists(node.path)
        if again is None or again.version != node.stat.version:
            self.report.changed.append(ident)
            return None
        return ("check", node.path, node.stat.version)

    def add_strays(self, kind: str, ident: str, seen: list[str], want: str | None,
                   present: dict, guard: tuple, saying: str) -> None:
        """A finding, repaired by deleting it, for each path of ``seen`` other than ``want``
        that is still present; its detail is ``saying`` and the path."""
        for p in seen:
            if p != want and present[p]:
                self.add(kind, ident, f"{saying} {p}", [guard, ("delete", p, -1)])

    def run(self) -> Report:
        snap = snapshot(self.zk, self.lay)
        self.report.checked = {"jobs": len(snap.jobs), "batches": len(snap.batches),
                               "queue_entries": sum(map(len, snap.entries.values())),
                               "batch_entries": sum(map(len, snap.batch_entries.values())),
                               "uuids": len(snap.uuids)}
        for path in snap.odd_entries:
            self.add("job-entry-unparsable", path.rsplit("/", 1)[1],
                     f"{path} is not a queue entry name (PP-jid...); workers ignore it")
        self.check_jobs(snap)
        self.check_batches(snap)
        self.check_uuids(snap)
        return self.report

    # -- jobs ------------------------------------------------------------------------------
    def check_jobs(self, snap: Snapshot) -> None:
        lay = self.lay
        for jid in sorted(set(snap.jobs) | set(snap.entries) | set(snap.members)):
            status = _dict(snap.job_nodes.get(lay.job_node(jid, "status")))
            seen_e, seen_m = snap.entries.get(jid, []), snap.members.get(jid, [])
            if jid in snap.jobs:
                self.check_lock("job", jid, snap.job_nodes[lay.job_node(jid, "lock")])
            if status is None:
                self.check_absent("job", jid, lay.job_node(jid, "status"), seen_e, seen_m,
                                  lay.job(jid) if jid in snap.jobs else None)
                continue
            prio = snap.job_nodes[lay.job_node(jid, "priority")]
            conf = _dict(snap.job_nodes[lay.job_node(jid, "configuration")]) or {}
            want_e = lay.job_state_entry(status.get("status", "?"),
                                         clamp_priority(prio.data if prio else 5), jid)
            want_m = ([lay.batch_member(conf["batch_id"],
                                        states.batch_outcome(status.get("status", "?")), jid)]
                      if conf.get("batch_id") else [])
            if (seen_e != [want_e] or seen_m != want_m
                    or status.get("status") not in states.JOB_STATUSES):
                self.verify_job(jid, seen_e, seen_m)

    def verify_job(self, jid: str, seen_e: list[str], seen_m: list[str]) -> None:
        lay = self.lay
        status_path = lay.job_node(jid, "status")
        first = get_many(self.zk, [status_path, lay.job_node(jid, "priority"),
                                   lay.job_node(jid, "configuration")])
        node = first[status_path]
        if node is None:
            return self.report.changed.append(jid)
        status = _dict(node) or {}
        s = status.get("status")
        if s not in states.JOB_STATUSES:
            return self.add("job-status-invalid", jid, f"{status_path} holds {node.data!r}")
        prio = first[lay.job_node(jid, "priority")]
        want_e = lay.job_state_entry(s, clamp_priority(prio.data if prio else 5), jid)
        conf = _dict(first[lay.job_node(jid, "configuration")])
        bid = (conf or {}).get("batch_id")
        want_m = lay.batch_member(bid, states.batch_outcome(s), jid) if bid else None
        probe = {want_e, *seen_e, *seen_m}
        if bid:
            probe |= {want_m, lay.batch_status(bid)}
        present = exists_many(self.zk, sorted(probe))
        guard = self.unchanged(jid, node)
        if guard is None:
            return
        if not present[want_e]:
            self.add("job-entry-missing", jid, f"job is {s} but {want_e} is missing",
                     [guard, ("create", want_e, b"")])
        self.add_strays("job-entry-stray", jid, seen_e, want_e, present, guard,
                        f"job is {s} ({want_e.rsplit('/', 1)[1]}) but is also queued as")
        if conf is None:
            self.add("job-configuration-missing", jid, "job has a status but no configuration")
        elif not bid:
            self.add("job-batch-missing", jid, "job configuration names no batch")
        elif not present[lay.batch_status(bid)]:
            self.add("job-batch-missing", jid, f"job belongs to batch {bid}, which does not exist")
        elif not present[want_m]:
            self.add("job-member-missing", jid, f"job is {s} but {want_m} is missing",
                     [guard, ("create", want_m, b"")])
        self.add_strays("job-member-stray", jid, seen_m, want_m, present, guard,
                        f"job is {s} of batch {bid or '?'} but is also listed as")

    # -- items without a status --------------------------------------------------------------
    def check_absent(self, kind: str, ident: str, status_path: str, seen_e: list[str],
                     seen_m: list[str], node_path: str | None) -> None:
        """Entries naming an item with no status, and id nodes with no status."""
        before = self.zk.exists(status_path)
        present = exists_many(self.zk, seen_e + seen_m + ([node_path] if node_path else []))
        kids = children_many(self.zk, [node_path])[node_path] if node_path else None
        if before is not None or self.zk.exists(status_path) is not None:
            return self.report.changed.append(ident)
        for p in seen_e:
            if present[p]:
                self.add(f"{kind}-entry-dangling", ident, f"{p} names a {kind} that does not"
                         " exist", [("delete", p, -1)])
        for p in seen_m:
            if present[p]:
                self.add("job-member-dangling", ident, f"{p} names a job that does not exist",
                         [("delete", p, -1)])
        stat = present.get(node_path) if node_path else None
        if stat is None:
            return
        if kids:
            return self.add(f"{kind}-incomplete", ident, f"{node_path} has no status but has"
                            f" {', '.join(kids)}; inspect it with 'zkqueue admin show {ident}'")
        age = time.time() - stat.ctime / 1000
        if age >= self.orphan_age:
            self.add(f"{kind}-orphan-id", ident, f"{node_path} was allocated {age:.0f}s ago and"
                     " never filled (a crash between id allocation and creation)",
                     [("delete", node_path, stat.version)])

    def check_lock(self, kind: str, ident: str, node: Node | None) -> None:
        if node is None:
            return
        if node.stat.ephemeralOwner == 0:
            return self.add("lock-not-ephemeral", ident, f"{node.path} is persistent: no worker"
                            " made it, and it would block the item forever",
                            [("delete", node.path, node.stat.version)])
        info = _dict(node)
        session = f"{node.stat.ephemeralOwner:#x}"
        if not info or not info.get("owner"):
            self.add("lock-malformed", ident, f"{node.path} (session {session}) records no owner:"
                     f" {node.data!r}")
        elif info.get("session") and info["session"] != session:
            self.add("lock-malformed", ident, f"{node.path} records session {info['session']}"
                     f" but belongs to session {session}")

    # -- batches ---------------------------------------------------------------------------
    def check_batches(self, snap: Snapshot) -> None:
        lay = self.lay
        for bid in sorted(set(snap.batches) | set(snap.batch_entries)):
            status = _dict(snap.batch_nodes.get(lay.batch_status(bid)))
            seen = snap.batch_entries.get(bid, [])
            if bid in snap.batches:
                self.check_lock("batch", bid, snap.batch_nodes[lay.batch_lock(bid)])
            if status is None:
                self.check_absent("batch", bid, lay.batch_status(bid), seen, [],
                                  lay.batch(bid) if bid in snap.batches else None)
                continue
            want = lay.batch_state_entry(status.get("status", "?"), bid)
            dirs = self.fixed_dirs(bid)
            if seen != [want] or any(snap.dirs.get(d) is None for d in dirs):
                self.verify_batch(bid, seen)
            if status.get("status") not in ("pending", "processing"):
                self.check_rows(snap, bid)

    def fixed_dirs(self, bid: str) -> list[str]:
        lay = self.lay
        return ([lay.batch_members(bid)] + [lay.batch_members(bid, o)
                                            for o in states.BATCH_OUTCOMES]
                + [lay.batch_rows(bid)])

    def verify_batch(self, bid: str, seen: list[str]) -> None:
        status_path = self.lay.batch_status(bid)
        node = get_many(self.zk, [status_path])[status_path]
        if node is None:
            return self.report.changed.append(bid)
        s = (_dict(node) or {}).get("status")
        if s not in states.BATCH_STATUSES:
            return self.add("batch-status-invalid", bid, f"{status_path} holds {node.data!r}")
        want = self.lay.batch_state_entry(s, bid)
        dirs = self.fixed_dirs(bid)
        present = exists_many(self.zk, sorted({want, *seen, *dirs}))
        guard = self.unchanged(bid, node)
        if guard is None:
            return
        if not present[want]:
            self.add("batch-entry-missing", bid, f"batch is {s} but {want} is missing",
                     [guard, ("create", want, b"")])
        self.add_strays("batch-entry-stray", bid, seen, want, present, guard,
                        f"batch is {s} but is also listed as")
        missing = [d for d in dirs if not present[d]]
        if missing:
            self.add("batch-dir-missing", bid, f"missing {', '.join(missing)}",
                     [guard] + [("create", d, b"") for d in missing])

    def check_rows(self, snap: Snapshot, bid: str) -> None:
        """Row markers against the batch's jobs (report only: a mismatch means a job was lost
        or made twice, which no automatic repair can judge)."""
        lay = self.lay
        rows = snap.dirs.get(lay.batch_rows(bid))
        jids = [j for o in states.BATCH_OUTCOMES for j in snap.dirs.get(lay.batch_members(bid, o))
                or []]
        if rows is None:
            return
        confs = {j: _dict(snap.job_nodes.get(lay.job_node(j, "configuration"))) for j in jids}
        if self.rows_mismatch(set(rows), confs) is None:
            return
        fresh = children_many(self.zk, [lay.batch_rows(bid)]
                              + [lay.batch_members(bid, o) for o in states.BATCH_OUTCOMES])
        jids = [j for o in states.BATCH_OUTCOMES for j in fresh[lay.batch_members(bid, o)] or []]
        got = get_many(self.zk, [lay.job_node(j, "configuration") for j in jids])
        confs = {j: _dict(got[lay.job_node(j, "configuration")]) for j in jids}
        detail = self.rows_mismatch(set(fresh[lay.batch_rows(bid)] or []), confs)
        if detail:
            self.add("batch-rows-mismatch", bid, detail)

    @staticmethod
    def rows_mismatch(rows: set[str], confs: dict[str, dict | None]) -> str | None:
        job_rows = {c["row"]: j for j, c in confs.items() if c and c.get("row")}
        extra = sorted(rows - set(job_rows))
        lacking = sorted(job_rows[r] for r in set(job_rows) - rows)
        if not extra and not lacking:
            return None
        parts = []
        if extra:
            parts.append(f"{len(extra)} row marker(s) without a job (e.g. {', '.join(extra[:3])})")
        if lacking:
            parts.append(f"{len(lacking)} job(s) without a row marker"
                         f" (e.g. {', '.join(lacking[:3])})")
        return f"{len(rows)} row marker(s), {len(confs)} job(s): " + "; ".join(parts)

    # -- uuids -------------------------------------------------------------------------------
    def check_uuids(self, snap: Snapshot) -> None:
        lay = self.lay
        for path, node in snap.uuids.items():
            if node is None:
                continue
            uuid, bid = path.rsplit("/", 1)[1], node.data
            sub = _dict(snap.batch_nodes.get(lay.batch_submission(bid))) if isinstance(
                bid, str) else None
            if sub is not None and sub.get("uuid") == uuid:
                continue
            fresh = get_many(self.zk, [path, lay.batch_status(str(bid)),
                                       lay.batch_submission(str(bid))])
            if fresh[path] is None or fresh[path].data != bid:
                continue
            sub = _dict(fresh[lay.batch_submission(str(bid))])
            if fresh[lay.batch_status(str(bid))] is None:
                self.add("uuid-dangling", uuid, f"{path} names batch {bid}, which does not exist",
                         [("delete", path, fresh[path].stat.version)])
            elif not sub or sub.get("uuid") != uuid:
                self.add("uuid-mismatch", uuid, f"{path} names batch {bid}, whose uuid is"
                         f" {(sub or {}).get('uuid')!r}")
        for bid in snap.batches:
            sub = _dict(snap.batch_nodes.get(lay.batch_submission(bid)))
            uuid = (sub or {}).get("uuid")
            if not uuid or lay.batch_uuid(uuid) in snap.uuids:
                continue
            if self.zk.exists(lay.batch_uuid(uuid)) is None:
                self.add("uuid-missing", bid, f"batch {bid} has uuid {uuid} but"
                         f" {lay.batch_uuid(uuid)} is missing (a resubmission would not find"
                         " it)", [("check", lay.batch_submission(bid), -1),
                                  ("create", lay.batch_uuid(uuid), encode(bid))])


def check(zk: KazooClient, layout: Layout, *, orphan_age: float = ORPHAN_AGE) -> Report:
    """Check every invariant; writes nothing."""
    return Checker(zk, layout, orphan_age).run()


def repair(zk: KazooClient, report: Report) -> Report:
    """Apply every finding's repair, each in its own checked transaction (see module doc)."""
    for f in sorted(report.findings, key=lambda f: RANK.get(f.kind, 1)):
        if not f.ops:
            continue
        try:
            commit_ops(zk, f.ops)
        except txn.TransactionFailed as e:
            f.error = f"not repaired: {e} (it changed since the check; run fsck again)"
            continue
        f.repaired = True
    return report
