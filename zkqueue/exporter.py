"""Queue-wide Prometheus gauges read from ZooKeeper at scrape time (DESIGN §7).

Exported once, by ``zkqueue serve`` (workers export their own per-process counters). See
``docs/metrics.md`` for the reasoning.

Guarantees:

* Read-only: a scrape never writes to ZooKeeper.
* Jobs and batches per status come from ``stat.numChildren`` of the state dirs; those dirs are
  never listed. The one listing is of the pending dir, for the oldest pending job, and only when
  every entry seen at the previous listing has left it (see :class:`OldestPending`), so its cost
  follows the queue's throughput, not the scrape rate; above ``scan_limit`` entries it is skipped.
* A scrape is bounded in time (``timeout`` per round of pipelined reads); when ZooKeeper cannot
  be read, ``zkqueue_zookeeper_up`` is 0 and the queue gauges are absent rather than wrong.
* Labels carry statuses only, never ids: worker processes are counted, not named.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import ZnodeStat
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import states
from .layout import Layout, decode

log = logging.getLogger("zkqueue.exporter")

DEFAULT_TIMEOUT = 5.0
DEFAULT_SCAN_LIMIT = 20_000
WALK_CHUNK = 100
STAT_CHUNK = 2_000

# name -> (help, label names); the single list of what this collector exports.
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "zkqueue_jobs": ("Jobs per status (numChildren of the state dir)", ("status",)),
    "zkqueue_batches": ("Batches per status (numChildren of the state dir)", ("status",)),
    "zkqueue_held_collections": ("Collections on hold", ()),
    "zkqueue_queue_paused": ("1 while the whole queue is paused, else 0", ()),
    "zkqueue_workers": ("Live worker processes (heartbeat nodes in ZooKeeper)", ()),
    "zkqueue_worker_threads": ("Worker threads of the live worker processes", ()),
    "zkqueue_worker_heartbeat_max_age_seconds": (
        "Age of the stalest live worker heartbeat (absent without workers)", ()),
    "zkqueue_oldest_pending_job_age_seconds": (
        "Time the longest-waiting pending job has been pending (0 when none is)", ()),
    "zkqueue_zookeeper_up": ("1 when this scrape could read the queue from ZooKeeper", ()),
    "zkqueue_exporter_scrape_duration_seconds": ("Time this scrape spent reading ZooKeeper", ()),
}


class ScrapeFailed(RuntimeError):
    """ZooKeeper could not be read within the scrape's time budget."""


def _wait(futures: Iterable, timeout: float) -> list[ZnodeStat | tuple | list | None]:
    """Results of pipelined kazoo calls; a missing node gives None."""
    out = []
    for f in futures:
        try:
            out.append(f.get(timeout=timeout))
        except NoNodeError:
            out.append(None)
        except (KazooException, KazooTimeoutError) as e:
            raise ScrapeFailed(f"{type(e).__name__}: {e}") from e
    return out


@dataclass(frozen=True)
class _Entry:
    czxid: int
    ctime_ms: int
    name: str


class OldestPending:
    """The creation time of the longest-waiting entry of one state dir, cheaply.

    ZooKeeper orders writes by zxid, so the oldest entry is the one with the smallest ``czxid``
    and any entry created after a listing is younger than every entry that listing saw. A listing
    therefore yields a queue of candidates sorted by ``czxid``; later calls:

    * dir ``cversion`` unchanged: no child came or went, the head candidate is still the oldest
      (one ``exists`` on the dir, nothing else);
    * changed: drop candidates that left (pipelined ``exists`` in chunks, each departure checked
      once) until one is still there with the same ``czxid``: it is the oldest;
    * no candidate left but the dir is not empty: list again and ``stat`` the entries, unless
      there are more than ``scan_limit`` (then the age is unknown for this scrape).

    Each entry is listed and stat'ed at most once while it waits, whatever the scrape rate.
    """

    def __init__(self, zk: KazooClient, path: str, scan_limit: int = DEFAULT_SCAN_LIMIT):
        self.zk, self.path, self.scan_limit = zk, path, scan_limit
        self._candidates: deque[_Entry] = deque()
        self._cversion: int | None = None
        self.listings = 0

    def oldest_ctime(self, timeout: float) -> float | None:
        """Creation time (epoch seconds, ZooKeeper's clock) of the oldest entry, ``0.0`` when
        the dir is empty, None when unknown (dir above the scan limit)."""
        (stat,) = _wait([self.zk.exists_async(self.path)], timeout)
        if stat is None or stat.numChildren == 0:
            self._candidates.clear()
            self._cversion = stat.cversion if stat else None
            return 0.0
        if stat.cversion != self._cversion:
            self._drop_departed(timeout)
        if not self._candidates:
            if stat.numChildren > self.scan_limit:
                log.warning("pending dir has %d entries, above the scan limit %d: oldest"
                            " pending age not computed", stat.numChildren, self.scan_limit)
                return None
            self._list(timeout)
        self._cversion = stat.cversion
        return self._candidates[0].ctime_ms / 1000.0 if self._candidates else 0.0

    def _drop_departed(self, timeout: float) -> None:
        while self._candidates:
            chunk = list(self._candidates)[:WALK_CHUNK]
            stats = _wait([self.zk.exists_async(f"{self.path}/{e.name}") for e in chunk],
                          timeout)
            for entry, st in zip(chunk, stats, strict=True):
                if st is not None and st.czxid == entry.czxid:
                    return
                self._candidates.popleft()

    def _list(self, timeout: float) -> None:
        (names,) = _wait([self.zk.get_children_async(self.path)], timeout)
        found: list[_Entry] = []
        names = names or []
        for i in range(0, len(names), STAT_CHUNK):
            chunk = names[i:i + STAT_CHUNK]
            stats = _wait([self.zk.exists_async(f"{self.path}/{n}") for n in chunk], timeout)
            found += [_Entry(st.czxid, st.ctime, n)
                      for n, st in zip(chunk, stats, strict=True) if st is not None]
        found.sort(key=lambda e: e.czxid)
        self._candidates = deque(found)
        self.listings += 1


