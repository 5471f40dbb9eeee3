"""pending (job): a held collection sends the job to ``held``; a paused queue leaves it waiting."""

from __future__ import annotations

from handlers.context import Defer, JobContext, Outcome


def admit(ctx: JobContext) -> Outcome:
    profile = ctx.conf["profile"]
    if ctx.zk.exists(ctx.layout.collection_hold(profile)) is not None:
        return Outcome("held", message=f"collection {profile} is held")
    if ctx.zk.exists(ctx.layout.queue_pause) is not None:
        raise Defer("the queue is paused", delay=30.0)
    return Outcome("estimating")
