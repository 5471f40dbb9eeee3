"""recording: the object version, its files and digests into the inventory, in one DB transaction.

Idempotent: the same job recording the same version again writes nothing; a different job that
already recorded this version of the ARK fails this one with both job ids in the message.
"""

from __future__ import annotations

from handlers.context import JobContext, Outcome, StepFailed
from handlers.process import storage_plan
from zkqueue.inventory import FileRecord, InventoryError, VersionRecord
from zkqueue.transitions import now_iso


def record(ctx: JobContext) -> Outcome:
    sp = storage_plan(ctx)
    conf = ctx.conf
    rec = VersionRecord(
        ark=sp["ark"], version=int(sp["version"]), profile=conf["profile"],
        local_id=conf.get("local_id") or "", job_id=ctx.ident, batch_id=conf["batch_id"],
        submission_mode=conf.get("submission_mode", "add"), created=now_iso(),
        files=[FileRecord(path=f["name"], size=f["size"], sha256=f["sha256"],
                          storage_key=f["storage_key"], md5=f.get("md5"))
               for f in sp["files"]],
    )
    try:
        new = ctx.services.inventory.record_version(rec)
    except InventoryError as e:
        if not e.permanent:
            raise  # the database is away, not the deposit at fault: the worker waits
        raise StepFailed(str(e), "inventory_conflict") from e
    what = "recorded" if new else "already recorded"
    return Outcome("notify", message=f"{what} {rec.ark} version {rec.version}")
