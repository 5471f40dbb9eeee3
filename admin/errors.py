"""Why an admin command refused to act."""

from __future__ import annotations


class Refused(Exception):
    """The command refused; nothing was written for the items it names.

    Raised before any write when a check fails (an illegal transition, a locked job, a batch
    with running jobs), so a refused command leaves the queue as it was.
    """
