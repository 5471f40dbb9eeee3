"""estimating: how much room the job needs, and whether its manifest holds together.

HEADs every file (thread pool), keeps the plan in the working folder, writes ``space_needed`` and
re-prioritises the job by size: small jobs first, unknown sizes later.
"""

from __future__ import annotations

import math

from handlers import plan
from handlers.context import JobContext, Outcome
from zkqueue.layout import clamp_priority

MB = 1_000_000
UNKNOWN_SIZE_PENALTY = 10
# A container is downloaded and unpacked: room for both.
CONTAINER_FACTOR = 2


def size_priority(base: int, size: int, unknown: bool = False) -> int:
    """Small first: base + 10*log10(1 + MB); any unknown size costs another 10."""
    return clamp_priority(base + 10 * math.log10(1 + size / MB)
                          + (UNKNOWN_SIZE_PENALTY if unknown else 0))


def estimate(ctx: JobContext) -> Outcome:
    files = plan.work_out(ctx)
    plan.save(ctx, files)
    ctx.check_cancel()
    fetcher = ctx.services.fetcher
    heads = fetcher.map(lambda f: fetcher.head_size(f.url), files)
    sizes = [h if h is not None else f.size for f, h in zip(files, heads, strict=True)]
    known = [s for s in sizes if s is not None]
    total = sum(known)
    if ctx.conf["payload_type"] == "container":
        total *= CONTAINER_FACTOR
    ctx.write("space_needed", total)
    base = int(ctx.submission.get("priority") or 5)
    unknown = len(known) < len(sizes)
    prio = size_priority(base, total, unknown)
    note = f"{len(files)} file(s), {total} bytes" + (" (some sizes unknown)" if unknown else "")
    return Outcome("provisioning", priority=prio, message=note)
