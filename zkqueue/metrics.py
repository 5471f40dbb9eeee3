"""Per-process Prometheus metrics of a worker (DESIGN §7).

Each worker process counts what it did itself and serves its own ``/metrics`` (``worker.
metrics_port``); Prometheus sums across processes. Queue-wide gauges (jobs per status, oldest
pending, held collections) come from ZooKeeper and are exported once, by ``zkqueue serve``.
Labels never carry ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Steps take seconds to hours.
STEP_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)

TRANSITIONS = Counter(
    "zkqueue_transitions_total",
    "Status changes committed by this process",
    ["kind", "from_status", "to_status"],
)
STEP_SECONDS = Histogram(
    "zkqueue_step_duration_seconds",
    "Time a step handler ran",
    ["kind", "step"],
    buckets=STEP_BUCKETS,
)
FAILURES = Counter(
    "zkqueue_failures_total",
    "Items that failed, by step and error class",
    ["kind", "step", "error_class"],
)
RETRIES = Counter(
    "zkqueue_retries_total", "Transient errors retried inside a step", ["error_class"]
)
DOWNLOADED = Counter("zkqueue_downloaded_bytes_total", "Payload bytes downloaded")
STORED = Counter("zkqueue_stored_bytes_total", "Bytes written to storage")
DEFERRED = Counter("zkqueue_deferred_total", "Claims released without a change", ["kind", "step"])
CLAIMS_LOST = Counter("zkqueue_claims_lost_total", "Steps abandoned because the claim was lost")
HEARTBEAT = Gauge("zkqueue_worker_heartbeat_timestamp_seconds", "Last time the worker loop ran")
BUSY = Gauge("zkqueue_worker_busy_threads", "Worker threads running a step now")


def count_retry(url: str, exc: BaseException) -> None:
    RETRIES.labels(error_class=type(exc).__name__).inc()
