"""``zkqueue demo``: the whole ingest path on one machine, with nothing set up beforehand.

It starts a local ZooKeeper when none answers, writes a small deposit of its own (a batch
manifest of three object manifests; one file carries a wrong digest on purpose), serves it on
loopback, submits it, runs a worker with a progress bar, and prints the final status and where
each object was stored. Exit 0 when the batch ended as expected (two objects stored, one
failure with a message naming the file).
"""

from __future__ import annotations

import hashlib
import http.server
import sys
import threading
import time
from functools import partial
from pathlib import Path

from tqdm import tqdm

from . import zkserver
from .config import load
from .queue import Queue
from .states import JOB_SETTLED

OBJECTS = {
    "postcard-001": ("Postcard of the Golden Gate", "A. Photographer", "1937", 3),
    "letter-002": ("Letter to the editor", "B. Writer", "1962-05-01", 2),
    "map-003": ("Survey map, sheet 3", "C. Surveyor", "1899", 2),
}
BAD = "map-003"


def checkm(profile: str, fields: list[str], rows: list[list[str]]) -> str:
    head = ["#%checkm_0.7", f"#%profile | http://uc3.cdlib.org/registry/ingest/manifest/{profile}",
            "#%prefix | mrt: | http://merritt.cdlib.org/terms#",
            "#%prefix | nfo: | http://www.semanticdesktop.org/ontologies/2007/03/22/nfo#",
            "#%fields | " + " | ".join(fields)]
    return "\n".join(head + [" | ".join(r) for r in rows] + ["#%eof", ""])


def build_deposit(folder: Path, base_url: str) -> str:
    """Write the deposit; returns the batch manifest's file name."""
    folder.mkdir(parents=True, exist_ok=True)
    batch_rows = []
    for local_id, (title, creator, date, n) in OBJECTS.items():
        rows = []
        for i in range(n):
            name = f"{local_id}-page{i + 1}.txt"
            data = (f"{title}\npage {i + 1}\n" + "lorem ipsum " * (200 * (i + 1))).encode()
            (folder / name).write_bytes(data)
            md5 = hashlib.md5(data).hexdigest()
            if local_id == BAD and i == n - 1:
                md5 = "0" * 32  # the depositor's digest is wrong: this object must fail
            rows.append([f"{base_url}/{name}", "md5", md5, str(len(data)), "", name])
        man = f"{local_id}.checkm"
        (folder / man).write_text(checkm("mrt-ingest-manifest", [
            "nfo:fileUrl", "nfo:hashAlgorithm", "nfo:hashValue", "nfo:fileSize",
            "nfo:fileLastModified", "nfo:fileName"], rows))
        batch_rows.append([f"{base_url}/{man}", "", "", "", "", man, "", local_id, creator,
                           title, date])
    (folder / "batch.checkm").write_text(checkm("mrt-batch-manifest", [
        "nfo:fileUrl", "nfo:hashAlgorithm", "nfo:hashValue", "nfo:fileSize",
        "nfo:fileLastModified", "nfo:fileName", "mrt:primaryIdentifier", "mrt:localIdentifier",
        "mrt:creator", "mrt:title", "mrt:date"], batch_rows))
    return "batch.checkm"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def run_demo(workdir: Path, threads: int = 4, zk: str | None = None,
             root: str | None = None) -> int:
    from .inventory import Inventory
    from .logs import setup
    from .worker import Worker

    setup("WARNING", "json")
    workdir = workdir.resolve()
    if zk is None:
        server = zkserver.running(workdir / "zookeeper")
        if server is None and zkserver.four_letter("127.0.0.1", 2181) == "imok":
            zk = "127.0.0.1:2181"
        else:
            port = 2181 if not zkserver.four_letter("127.0.0.1", 2181) else zkserver.free_port()
            print(f"starting ZooKeeper in {workdir / 'zookeeper'} ...", file=sys.stderr)
            server = server or zkserver.start(workdir / "zookeeper", port=port)
            zk = server.connect_string
    print(f"ZooKeeper: {zk}", file=sys.stderr)
    cfg = load(environ={}, overrides={
        "zookeeper": {"hosts": zk, "root": root or "/zkqueue-demo"},
        "work_dir": str(workdir / "work"),
        "storage": {"url": f"file://{workdir / 'storage'}"},
        "inventory": {"url": f"sqlite:///{workdir / 'inventory.db'}"},
        "mail": {"outbox": str(workdir / "outbox")},
        "http": {"retries": 2, "backoff_initial": 0.2, "backoff_max": 1.0},
        "worker": {"poll_interval": 2.0},
        "disk_threshold_percent": 99,
    })
    deposit = workdir / "deposit"
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(QuietHandler, directory=str(deposit)))
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    manifest = build_deposit(deposit, base)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with Queue.connect(cfg) as q:
            bid = q.submit(f"{base}/{manifest}", "demo", "demo-user",
                           notify_email="curator@example.org")
            print(f"submitted {base}/{manifest} as batch {bid}", file=sys.stderr)
            w = Worker(cfg, threads=threads, drain=True)
            t = threading.Thread(target=w.run, daemon=True)
            t.start()
            with tqdm(total=len(OBJECTS), desc=f"batch {bid}", unit="object") as bar:
                while t.is_alive():
                    doc = q.batch_status(bid)
                    settled = sum(n for s, n in doc["counts"].items() if s in JOB_SETTLED)
                    bar.update(settled - bar.n)
                    bar.set_postfix_str(doc["status"])
                    if doc["status"] in ("completed", "failed"):
                        w.stop()
                    time.sleep(0.3)
                doc = q.batch_status(bid)
                bar.update(sum(n for s, n in doc["counts"].items() if s in JOB_SETTLED) - bar.n)
    finally:
        httpd.shutdown()
    from .cli import status_table

    print(status_table(doc))
    inv = Inventory.open(cfg["inventory"]["url"])
    print("\nstored objects:")
    for j in doc["jobs"]:
        for v in inv.versions(j["ark"]) if j["ark"] and j["status"] == "completed" else []:
            print(f"  {j['local_id']}: {v.ark} version {v.version}, {len(v.files)} files under"
                  f" {workdir / 'storage'}")
    inv.close()
    print(f"\nsummary mail: {workdir / 'outbox'}")
    if zkserver.running(workdir / "zookeeper"):
        print(f"ZooKeeper keeps running for the next demo; stop it with:"
              f" zkqueue zk stop --data-dir {workdir / 'zookeeper'}")
    ok = doc["counts"].get("completed") == len(OBJECTS) - 1 and doc["counts"].get("failed") == 1
    return 0 if ok else 1
