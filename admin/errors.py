"""Why an admin command refused to act."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from zkqueue.transitions import NotFound


class Refused(Exception):
    """The command refused; nothing was written for the items it names.

    Raised before any write when a check fails (an illegal transition, a locked job, a batch
    with running jobs), so a refused command leaves the queue as it was.
    """


@contextmanager
def refuse_missing() -> Iterator[None]:
    """Around a read of a named job or batch: one that does not exist refuses the command."""
    try:
        yield
    except NotFound as e:
        raise Refused(str(e)) from e
