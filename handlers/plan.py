"""The file plan of a job: which files it holds, where they come from, what they should be.

The plan is worked out once (estimating) and kept as ``plan.json`` in the job's working folder,
not in ZooKeeper, so a huge object costs ZooKeeper nothing. Any later step that finds no plan
(a rerun on a fresh folder) works it out again from the job's configuration.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from handlers.context import JobContext, StepFailed
from handlers.digests import new_hash
from zkqueue import checkm
from zkqueue.payloads import FileSpec, object_files, url_file_name

PLAN = "plan.json"
MANIFEST = "manifest.checkm"


def write_json(path: Path, value) -> None:
    """Atomic: a reader sees the old document or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def single_file(conf: dict) -> FileSpec:
    name = conf.get("file_name") or url_file_name(conf["payload_url"])
    return FileSpec(name=name, url=conf["payload_url"], digest=conf.get("digest"),
                    size=conf.get("size"), line=conf.get("line") or 0)


def work_out(ctx: JobContext) -> list[FileSpec]:
    """The job's files; for an object manifest this fetches, checks and keeps the manifest."""
    conf = ctx.conf
    if conf["payload_type"] != "manifest":
        return [single_file(conf)]
    fetcher = ctx.services.fetcher
    url = conf["payload_url"]
    data = fetcher.get_bytes(url, ctx.cfg["http"]["max_manifest_bytes"])
    if conf.get("digest"):
        alg, want = conf["digest"]["algorithm"], conf["digest"]["value"]
        h = new_hash(alg)
        h.update(data)
        got = h.hexdigest()
        if got != want.lower():
            raise StepFailed(f"object manifest {url_file_name(url)}: {alg} expected {want},"
                             f" found {got}", "digest_mismatch")
    manifest = checkm.parse(data, url_file_name(url) or "manifest")
    files = object_files(manifest, base_url=url)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    (ctx.workdir / MANIFEST).write_bytes(data)
    return files


def save(ctx: JobContext, files: list[FileSpec]) -> None:
    write_json(ctx.workdir / PLAN, [asdict(f) for f in files])


def load(ctx: JobContext) -> list[FileSpec]:
    raw = read_json(ctx.workdir / PLAN)
    if raw is None:
        files = work_out(ctx)
        save(ctx, files)
        return files
    return [FileSpec(**f) for f in raw]
