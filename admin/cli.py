"""``zkqueue admin``: operating the queue (placeholder until the admin commands land)."""

import click


@click.group()
def admin() -> None:
    """Hold, release, requeue, delete, inspect and check the queue."""
