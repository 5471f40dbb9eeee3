"""``zkqueue admin``: hold, release, pause, requeue, delete, report again, inspect, check, clean.

Exit codes (DESIGN §6): 0 done, 1 failed or refused (the message is on stderr), 2 usage error.
With ``--json`` stdout carries only the JSON document. Destructive commands (``delete``,
``delete-batch``, ``cleanup``, ``fsck --repair``) ask for confirmation unless ``--yes``; with no
terminal to ask on they refuse rather than wait. ``--dry-run`` shows what would be done and
writes nothing. The logic lives in the sibling modules, as functions of (zk, layout, ...).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from admin import cleanup as cleanup_mod
from admin import delete as delete_mod
from admin import fsck as fsck_mod
from admin import holds as holds_mod
from admin import requeue as requeue_mod
from admin import show as show_mod
from admin.errors import Refused
from zkqueue.cli import Failure, emit, get_cfg, open_queue
from zkqueue.config import ConfigError
from zkqueue.inventory import Inventory, InventoryError
from zkqueue.layout import ID_RE
from zkqueue.queue import Queue
from zkqueue.states import IllegalTransition
from zkqueue.transitions import NotFound, StaleStatus
from zkqueue.txn import TransactionFailed


@contextmanager
def session(ctx: click.Context) -> Iterator[Queue]:
    """A connected queue; a refusal or a lost race becomes exit 1 with its message."""
    q = open_queue(ctx)
    try:
        yield q
    except (Refused, IllegalTransition, StaleStatus, NotFound, InventoryError,
            TransactionFailed) as e:
        raise Failure(str(e)) from e
    finally:
        q.close()


def interactive() -> bool:
    """Whether there is a terminal to ask for confirmation on."""
    return sys.stdin.isatty()


def confirm(question: str, yes: bool) -> None:
    """Go on only with --yes or a 'y' typed on a terminal; never wait on a pipe."""
    if yes:
        return
    if not interactive():
        raise Failure(f"{question} Not confirmed: stdin is not a terminal. Pass --yes to go"
                      " ahead (or --dry-run to see what would be done).")
    if not click.confirm(question, default=False, err=True):
        raise Failure("not confirmed; nothing was changed")


def note(text: str) -> None:
    click.echo(text, err=True)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document on stdout (messages go to stderr).")(f)


def dry_run_option(f: Callable) -> Callable:
    return click.option("--dry-run", is_flag=True,
                        help="Show what would be done; change nothing.")(f)


def yes_option(f: Callable) -> Callable:
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(f)


def ids(values: tuple[str, ...], prefix: str) -> list[str]:
    kind = "job" if prefix == "jid" else "batch"
    for v in values:
        if not (ID_RE.match(v) and v.startswith(prefix)):
            raise click.UsageError(f"{v!r} is not a {kind} id ({prefix} and 10 digits)")
    return list(values)


@click.group()
def admin() -> None:
    """Hold, release, requeue, delete, inspect and check the queue."""


# -- holds and pause -------------------------------------------------------------------------
@admin.command("hold-collection")
@click.argument("profile")
@click.option("--reason", default="", help="Why (shown by 'holds').")
@json_option
@click.pass_context
def hold_collection(ctx: click.Context, profile: str, reason: str, as_json: bool) -> None:
    """Hold collection PROFILE: its pending batches and jobs go to held; running ones finish."""
    try:
        get_cfg(ctx).profile(profile)
    except ConfigError as e:
        raise Failure(str(e)) from e
    with session(ctx) as q:
        doc = holds_mod.hold_collection(q.zk, q.layout, profile, reason)
    emit(doc, as_json, f"collection {profile} held{' (already)' if doc['already_held'] else ''}:"
                       f" {len(doc['batches'])} batch(es), {len(doc['jobs'])} job(s) moved to held")


@admin.command("release-collection")
@click.argument("profile")
@json_option
@click.pass_context
def release_collection(ctx: click.Context, profile: str, as_json: bool) -> None:
    """Release collection PROFILE: its held batches and jobs go back to pending and run."""
    with session(ctx) as q:
        doc = holds_mod.release_collection(q.zk, q.layout, profile)
    emit(doc, as_json, f"collection {profile} released: {len(doc['batches'])} batch(es),"
                       f" {len(doc['jobs'])} job(s) back to pending")


@admin.command()
@json_option
@click.pass_context
def holds(ctx: click.Context, as_json: bool) -> None:
    """The queue pause and the held collections, with their held batches and jobs."""
    with session(ctx) as q:
        doc = holds_mod.list_holds(q.zk, q.layout)
    pause = doc["pause"] or {}
    lines = [f"queue: {'PAUSED since ' + str(pause.get('since')) if doc['paused'] else 'running'}"]
    for c in doc["collections"]:
        state = f"held since {c['since']} by {c['by']}" if c["held"] else "not held"
        why = f" ({c['reason']})" if c["reason"] else ""
        lines.append(f"{c['profile']:<20} {state}: {c['held_batches']} batch(es),"
                     f" {c['held_jobs']} job(s) held{why}")
    emit(doc, as_json, "\n".join(lines))


@admin.command()
@click.option("--reason", default="", help="Why (shown by 'holds').")
@json_option
@click.pass_context
def pause(ctx: click.Context, reason: str, as_json: bool) -> None:
    """Stop the whole queue from claiming new work (running steps finish)."""
    with session(ctx) as q:
        doc = holds_mod.pause(q.zk, q.layout, reason)
    emit(doc, as_json, "queue paused" + (" (already)" if doc["already_paused"] else ""))


@admin.command()
@json_option
@click.pass_context
def resume(ctx: click.Context, as_json: bool) -> None:
    """Let the queue claim new work again."""
    with session(ctx) as q:
        doc = holds_mod.resume(q.zk, q.layout)
    emit(doc, as_json, "queue resumed" if doc["was_paused"] else "queue was not paused")


# -- requeue and reporting -------------------------------------------------------------------
@admin.command()
@click.argument("job_ids", nargs=-1)
@click.option("--batch", "batch_id", help="Requeue jobs of this batch (with --failed).")
@click.option("--failed", is_flag=True, help="With --batch: every failed job of the batch.")
@click.option("--update-reporting", is_flag=True,
              help="Afterwards, report each failed batch of these jobs again.")
@dry_run_option
@json_option
@click.pass_context
def requeue(ctx: click.Context, job_ids: tuple[str, ...], batch_id: str | None, failed: bool,
            update_reporting: bool, dry_run: bool, as_json: bool) -> None:
    """Rerun failed jobs from the step after their last successful one (retry count + 1).

    JOB_IDS, or every failed job of a batch with --batch BID --failed. Only failed jobs can be
    requeued; the whole command is refused if one of them is not.
    """
    if bool(job_ids) == bool(batch_id):
        raise click.UsageError("give job ids, or --batch BID --failed (not both)")
    if batch_id and not failed:
        raise click.UsageError("--batch needs --failed (only failed jobs are requeued)")
    if batch_id:
        ids((batch_id,), "bid")
    jids = ids(job_ids, "jid")
    with session(ctx) as q:
        if batch_id:
            jids = requeue_mod.failed_jobs(q.zk, q.layout, batch_id)
        plans = requeue_mod.plan_requeue(q.zk, q.layout, jids)
        bids = sorted({p["batch_id"] for p in plans if p["batch_id"]} | {batch_id} - {None})
        reports, hints = [], []
        for bid in bids:
            status = (q.batch(bid) or {}).get("status")
            if status != "failed":
                continue
            if update_reporting:
                reports.append(requeue_mod.check_update_reporting(q.zk, q.layout, bid))
            else:
                hints.append(f"batch {bid} is failed: once its jobs have run, report it again"
                             f" with 'zkqueue admin update-reporting {bid}'")
        if not dry_run:
            plans = requeue_mod.requeue(q.zk, q.layout, plans)
            reports = [requeue_mod.update_reporting(q.zk, q.layout, r["batch_id"])
                       for r in reports]
    doc = {"dry_run": dry_run, "requeued": plans, "update_reporting": reports, "hints": hints}
    verb = "would requeue" if dry_run else "requeued"
    lines = [f"{verb} {p['job_id']}: {p['from_status']} -> {p['to_status']}"
             f" (retry {p['retry_count']})" for p in plans] or ["no failed jobs to requeue"]
    lines += [f"{'would report' if dry_run else 'reporting'} batch {r['batch_id']} again"
              for r in reports]
    for h in hints:
        note(h)
    emit(doc, as_json, "\n".join(lines))


@admin.command("update-reporting")
@click.argument("batch_id")
@dry_run_option
@json_option
@click.pass_context
def update_reporting(ctx: click.Context, batch_id: str, dry_run: bool, as_json: bool) -> None:
    """Report a failed batch again after its jobs were rerun (completed if all now succeeded).

    A worker writes the new report once none of the batch's jobs is still running.
    """
    ids((batch_id,), "bid")
    with session(ctx) as q:
        fn = requeue_mod.check_update_reporting if dry_run else requeue_mod.update_reporting
        doc = {"dry_run": dry_run, **fn(q.zk, q.layout, batch_id)}
    emit(doc, as_json, f"batch {batch_id}: failed -> update-reporting"
                       f"{' (dry run)' if dry_run else ''}; {doc['jobs_running']} job(s) still"
                       " to run before the report")


# -- delete ----------------------------------------------------------------------------------
@admin.command()
@click.argument("job_ids", nargs=-1, required=True)
@yes_option
@dry_run_option
@json_option
@click.pass_context
def delete(ctx: click.Context, job_ids: tuple[str, ...], yes: bool, dry_run: bool,
           as_json: bool) -> None:
    """Delete held or failed jobs and remove their working folders."""
    jids = ids(job_ids, "jid")
    with session(ctx) as q:
        plans = delete_mod.plan_delete_jobs(q.zk, q.layout, jids)
        if not dry_run:
            confirm(f"Delete {len(plans)} job(s) ({', '.join(jids[:5])}"
                    f"{'...' if len(jids) > 5 else ''}) and their working folders?", yes)
            plans = delete_mod.delete_jobs(q.zk, q.layout, plans)
    verb = "would delete" if dry_run else "deleted"
    emit({"dry_run": dry_run, "deleted": plans}, as_json,
         "\n".join(f"{verb} {p['job_id']} (was {p['from_status']})" for p in plans))


@admin.command("delete-batch")
@click.argument("batch_id")
@yes_option
@dry_run_option
@json_option
@click.pass_context
def delete_batch(ctx: click.Context, batch_id: str, yes: bool, dry_run: bool,
                 as_json: bool) -> None:
    """Delete a held or failed batch with its held and failed jobs and its working folder.

    Refused while any of its jobs is queued or running; its completed jobs stay completed.
    """
    ids((batch_id,), "bid")
    with session(ctx) as q:
        plan = delete_mod.plan_delete_batch(q.zk, q.layout, batch_id,
                                            get_cfg(ctx).path("work_dir"))
        if not dry_run:
            confirm(f"Delete batch {batch_id} ({plan['from_status']}) and"
                    f" {len(plan['delete_jobs'])} of its job(s)?", yes)
            plan = delete_mod.delete_batch(q.zk, q.layout, plan)
    verb = "would delete" if dry_run else "deleted"
    emit({"dry_run": dry_run, **plan}, as_json,
         f"{verb} batch {batch_id} (was {plan['from_status']}) and"
         f" {len(plan['delete_jobs'])} job(s); {len(plan['keep_jobs'])} finished job(s) kept")


# -- inspect, check, clean -------------------------------------------------------------------
@admin.command()
@click.argument("ident")
@json_option
@click.pass_context
def show(ctx: click.Context, ident: str, as_json: bool) -> None:
    """Every znode of job or batch IDENT (jid... or bid...), decoded, with its lock owner."""
    if not ID_RE.match(ident):
        raise click.UsageError(f"{ident!r} is neither a job id (jid...) nor a batch id (bid...)")
    with session(ctx) as q:
        doc = show_mod.show(q.zk, q.layout, ident)
    emit(doc, as_json, show_mod.text(doc))


@admin.command()
@click.option("--repair", is_flag=True, help="Fix what is safe to fix (see docs/admin.md).")
@click.option("--orphan-age", type=click.FloatRange(min=0), default=fsck_mod.ORPHAN_AGE,
              show_default=True, help="Seconds before an unfilled id node counts as an orphan.")
@yes_option
@dry_run_option
@json_option
@click.pass_context
def fsck(ctx: click.Context, repair: bool, orphan_age: float, yes: bool, dry_run: bool,
         as_json: bool) -> None:
    """Check the queue's invariants; exit 1 while any violation remains."""
    with session(ctx) as q:
        report = fsck_mod.check(q.zk, q.layout, orphan_age=orphan_age)
        fixable = [f for f in report.findings if f.ops]
        if repair and fixable and not dry_run:
            confirm(f"Repair {len(fixable)} of {len(report.findings)} finding(s)?", yes)
            fsck_mod.repair(q.zk, report)
    doc = {"dry_run": dry_run, "repair": repair, **report.public()}
    lines = []
    for f in report.findings:
        if f.repaired:
            outcome = f"repaired: {f.fix}"
        elif f.error:
            outcome = f.error
        elif f.fix:
            outcome = f"{'would fix' if repair else 'fixable with --repair'}: {f.fix}"
        else:
            outcome = "report only"
        lines.append(f"{f.kind:<26} {f.item:<14} {f.detail}\n{'':<41} -> {outcome}")
    c = report.checked
    lines.append(f"checked {c['jobs']} job(s), {c['batches']} batch(es):"
                 f" {len(report.findings)} finding(s), {doc['repaired']} repaired,"
                 f" {doc['remaining']} remaining")
    emit(doc, as_json, "\n".join(lines))
    if report.remaining:
        raise Failure(f"{len(report.remaining)} violation(s) remain")


