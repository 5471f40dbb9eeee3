"""processing: give the object its ARK and version, write its system files and storage manifest.

Guarantees:

* One ARK per local id and profile: the lookup and the mint run under the ephemeral
  ``/locks/localid/<profile>/<local_id>`` node, and the binding is recorded in the inventory
  before the lock is dropped. An ARK is written to ``/jobs/<jid>/ark`` the moment it is known,
  and a rerun reuses it, so a job never mints twice.
* A manifest-given ARK that disagrees with the local id's ARK fails the job, naming both.
* The version number is fixed once (``/jobs/<jid>/version``) and reused on rerun.
* ``add`` carries the previous version's files forward (same-named files replaced); ``update``
  holds exactly the submitted files. Unchanged files keep their previous storage key and are not
  uploaded again.
"""

from __future__ import annotations

import json
from pathlib import Path

from kazoo.exceptions import NodeExistsError

from handlers import plan
from handlers.context import Defer, JobContext, Outcome, StepFailed
from handlers.digests import file_digests
from handlers.download import PRODUCER
from handlers.metadata import ManifestFile, dublin_core_xml, erc_text, storage_manifest_text
from zkqueue.inventory import FileRecord
from zkqueue.storage import object_key

SYSTEM = "system"
STORAGE_PLAN = "storage.json"
MANIFEST_NAME = "mrt-manifest.txt"


def _ark_for(ctx: JobContext) -> str:
    given = ctx.read("ark")
    profile, local_id = ctx.conf["profile"], ctx.conf.get("local_id") or ""
    inv = ctx.services.inventory
    if not local_id:
        if given:
            return given
        ark = ctx.services.minter.mint()
        ctx.write("ark", ark)
        return ark
    lock = ctx.layout.localid_lock(profile, local_id)
    try:
        ctx.zk.create(lock, json.dumps({"job": ctx.ident}).encode(), ephemeral=True, makepath=True)
    except NodeExistsError:
        raise Defer(f"local id {local_id!r} is being resolved by another job", delay=1.0) from None
    try:
        known = inv.ark_for_local_id(profile, local_id)
        if given and known and given != known:
            raise StepFailed(
                f"the manifest gives ARK {given} for local id {local_id!r}, but that local id"
                f" already belongs to ARK {known} in profile {profile}",
                "ark_conflict",
            )
        ark = given or known
        if not ark:
            ark = ctx.services.minter.mint()
        if ark != given:
            ctx.write("ark", ark)
        inv.bind_local_id(profile, local_id, ark)
    finally:
        ctx.zk.delete(lock)
    return ark


def _producer_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _entry(name: str, path: Path, key: str, old: FileRecord | None = None) -> dict:
    """A file of the new version; one unchanged from ``old`` keeps its key and is not uploaded."""
    d = file_digests(path, ["sha256", "md5"])
    size = path.stat().st_size
    unchanged = old is not None and old.sha256 == d["sha256"] and old.size == size
    return {"name": name, "size": size, "sha256": d["sha256"], "md5": d["md5"],
            "storage_key": old.storage_key if unchanged else key,
            "source": None if unchanged else str(path)}


def _carried(f: FileRecord) -> dict:
    return {"name": f.path, "size": f.size, "sha256": f.sha256, "md5": f.md5,
            "storage_key": f.storage_key, "source": None}


def _system_files(ctx: JobContext, ark: str) -> dict[str, Path]:
    system = ctx.workdir / SYSTEM
    system.mkdir(parents=True, exist_ok=True)
    conf = ctx.conf
    who, what, when = conf.get("creator", ""), conf.get("title", ""), conf.get("date", "")
    where = [ark] + ([conf["local_id"]] if conf.get("local_id") else [])
    files = {"mrt-erc.txt": erc_text(who=who, what=what, when=when, where=where),
             "mrt-dc.xml": dublin_core_xml(title=what, creator=who, date=when, identifiers=where)}
    for name, text in files.items():
        (system / name).write_text(text)
    return {name: system / name for name in files}


def process(ctx: JobContext) -> Outcome:
    ark = _ark_for(ctx)
    ctx.check_cancel()
    inv = ctx.services.inventory
    previous = inv.latest_version(ark)
    version = ctx.read("version")
    if version is None:
        version = previous.version + 1 if previous else 1
        ctx.write("version", version)
    elif previous and previous.version >= version:
        previous = next((v for v in inv.versions(ark) if v.version == version - 1), None)
    found = _producer_files(ctx.workdir / PRODUCER)
    if not found:
        raise StepFailed("the object holds no files (nothing was downloaded or unpacked)")
    before = {f.path: f for f in previous.files} if previous else {}
    entries: dict[str, dict] = {}
    if ctx.conf.get("submission_mode", "add") == "add":
        entries = {p: _carried(f) for p, f in before.items() if p.startswith("producer/")}
    for rel, path in found.items():
        ctx.check_cancel()
        name = f"{PRODUCER}/{rel}"
        entries[name] = _entry(name, path, object_key(ark, version, PRODUCER, rel),
                               before.get(name))
    for rel, path in _system_files(ctx, ark).items():
        name = f"{SYSTEM}/{rel}"
        entries[name] = _entry(name, path, object_key(ark, version, SYSTEM, rel))
    listed = [ManifestFile(name=e["name"], size=e["size"], sha256=e["sha256"],
                           storage_key=e["storage_key"]) for e in entries.values()]
    manifest = ctx.workdir / SYSTEM / MANIFEST_NAME
    manifest.write_text(storage_manifest_text(ark, version, listed))
    plan.write_json(ctx.workdir / STORAGE_PLAN, {
        "ark": ark, "version": version, "files": list(entries.values()),
        "manifest": {"source": str(manifest),
                     "storage_key": object_key(ark, version, SYSTEM, MANIFEST_NAME)},
    })
    new = sum(1 for e in entries.values() if e["source"])
    return Outcome("storing", message=f"{ark} version {version}: {len(entries)} file(s),"
                                      f" {new} to store")


def storage_plan(ctx: JobContext) -> dict:
    got = plan.read_json(ctx.workdir / STORAGE_PLAN)
    if got is None:
        raise StepFailed(
            "the working folder has no storage plan; requeue the job so that processing runs again",
            "missing_state",
        )
    return got
