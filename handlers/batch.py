"""The batch steps: admit (pending), expand (processing), report (reporting, update-reporting).

Expansion fetches the payload, works out what it is and creates its jobs through
:func:`zkqueue.expansion.create_jobs` (resumable, no duplicates). Reporting happens when no job of
the batch is still running; it is woken by the worker that settles the last job (and by a watch
on the batch's ``processing`` membership), never found by polling alone.
"""

from __future__ import annotations

from handlers.admit import admission
from handlers.context import BatchContext, Defer, Outcome, StepFailed
from zkqueue import expansion
from zkqueue.checkm import ManifestError, looks_like_checkm
from zkqueue.layout import decode
from zkqueue.mail import Mail, MailError
from zkqueue.payloads import expand, url_file_name
from zkqueue.queue import Queue, status_counts


def admit(ctx: BatchContext) -> Outcome:
    return admission(ctx, ctx.submission["profile"], "processing")


def expand_batch(ctx: BatchContext) -> Outcome:
    sub = ctx.submission
    url = sub["payload_url"]
    name = url_file_name(url) or "payload"
    limit = int(ctx.cfg["http"]["max_manifest_bytes"])
    data = ctx.services.fetcher.get_bytes(url, limit + 1, truncate=True)
    if len(data) > limit and looks_like_checkm(data):
        raise StepFailed(f"payload {name}: the manifest is larger than the limit of {limit}"
                         " bytes (http.max_manifest_bytes); split the batch")
    try:
        exp = expand(url, data[:limit], name)
    except ManifestError as e:
        raise StepFailed(f"payload {name}: {e}" if e.source != name else str(e)) from e
    if sub.get("manifest_type") != exp.manifest_type:
        ctx.write("submission", {**sub, "manifest_type": exp.manifest_type})
    limits = ctx.cfg["limits"]
    created, finished = expansion.create_jobs(
        ctx.zk, ctx.layout, ctx.ident, sub, exp.jobs, ctx.services.work_dir, claim=ctx.claim,
        chunk=int(limits["expansion_chunk"]), max_pending=int(limits["max_state_dir"]))
    if not finished:
        raise Defer(f"the pending queue is full ({limits['max_state_dir']}); expansion resumes"
                    f" when it drains ({created} jobs created so far)", delay=10.0)
    return Outcome("reporting", message=f"{exp.manifest_type}: {len(exp.jobs)} job(s)")


def running_jobs(ctx: BatchContext) -> int:
    stat = ctx.zk.exists(ctx.layout.batch_members(ctx.ident, "processing"))
    return stat.numChildren if stat else 0


def summary_text(bid: str, status: str, doc: dict) -> str:
    lines = [f"Batch {bid}: {status}", f"Payload: {doc.get('payload_url')}",
             f"Profile: {doc.get('profile')}  Submitter: {doc.get('submitter')}", ""]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(doc["counts"].items()))
    lines += [f"Jobs: {counts}", ""]
    for j in doc["jobs"]:
        lines.append(f"{j['job_id']}  {j['status']:<10} {j['local_id'] or '-':<20}"
                     f" {j['ark'] or '-'}")
        if j["status"] == "failed" and j["message"]:
            lines.append(f"    {j['message']}")
    return "\n".join(lines) + "\n"


def merged_status(q: Queue, inv, bid: str) -> dict:
    """The batch's progress from ZooKeeper, plus jobs already cleaned out of it (their last
    outcome is in the inventory's saved summary), so a re-report loses no job."""
    doc = q.batch_status(bid)
    saved = inv.batch_summary(bid) or {}
    here = {j["job_id"] for j in doc["jobs"]}
    doc["jobs"] += [j for j in saved.get("jobs", []) if j.get("job_id") not in here]
    doc["jobs"].sort(key=lambda j: j["job_id"])
    doc["counts"] = status_counts(doc["jobs"])
    return doc


def report(ctx: BatchContext) -> Outcome:
    if running_jobs(ctx):
        raise Defer("jobs still running", delay=60.0,
                    wake_path=ctx.layout.batch_members(ctx.ident, "processing"))
    inv = ctx.services.inventory
    status_rec = decode(ctx.zk.get(ctx.layout.batch_status(ctx.ident))[0]) or {}
    if status_rec.get("last_successful_status") in (None, "pending"):
        # It failed before (or while) its manifest was expanded: a report would call a
        # partial batch complete.
        return Outcome("failed", message="the batch never finished creating its jobs"
                                         f" ({status_rec.get('message') or 'no message'});"
                                         " correct the payload and submit it again")
    doc = merged_status(Queue(ctx.zk, ctx.layout, ctx.cfg), inv, ctx.ident)
    failed = [j for j in doc["jobs"] if j["status"] == "failed"]
    status = "failed" if failed else "completed"
    for j in doc["jobs"]:
        inv.save_job_outcome(j["job_id"], ctx.ident, j["status"], j["local_id"], j["ark"],
                             j["message"])
    done = doc["counts"].get("completed", 0)
    message = f"{done} completed, {len(failed)} failed of {len(doc['jobs'])} job(s)"
    if doc["counts"].get("deleted"):
        message += f", {doc['counts']['deleted']} deleted"
    inv.save_batch_summary(ctx.ident, status, {**doc, "status": status, "message": message})
    email = ctx.submission.get("notify_email")
    to = [email] if email else []
    mail = Mail(to=to, subject=f"zkqueue batch {ctx.ident} {status}: {message}",
                body=summary_text(ctx.ident, status, doc))
    if to:
        try:
            ctx.services.mailer.send(mail, f"{ctx.ident}-{ctx.claim.status}-"
                                           f"{ctx.claim.status_version}")
        except MailError as e:
            if not e.permanent:
                raise Defer(f"summary mail not sent yet: {e}", delay=60.0) from e
            ctx.log.warning("summary mail refused: %s", e)
            message += f" (summary mail not sent: {e})"
    return Outcome(status, message=message)