def parse_age(ctx: click.Context, param: click.Parameter, value: str):
    try:
        return cleanup_mod.parse_age(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


@admin.command()
@click.option("--older-than", required=True, callback=parse_age,
              help="Finished at least this long ago: 30d, 12h, 90m, 0s.")
@yes_option
@dry_run_option
@json_option
@click.pass_context
def cleanup(ctx: click.Context, older_than, yes: bool, dry_run: bool, as_json: bool) -> None:
    """Remove finished batches and their jobs from ZooKeeper; the inventory keeps their record.

    Completed and deleted batches go whole; failed batches keep their failed jobs (only their
    completed jobs are pruned). 'zkqueue status BID' answers from the inventory afterwards.
    """
    cfg = get_cfg(ctx)
    with session(ctx) as q:
        plans = cleanup_mod.plan_cleanup(q.zk, q.layout, older_than)
        n_batches = sum(p["remove_batch"] for p in plans)
        n_jobs = sum(len(p["prune_jobs"]) for p in plans)
        if dry_run or not plans:
            results = [cleanup_mod.public(p) for p in plans]
        else:
            confirm(f"Remove {n_batches} batch(es) and {n_jobs} job(s) from ZooKeeper (their"
                    " summaries stay in the inventory)?", yes)
            inv = Inventory.from_config(cfg)
            try:
                results = cleanup_mod.run_cleanup(q.zk, q.layout, inv, plans,
                                                  cfg.path("work_dir"))
            finally:
                inv.close()
    doc = {"dry_run": dry_run, "older_than": str(older_than), "batches": results}
    lines = []
    for r in results:
        what = "batch and" if r["remove_batch"] else "kept batch;"
        lines.append(f"{'would remove' if dry_run else 'removed'} {r['batch_id']} ({r['status']}):"
                     f" {what} {len(r['prune_jobs'])} job(s)"
                     + (f", kept {len(r['keep_jobs'])}" if r["keep_jobs"] else ""))
        lines += [f"  error: {e}" for e in r.get("errors", [])]
    lines.append(f"{len(results)} batch(es){' (dry run)' if dry_run else ''}")
    emit(doc, as_json, "\n".join(lines))
    errors = [e for r in results for e in r.get("errors", [])]
    if errors:
        raise Failure(f"{len(errors)} item(s) could not be removed")