class QueueCollector(Collector):
    """A prometheus_client collector of the queue's ZooKeeper-derived gauges.

    Safe to scrape from several threads at once (scrapes are serialised). Register it in a
    registry of its own (not the process-global one, which holds a worker's counters).
    """

    def __init__(self, zk: KazooClient, layout: Layout, *, timeout: float = DEFAULT_TIMEOUT,
                 scan_limit: int = DEFAULT_SCAN_LIMIT):
        self.zk, self.layout, self.timeout = zk, layout, timeout
        self.pending = OldestPending(zk, layout.job_state_dir("pending"), scan_limit)
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return [self._family(name) for name in GAUGES]

    @staticmethod
    def _family(name: str) -> GaugeMetricFamily:
        help_text, labels = GAUGES[name]
        return GaugeMetricFamily(name, help_text, labels=list(labels) if labels else None)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            t0 = time.monotonic()
            try:
                if not self.zk.connected:
                    raise ScrapeFailed("not connected to ZooKeeper")
                values = self._read()
            except ScrapeFailed as e:
                log.warning("scrape of ZooKeeper failed: %s", e)
                values = {}
            elapsed = time.monotonic() - t0
        up = self._family("zkqueue_zookeeper_up")
        up.add_metric([], 1.0 if values else 0.0)
        yield up
        took = self._family("zkqueue_exporter_scrape_duration_seconds")
        took.add_metric([], elapsed)
        yield took
        for name, samples in values.items():
            fam = self._family(name)
            for labels, value in samples:
                fam.add_metric(labels, value)
            yield fam

    def _read(self) -> dict[str, list[tuple[list[str], float]]]:
        lay, t = self.layout, self.timeout
        job_dirs = [lay.job_state_dir(s) for s in states.JOB_STATUSES]
        batch_dirs = [lay.batch_state_dir(s) for s in states.BATCH_STATUSES]
        fixed = [lay.collection_holds, lay.queue_pause, lay.workers]
        stats = _wait([self.zk.exists_async(p) for p in job_dirs + batch_dirs + fixed], t)
        n = len(job_dirs)
        job_stats, batch_stats = stats[:n], stats[n:n + len(batch_dirs)]
        holds, pause, workers = stats[n + len(batch_dirs):]

        def children(st: ZnodeStat | None) -> float:
            return float(st.numChildren) if st else 0.0

        out: dict[str, list[tuple[list[str], float]]] = {
            "zkqueue_jobs": [([s], children(st))
                             for s, st in zip(states.JOB_STATUSES, job_stats, strict=True)],
            "zkqueue_batches": [([s], children(st))
                                for s, st in zip(states.BATCH_STATUSES, batch_stats, strict=True)],
            "zkqueue_held_collections": [([], children(holds))],
            "zkqueue_queue_paused": [([], 1.0 if pause is not None else 0.0)],
        }
        out.update(self._workers(workers))
        oldest = self.pending.oldest_ctime(t)
        if oldest is not None:
            age = max(0.0, time.time() - oldest) if oldest else 0.0
            out["zkqueue_oldest_pending_job_age_seconds"] = [([], age)]
        return out

    def _workers(self, stat: ZnodeStat | None) -> dict[str, list[tuple[list[str], float]]]:
        if stat is None or stat.numChildren == 0:
            return {"zkqueue_workers": [([], 0.0)], "zkqueue_worker_threads": [([], 0.0)]}
        (names,) = _wait([self.zk.get_children_async(self.layout.workers)], self.timeout)
        nodes = [n for n in _wait([self.zk.get_async(f"{self.layout.workers}/{name}")
                                   for name in names or []], self.timeout) if n is not None]
        threads = 0
        for data, _ in nodes:
            doc = decode(data)
            if isinstance(doc, dict) and isinstance(doc.get("threads"), int):
                threads += doc["threads"]
        out = {"zkqueue_workers": [([], float(len(nodes)))],
               "zkqueue_worker_threads": [([], float(threads))]}
        if nodes:
            age = max(0.0, time.time() - min(st.mtime for _, st in nodes) / 1000.0)
            out["zkqueue_worker_heartbeat_max_age_seconds"] = [([], age)]
        return out
