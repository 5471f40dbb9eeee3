"""Every real Merritt sample deposit ingests end to end, with its digests verified."""

from __future__ import annotations

import email
import hashlib
from pathlib import Path
from urllib.parse import quote

from tests.conftest import MERRITT, run_worker
from zkqueue import checkm
from zkqueue.inventory import Inventory

SAMPLES = {
    "4blocks.checkm": ("object-manifest", 1),
    "bigHunt.checkm": ("object-manifest", 1),
    "call911.checkm": ("object-manifest", 1),
    "sampleBatchOfManifests.checkm": ("batch-manifest", 3),
    "sampleBatchOfContainers.checkm": ("container-batch-manifest", 3),
    "sampleBatchOfFiles.checkm": ("single-file-batch-manifest", 3),
    "tumbleBug.jpg": ("file", 1),
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_every_merritt_sample_ingests(merritt, queue, cfg, tmp_path):
    bids = {
        name: queue.submit(
            f"{merritt.url}/{name}", "demo", "tester", notify_email="curator@example.org"
        )
        for name in SAMPLES
    }
    run_worker(cfg, threads=3)
    storage = tmp_path / "storage"
    inv = Inventory.open(cfg["inventory"]["url"])
    arks = set()
    for name, bid in bids.items():
        doc = queue.batch_status(bid)
        kind, n = SAMPLES[name]
        assert doc["status"] == "completed", (name, doc)
        assert doc["manifest_type"] == kind
        assert doc["counts"] == {"completed": n}, (name, doc["counts"])
        for job in doc["jobs"]:
            assert job["ark"].startswith("ark:/99999/fk4"), job
            arks.add(job["ark"])
            versions = inv.versions(job["ark"])
            assert [v.version for v in versions] == [1]
            files = {f.path: f for f in versions[0].files}
            assert "system/mrt-erc.txt" in files and "system/mrt-dc.xml" in files
            for f in files.values():
                stored = storage / f.storage_key
                assert stored.is_file(), f.storage_key
                assert hashlib.sha256(stored.read_bytes()).hexdigest() == f.sha256
            assert (
                storage / quote(job["ark"], safe="") / "1" / "system" / "mrt-manifest.txt"
            ).is_file()
    assert len(arks) == 3 + 3 + 3 + 3 + 1, "each object got its own ARK"
    # the manifests' md5 digests match what was stored
    for name in ("4blocks.checkm", "call911.checkm"):
        job = queue.batch_status(bids[name])["jobs"][0]
        stored = {f.path: f for f in inv.versions(job["ark"])[0].files}
        man = checkm.parse((MERRITT / name).read_bytes(), name)
        for e in man.entries:
            assert stored[f"producer/{e.file_name}"].md5 == e.hash_value
            assert md5(MERRITT / e.file_name) == e.hash_value
    # containers were unpacked into many files, not stored as zips
    for job in queue.batch_status(bids["sampleBatchOfContainers.checkm"])["jobs"]:
        paths = [f.path for f in inv.versions(job["ark"])[0].files]
        assert not any(p.endswith(".zip") for p in paths)
        assert len([p for p in paths if p.startswith("producer/")]) >= 1
    # batch summaries were mailed to the outbox and saved in the inventory
    mails = [email.message_from_bytes(p.read_bytes()) for p in (tmp_path / "outbox").iterdir()]
    assert len(mails) == len(SAMPLES)
    assert all(m["To"] == "curator@example.org" and "completed" in m["Subject"] for m in mails)
    assert inv.batch_summary(bids["sampleBatchOfFiles.checkm"])["status"] == "completed"
    # working folders are gone once jobs complete
    assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))
    inv.close()
