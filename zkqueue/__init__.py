"""zkqueue: a ZooKeeper-coordinated ingest queue for digital-preservation repositories."""

__version__ = "0.1.0"
