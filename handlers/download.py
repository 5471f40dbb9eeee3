"""downloading: every file of the plan into ``producer/`` of the working folder.

GETs run in a thread pool with bounded retries (the fetcher); digests given in the manifest are
checked as the bytes arrive; a container zip is unpacked safely (nothing lands outside the
folder) and removed. The producer folder is emptied first, so a rerun starts clean. Afterwards
``space_needed`` is set to what the files really take.
"""

from __future__ import annotations

import shutil

from handlers import plan
from handlers.context import JobContext, Outcome
from handlers.unzip import safe_extract
from zkqueue import metrics
from zkqueue.safepaths import join_inside

PRODUCER = "producer"
CONTAINER_DIR = "container"


def folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def download(ctx: JobContext) -> Outcome:
    files = plan.load(ctx)
    producer = ctx.workdir / PRODUCER
    shutil.rmtree(producer, ignore_errors=True)
    producer.mkdir(parents=True)
    container = ctx.conf["payload_type"] == "container"
    target = ctx.workdir / CONTAINER_DIR if container else producer
    if container:
        shutil.rmtree(target, ignore_errors=True)
    fetcher = ctx.services.fetcher

    def get(f):
        ctx.check_cancel()
        return fetcher.download(f.url, join_inside(target, f.name), digest=f.digest,
                                expected_size=f.size, cancel=ctx.cancel,
                                on_bytes=metrics.DOWNLOADED.inc)

    got = fetcher.map(get, files)
    ctx.check_cancel()
    if container:
        names = []
        for d in got:
            names += safe_extract(d.path, producer, ctx.services.zip_limits,
                                  archive_name=d.path.name)
        shutil.rmtree(target, ignore_errors=True)
        note = f"unpacked {len(names)} file(s) from {len(got)} container(s)"
    else:
        note = f"downloaded {len(got)} file(s)"
    used = folder_bytes(producer)
    ctx.write("space_needed", used)
    return Outcome("processing", message=f"{note}, {used} bytes")
