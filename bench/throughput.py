"""Queue throughput against raw ZooKeeper throughput, measured in one run on one server.

    python bench/throughput.py [--jobs 5000] [--json]

Starts its own standalone ZooKeeper (Debian's package) on a free port, measures raw kazoo
operations first (synchronous creates, pipelined creates, pipelined 3-op multis), then the
queue's own paths (submission, batch expansion, transitions, claim+transition+release), and
prints each rate with its ratio to the raw baselines. Absolute rates vary between machines;
the ratios are what to compare between runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kazoo.client import KazooClient  # noqa: E402

from zkqueue import claims, expansion, transitions, zkserver  # noqa: E402
from zkqueue.config import load  # noqa: E402
from zkqueue.layout import Layout  # noqa: E402
from zkqueue.payloads import JobSpec  # noqa: E402
from zkqueue.queue import Queue  # noqa: E402


def timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def raw_sync_creates(zk: KazooClient, n: int) -> float:
    zk.ensure_path("/raw/sync")
    return timed(lambda: [zk.create(f"/raw/sync/n{i}") for i in range(n)], n)


def raw_pipelined_creates(zk: KazooClient, n: int) -> float:
    zk.ensure_path("/raw/pipe")

    def run():
        for a in [zk.create_async(f"/raw/pipe/n{i}") for i in range(n)]:
            a.get()

    return timed(run, n)


def raw_pipelined_multi3(zk: KazooClient, n: int) -> float:
    zk.ensure_path("/raw/multi")

    def run():
        pending = []
        for i in range(n):
            tx = zk.transaction()
            tx.create(f"/raw/multi/a{i}")
            tx.create(f"/raw/multi/b{i}")
            tx.create(f"/raw/multi/c{i}")
            pending.append(tx.commit_async())
        for p in pending:
            p.get()

    return timed(run, n)


def pipeline(hosts: str, tmp: Path, n: int) -> float:
    """Whole jobs per second: a batch of n one-file objects served on loopback, every step
    for real (estimate, provision, download, mint, store in a folder, record in SQLite)."""
    import hashlib
    import http.server
    from functools import partial

    from zkqueue.demo import QuietHandler
    from zkqueue.worker import Worker

    deposit = tmp / "deposit"
    deposit.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(
        QuietHandler, directory=str(deposit)))
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    rows = []
    for i in range(n):
        data = f"object {i}\n".encode() * 100
        (deposit / f"f{i}.txt").write_bytes(data)
        rows.append(f"{base}/f{i}.txt | md5 | {hashlib.md5(data).hexdigest()} | | | f{i}.txt"
                    f" | | loc-{i} | | title {i} |")
    (deposit / "batch.checkm").write_text("\n".join([
        "#%checkm_0.7",
        "#%profile | http://uc3.cdlib.org/registry/ingest/manifest/mrt-single-file-batch-manifest",
        "#%fields | nfo:fileUrl | nfo:hashAlgorithm | nfo:hashValue | nfo:fileSize"
        " | nfo:fileLastModified | nfo:fileName | mrt:primaryIdentifier | mrt:localIdentifier"
        " | mrt:creator | mrt:title | mrt:date", *rows, "#%eof", ""]))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    cfg = load(environ={}, overrides={
        "zookeeper": {"hosts": hosts, "root": "/bench-pipeline"},
        "work_dir": str(tmp / "work"), "storage": {"url": f"file://{tmp / 'storage'}"},
        "inventory": {"url": f"sqlite:///{tmp / 'inventory.db'}"},
        "mail": {"outbox": str(tmp / "outbox")}, "disk_threshold_percent": 99,
        "worker": {"poll_interval": 1.0}, "logging": {"level": "WARNING"}})
    with Queue.connect(cfg) as q:
        bid = q.submit(f"{base}/batch.checkm", "demo")
        w = Worker(cfg, threads=4, drain=True)
        rate = timed(w.run, n)
        doc = q.batch_status(bid)
    httpd.shutdown()
    if doc["counts"] != {"completed": n}:
        raise SystemExit(f"pipeline run did not complete every job: {doc['counts']}")
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--pipeline-jobs", type=int, default=300,
                    help="objects ingested end to end by one 4-thread worker")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = args.jobs
    with tempfile.TemporaryDirectory() as tmp:
        server = zkserver.start(Path(tmp) / "zk", port=zkserver.free_port())
        try:
            zk = KazooClient(hosts=server.connect_string)
            zk.start(timeout=30)
            res: dict[str, float] = {}
            res["raw_sync_creates_per_s"] = raw_sync_creates(zk, min(n, 2000))
            res["raw_pipelined_creates_per_s"] = raw_pipelined_creates(zk, n)
            res["raw_pipelined_multi3_per_s"] = raw_pipelined_multi3(zk, n)

            cfg = load(environ={}, overrides={"zookeeper": {"hosts": server.connect_string,
                                                            "root": "/bench"}})
            q = Queue(zk, Layout("/bench"), cfg)
            subs = min(n, 1000)
            res["submissions_per_s"] = timed(
                lambda: [q.submit(f"http://127.0.0.1/b{i}", "demo") for i in range(subs)], subs)
            bid = q.submit("http://127.0.0.1/big.checkm", "demo")
            sub = q.batch(bid)["submission"]
            specs = [JobSpec(f"{i:06d}", f"http://127.0.0.1/o{i}", "file", f"o{i}", local_id=str(i))
                     for i in range(n)]
            res["expansion_jobs_per_s"] = timed(
                lambda: expansion.create_jobs(zk, q.layout, bid, sub, specs, Path(tmp)), n)
            jids = q.batch_job_ids(bid)
            half = jids[: len(jids) // 2]
            res["transitions_per_s"] = timed(
                lambda: [transitions.transition_job(zk, q.layout, j, "held") for j in half],
                len(half))

            rest = jids[len(jids) // 2:]
            lock = threading.Lock()

            def claim_cycle():
                while True:
                    with lock:
                        if not rest:
                            return
                        j = rest.pop()
                    c = claims.claim(zk, q.layout, "job", j, "pending")
                    if c:
                        transitions.transition_job(zk, q.layout, j, "estimating", claim=c,
                                                   release=True)

            def run_threads():
                ts = [threading.Thread(target=claim_cycle) for _ in range(4)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()

            res["claim_transition_release_per_s_4_threads"] = timed(run_threads, len(rest))
            res["pipeline_jobs_per_s_4_threads"] = pipeline(server.connect_string,
                                                            Path(tmp), args.pipeline_jobs)
            zk.stop()
        finally:
            zkserver.stop(Path(tmp) / "zk")
    base_sync, base_pipe = res["raw_sync_creates_per_s"], res["raw_pipelined_creates_per_s"]
    rows = {k: {"rate": round(v, 1), "vs_sync_create": round(v / base_sync, 3),
                "vs_pipelined_create": round(v / base_pipe, 3)} for k, v in res.items()}
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'measure':<44} {'per s':>10} {'/sync':>8} {'/pipe':>8}")
        for k, r in rows.items():
            print(f"{k:<44} {r['rate']:>10.1f} {r['vs_sync_create']:>8.3f}"
                  f" {r['vs_pipelined_create']:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
