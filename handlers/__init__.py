"""The ingest steps, one module each; the worker finds them here by status.

Every handler takes the context of an item the worker has claimed and returns an
:class:`~handlers.context.Outcome`; it must be safe to run again after a crash.
"""

from __future__ import annotations

from collections.abc import Callable

JOB_HANDLERS: dict[str, Callable] = {}
BATCH_HANDLERS: dict[str, Callable] = {}


def load() -> tuple[dict[str, Callable], dict[str, Callable]]:
    """The handler tables (imported on first use, so the package imports cheaply)."""
    if not JOB_HANDLERS:
        from handlers import admit, batch, download, estimate, notify, process, provision, record
        from handlers import store as store_step

        JOB_HANDLERS.update({
            "pending": admit.admit,
            "estimating": estimate.estimate,
            "provisioning": provision.provision,
            "downloading": download.download,
            "processing": process.process,
            "storing": store_step.store,
            "recording": record.record,
            "notify": notify.notify,
        })
        BATCH_HANDLERS.update({
            "pending": batch.admit,
            "processing": batch.expand_batch,
            "reporting": batch.report,
            "update-reporting": batch.report,
        })
    return JOB_HANDLERS, BATCH_HANDLERS
