"""Who runs an admin command, as recorded in holds, the pause and status messages."""

from __future__ import annotations

import getpass
import socket


def actor() -> str:
    """user@host of whoever runs the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
