"""storing: every new file of the version, then its storage manifest, into storage.

Each upload is verified by the store (size and checksum) and is idempotent: a key that already
holds the same bytes is not written again, so a rerun after a crash stores no second copy.
Files unchanged from the previous version are not uploaded; the manifest points at their
earlier keys.
"""

from __future__ import annotations

from pathlib import Path

from handlers.context import JobContext, Outcome
from handlers.digests import file_digest
from handlers.process import storage_plan
from zkqueue import metrics


def store(ctx: JobContext) -> Outcome:
    sp = storage_plan(ctx)
    st = ctx.services.store
    todo = [f for f in sp["files"] if f["source"]]

    def put(f: dict) -> int:
        ctx.check_cancel()
        return _count(st.put_file(f["storage_key"], Path(f["source"]), f["sha256"]))

    sizes = ctx.services.fetcher.map(put, todo)
    man = Path(sp["manifest"]["source"])
    _count(st.put_file(sp["manifest"]["storage_key"], man, file_digest(man, "sha256")))
    return Outcome("recording", message=f"stored {len(todo)} file(s), {sum(sizes)} bytes, at"
                                        f" {st.location(sp['manifest']['storage_key'])}")


def _count(got) -> int:
    """Bytes really uploaded (a rerun that finds the bytes in place uploads nothing)."""
    if got.written:
        metrics.STORED.inc(got.size)
    return got.size
