"""The state machines of DESIGN §3 as data: the one table every write path checks.

Guarantee: :func:`check` is the only judge of whether a status change is legal; it raises
:class:`IllegalTransition` naming both states otherwise. Workers, admin commands and the API all
reach status writes through :mod:`zkqueue.transitions`, which calls it.
"""

from __future__ import annotations

from types import MappingProxyType

JOB = "job"
BATCH = "batch"

JOB_STEPS = (
    "pending",
    "estimating",
    "provisioning",
    "downloading",
    "processing",
    "storing",
    "recording",
    "notify",
)

_JOB = {
    "pending": ("held", "estimating", "failed"),
    "held": ("pending", "deleted"),
    "estimating": ("provisioning", "failed"),
    "provisioning": ("downloading", "failed"),
    "downloading": ("processing", "failed"),
    "processing": ("storing", "failed"),
    "storing": ("recording", "failed"),
    "recording": ("notify", "failed"),
    "notify": ("completed", "failed"),
    "failed": JOB_STEPS + ("deleted",),
    "completed": (),
    "deleted": (),
}

_BATCH = {
    "pending": ("held", "processing", "failed"),
    "held": ("pending", "deleted"),
    "processing": ("reporting", "failed"),
    "reporting": ("completed", "failed"),
    "failed": ("update-reporting", "deleted"),
    "update-reporting": ("completed", "failed"),
    "completed": (),
    "deleted": (),
}

TABLES = MappingProxyType(
    {
        JOB: MappingProxyType({k: frozenset(v) for k, v in _JOB.items()}),
        BATCH: MappingProxyType({k: frozenset(v) for k, v in _BATCH.items()}),
    }
)

JOB_STATUSES = tuple(_JOB)
BATCH_STATUSES = tuple(_BATCH)
TERMINAL = frozenset({"completed", "deleted"})
# A batch is done with a job once the job is in one of these.
JOB_SETTLED = frozenset({"completed", "failed", "deleted"})
BATCH_OUTCOMES = ("processing", "completed", "failed", "deleted")
# States a worker has work to do in.
JOB_ACTIVE = JOB_STEPS
BATCH_ACTIVE = ("pending", "processing", "reporting", "update-reporting")


class IllegalTransition(ValueError):
    """A status change the table does not allow."""

    def __init__(self, kind: str, ident: str, from_status: str, to_status: str):
        self.kind, self.ident = kind, ident
        self.from_status, self.to_status = from_status, to_status
        allowed = ", ".join(sorted(TABLES[kind].get(from_status, ()))) or "none (terminal)"
        super().__init__(
            f"{kind} {ident}: illegal transition {from_status} -> {to_status}"
            f" (from {from_status} it may go to: {allowed})"
        )


def allowed(kind: str, from_status: str) -> frozenset[str]:
    return TABLES[kind].get(from_status, frozenset())


def check(kind: str, ident: str, from_status: str, to_status: str) -> None:
    if to_status not in allowed(kind, from_status):
        raise IllegalTransition(kind, ident, from_status, to_status)


def batch_outcome(job_status: str) -> str:
    """Which ``/batches/<bid>/states/<outcome>`` dir a job of this status is listed in."""
    return job_status if job_status in JOB_SETTLED else "processing"


def next_step(status: str) -> str | None:
    """The forward status after ``status`` in the job pipeline (None after notify)."""
    if status == "notify":
        return "completed"
    if status in JOB_STEPS:
        return JOB_STEPS[JOB_STEPS.index(status) + 1]
    return None


def resume_status(last_successful: str | None) -> str:
    """Where a failed job resumes: the status after its last successful one (pending if none)."""
    if not last_successful or last_successful not in JOB_STEPS:
        return "pending"
    nxt = next_step(last_successful)
    return nxt if nxt in JOB_STEPS else "notify"
