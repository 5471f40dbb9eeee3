"""pending (job or batch): a held collection sends the item to ``held``; a paused queue leaves it
waiting."""

from __future__ import annotations

from handlers.context import Defer, ItemContext, JobContext, Outcome


def admission(ctx: ItemContext, profile: str, next_status: str) -> Outcome:
    """The pending step of an item of collection ``profile``: held, deferred, or ``next_status``."""
    if ctx.zk.exists(ctx.layout.collection_hold(profile)) is not None:
        return Outcome("held", message=f"collection {profile} is held")
    if ctx.zk.exists(ctx.layout.queue_pause) is not None:
        raise Defer("the queue is paused", delay=30.0)
    return Outcome(next_status)


def admit(ctx: JobContext) -> Outcome:
    return admission(ctx, ctx.conf["profile"], "estimating")
