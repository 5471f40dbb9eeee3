"""Metrics after a known run, the exporter's ZooKeeper reads, and the config files' metric names."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from kazoo.client import KazooClient
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_config, run_worker
from zkqueue import metrics, states, zkserver
from zkqueue.exporter import GAUGES, QueueCollector
from zkqueue.inventory import Inventory
from zkqueue.layout import Layout
from zkqueue.worker import Worker

CONFIG = Path(__file__).resolve().parents[1] / "config"
MERRITT_SIZES = {"4blocks.jpg": 119255, "4blocks.txt": 265, "tumbleBug.jpg": 50165}


class Recorder:
    """The real client, with every call it receives written down (method, first argument)."""

    def __init__(self, zk: KazooClient):
        self._zk, self.calls = zk, []

    def __getattr__(self, name: str):
        attr = getattr(self._zk, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.calls.append((name, args[0] if args else None))
            return attr(*args, **kwargs)

        return call


def scrape(collector: QueueCollector) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in registry.collect() for s in fam.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


class Deltas:
    """Worker metrics are module-level: compare values before and after."""

    def __init__(self):
        self.before = self._all()

    @staticmethod
    def _all() -> dict[tuple[str, tuple], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in REGISTRY.collect() for s in fam.samples
                if s.name.startswith("zkqueue_")}

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self._all().get(key, 0.0) - self.before.get(key, 0.0)

    def total(self, name: str) -> float:
        """The change summed over every label set."""
        now = self._all()
        return sum(v - self.before.get(k, 0.0) for k, v in now.items() if k[0] == name)


# -- a known run -------------------------------------------------------------------------------

def test_metrics_after_a_known_run(merritt, queue, cfg, tmp_path):
    delta = Deltas()
    merritt.fail_next("/call911.jpg", status=404, method="HEAD")
    for name in ("4blocks.checkm", "tumbleBug.jpg", "call911.checkm"):
        queue.submit(f"{merritt.url}/{name}", "demo", "tester")
    run_worker(cfg)

    got = scrape(QueueCollector(queue.zk, queue.layout))
    jobs = {s: value(got, "zkqueue_jobs", status=s) for s in states.JOB_STATUSES}
    assert jobs == {s: {"completed": 2.0, "failed": 1.0}.get(s, 0.0) for s in jobs}
    batches = {s: value(got, "zkqueue_batches", status=s) for s in states.BATCH_STATUSES}
    assert batches == {s: {"completed": 2.0, "failed": 1.0}.get(s, 0.0) for s in batches}
    assert value(got, "zkqueue_oldest_pending_job_age_seconds") == 0.0
    assert value(got, "zkqueue_workers") == 0.0, "the drained worker removed its heartbeat"
    assert value(got, "zkqueue_zookeeper_up") == 1.0

    def job_moves(frm: str, to: str) -> float:
        return delta("zkqueue_transitions_total", kind="job", from_status=frm, to_status=to)

    assert job_moves("pending", "estimating") == 3
    assert job_moves("estimating", "failed") == 1
    assert job_moves("estimating", "provisioning") == 2
    assert job_moves("notify", "completed") == 2
    assert delta("zkqueue_transitions_total", kind="batch", from_status="reporting",
                 to_status="completed") == 2
    assert delta("zkqueue_transitions_total", kind="batch", from_status="reporting",
                 to_status="failed") == 1
    assert delta("zkqueue_failures_total", kind="job", step="estimating",
                 error_class="fetch_permanent") == 1
    assert delta.total("zkqueue_failures_total") == 1
    assert delta.total("zkqueue_claims_lost_total") == 0
    assert delta("zkqueue_downloaded_bytes_total") == sum(MERRITT_SIZES.values())
    inv = Inventory.open(cfg["inventory"]["url"])
    recorded = sum(f.size for j in queue.list_jobs("completed") for v in inv.versions(j["ark"])
                   for f in v.files)
    inv.close()
    # every byte written to storage: the recorded files plus each version's storage manifest
    in_storage = sum(p.stat().st_size for p in (tmp_path / "storage").rglob("*") if p.is_file())
    manifests = sum(p.stat().st_size for p in (tmp_path / "storage").rglob("mrt-manifest.txt"))
    assert delta("zkqueue_stored_bytes_total") == in_storage == recorded + manifests
    for step, n in (("estimating", 3), ("downloading", 2), ("storing", 2), ("notify", 2)):
        assert delta("zkqueue_step_duration_seconds_count", kind="job", step=step) == n
        assert delta("zkqueue_step_duration_seconds_bucket", kind="job", step=step,
                     le="+Inf") == n
    assert delta("zkqueue_step_duration_seconds_sum", kind="job", step="downloading") > 0
    assert delta("zkqueue_step_duration_seconds_count", kind="batch", step="reporting") >= 3


# -- the exporter --------------------------------------------------------------------------------

def test_exporter_reads_counts_without_listing_and_never_writes(queue, zk, zk_root):
    lay = Layout(zk_root)
    for i in range(3):
        queue.submit(f"https://example.org/{i}.checkm", "demo")
    for i, status in enumerate(["completed"] * 5 + ["failed"] * 2):
        zk.create(lay.job_state_entry(status, 5, f"jid{i:010d}"), makepath=True)
    spy = Recorder(zk)
    collector = QueueCollector(spy, lay)
    got = scrape(collector)
    assert value(got, "zkqueue_batches", status="pending") == 3
    assert value(got, "zkqueue_jobs", status="completed") == 5
    assert value(got, "zkqueue_jobs", status="failed") == 2
    assert value(got, "zkqueue_oldest_pending_job_age_seconds") == 0.0
    first = len(spy.calls)
    futures = [zk.create_async(lay.job_state_entry("completed", 5, f"jid{i:010d}"))
               for i in range(100, 400)]
    assert all(f.get() for f in futures)
    assert value(scrape(collector), "zkqueue_jobs", status="completed") == 305
    assert len(spy.calls) == 2 * first, "a scrape costs the same whatever the dirs hold"
    listed = {path for name, path in spy.calls if name.startswith("get_children")}
    assert listed <= {lay.workers}, listed
    written = {name for name, _ in spy.calls
               if name.split("_")[0] in ("create", "set", "delete", "ensure", "transaction")}
    assert written == set()


def test_oldest_pending_age_follows_entries_not_names(zk, zk_root):
    lay = Layout(zk_root)
    pending = lay.job_state_dir("pending")
    zk.ensure_path(pending)
    spy = Recorder(zk)
    collector = QueueCollector(spy, lay)
    _, old = zk.create(f"{pending}/50-jid0000000001", include_data=True)
    time.sleep(0.4)
    _, new = zk.create(f"{pending}/00-jid0000000002", include_data=True)

    def age() -> float:
        return value(scrape(collector), "zkqueue_oldest_pending_job_age_seconds")

    def expected(stat) -> float:
        return time.time() - stat.ctime / 1000.0

    assert age() == pytest.approx(expected(old), abs=0.2)  # the low-priority one waited longest
    assert collector.pending.listings == 1
    assert age() == pytest.approx(expected(old), abs=0.2)
    zk.create(f"{pending}/00-jid0000000003")
    assert age() == pytest.approx(expected(old), abs=0.2)
    zk.delete(f"{pending}/50-jid0000000001")
    assert age() == pytest.approx(expected(new), abs=0.2)
    assert collector.pending.listings == 1, "departures are checked, the dir is not listed again"
    zk.delete(f"{pending}/00-jid0000000002")
    zk.delete(f"{pending}/00-jid0000000003")
    assert age() == 0.0
    _, back = zk.create(f"{pending}/05-jid0000000001", include_data=True)
    assert age() == pytest.approx(expected(back), abs=0.2)
    assert collector.pending.listings == 2
    listings = [p for name, p in spy.calls if name.startswith("get_children") and p == pending]
    assert len(listings) == 2

    capped = QueueCollector(zk, lay, scan_limit=0)
    assert value(scrape(capped), "zkqueue_oldest_pending_job_age_seconds") is None
    assert value(scrape(capped), "zkqueue_jobs", status="pending") == 1


def test_exporter_sees_holds_pause_and_live_workers(cfg, zk, zk_root):
    lay = Layout(zk_root)
    collector = QueueCollector(zk, lay)
    zk.create(lay.collection_hold("demo"), makepath=True)
    zk.create(lay.collection_hold("other"), makepath=True)
    zk.create(lay.queue_pause, makepath=True)
    port = zkserver.free_port()
    wcfg = make_config(Path(cfg["work_dir"]).parent, cfg.zk_hosts, zk_root,
                       worker={"metrics_port": port, "metrics_addr": "127.0.0.1"})
    worker = Worker(wcfg, threads=3)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while value(scrape(collector), "zkqueue_workers") != 1.0:
            assert time.monotonic() < deadline, "worker heartbeat not seen"
            time.sleep(0.05)
        got = scrape(collector)
        assert value(got, "zkqueue_worker_threads") == 3.0
        assert 0 <= value(got, "zkqueue_worker_heartbeat_max_age_seconds") < 5
        assert value(got, "zkqueue_held_collections") == 2.0
        assert value(got, "zkqueue_queue_paused") == 1.0
        own = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        names = {f.name for f in text_string_to_metric_families(own)}
        assert {"zkqueue_worker_heartbeat_timestamp_seconds", "zkqueue_transitions"} <= names
    finally:
        worker.stop()
        thread.join(15)
    assert not thread.is_alive()
    got = scrape(collector)
    assert value(got, "zkqueue_workers") == 0.0
    assert value(got, "zkqueue_worker_heartbeat_max_age_seconds") is None
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_worker_refuses_to_start_when_its_metrics_port_is_taken(cfg, zk_root):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        wcfg = make_config(Path(cfg["work_dir"]).parent, cfg.zk_hosts, zk_root,
                           worker={"metrics_port": port, "metrics_addr": "127.0.0.1"})
        assert Worker(wcfg, threads=1).run() == 1


def test_scrape_without_zookeeper_says_so(zk_hosts, zk_root):
    client = KazooClient(hosts=zk_hosts, timeout=10)
    client.start(timeout=30)
    collector = QueueCollector(client, Layout(zk_root), timeout=1.0)
    assert value(scrape(collector), "zkqueue_zookeeper_up") == 1.0
    client.stop()
    got = scrape(collector)
    client.close()
    assert value(got, "zkqueue_zookeeper_up") == 0.0
    assert {name for name, _ in got} == {"zkqueue_zookeeper_up",
                                         "zkqueue_exporter_scrape_duration_seconds"}


# -- dashboard and alerts use only what the code exports ------------------------------------------

def exported_sample_names() -> set[str]:
    names = set(GAUGES)
    for obj in vars(metrics).values():
        if not isinstance(obj, Counter | Gauge | Histogram):
            continue
        for fam in obj.describe():
            if fam.type == "counter":
                names |= {fam.name + "_total"}
            elif fam.type == "histogram":
                names |= {fam.name + s for s in ("_bucket", "_count", "_sum")}
            else:
                names.add(fam.name)
    return names


def used_names(expr: str) -> set[str]:
    return set(re.findall(r"\bzkqueue_[a-z_]+\b", expr))


def dashboard_exprs() -> list[str]:
    doc = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    panels = [p for p in doc["panels"] if p.get("type") != "row"]
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    return [t["expr"] for p in panels for t in p["targets"]]


def test_dashboard_and_alerts_use_only_exported_metrics():
    exported = exported_sample_names()
    assert {"zkqueue_transitions_total", "zkqueue_step_duration_seconds_bucket",
            "zkqueue_jobs", "zkqueue_oldest_pending_job_age_seconds"} <= exported
    exprs = dashboard_exprs()
    rules = [r for g in yaml.safe_load((CONFIG / "alerts.yml").read_text())["groups"]
             for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"ZkqueueStuck", "ZkqueueNoWorkers",
                                           "ZkqueueWorkerHeartbeatStale",
                                           "ZkqueueFailureRateHigh"}
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"]
    exprs += [r["expr"] for r in rules]
    for expr in exprs:
        assert used_names(expr), expr
        assert used_names(expr) <= exported, (expr, used_names(expr) - exported)
    used = set().union(*map(used_names, dashboard_exprs()))
    assert {"zkqueue_jobs", "zkqueue_workers", "zkqueue_oldest_pending_job_age_seconds",
            "zkqueue_step_duration_seconds_bucket", "zkqueue_failures_total"} <= used
    assert any("histogram_quantile" in e for e in dashboard_exprs())
