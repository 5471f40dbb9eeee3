"""provisioning: start downloading only when the working filesystem has room.

Room means used + reserved + space_needed <= threshold (``disk_threshold_percent`` of the
filesystem), where reserved is the ``space_needed`` of the jobs already downloading or
processing. Short of room the handler defers: the claim is released (never held while waiting)
and the job stays in provisioning for any worker to try again later.
"""

from __future__ import annotations

import shutil

from kazoo.exceptions import NoNodeError

from handlers.context import Defer, JobContext, Outcome
from zkqueue.layout import decode, parse_entry

RESERVING = ("downloading", "processing")


def reserved_bytes(ctx: JobContext) -> int:
    zk, layout = ctx.zk, ctx.layout
    jids = []
    for status in RESERVING:
        try:
            names = zk.get_children(layout.job_state_dir(status))
        except NoNodeError:
            continue
        jids += [e[1] for e in map(parse_entry, names) if e and e[1] != ctx.ident]
    futs = [zk.get_async(layout.job_node(j, "space_needed")) for j in jids]
    total = 0
    for f in futs:
        try:
            total += int(decode(f.get()[0]) or 0)
        except (NoNodeError, ValueError, TypeError):
            pass
    return total


def provision(ctx: JobContext) -> Outcome:
    need = int(ctx.read("space_needed") or 0)
    work_dir = ctx.services.work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(work_dir)
    limit = usage.total * float(ctx.cfg["disk_threshold_percent"]) / 100.0
    reserved = reserved_bytes(ctx)
    if usage.used + reserved + need > limit:
        raise Defer(
            f"waiting for disk: used {usage.used} + reserved {reserved} + needed {need}"
            f" > {ctx.cfg['disk_threshold_percent']}% of {usage.total}",
            delay=float(ctx.cfg["worker"]["provision_retry"]),
        )
    return Outcome("downloading")
