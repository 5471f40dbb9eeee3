"""The outside parts a worker talks to, built once per process from the configuration.

Each part is opened on first use, so a worker serving only some steps never touches the others,
and a mis-configured part fails the first step that needs it with a message naming the setting.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from kazoo.client import KazooClient

from .config import Config, ConfigError
from .layout import Layout


class Services:
    def __init__(self, cfg: Config, zk: KazooClient, layout: Layout | None = None):
        self.cfg, self.zk = cfg, zk
        self.layout = layout or Layout(cfg.zk_root)
        # Set by a worker: waits out a connection loss; True if the given session survived.
        self.await_session: Callable[[int], bool] | None = None

    @cached_property
    def fetcher(self):
        from handlers.fetch import Fetcher, HttpSettings, UrlPolicy

        from . import metrics

        h = self.cfg["http"]
        settings = HttpSettings(**{k: h[k] for k in HttpSettings.__dataclass_fields__ if k in h})
        pay = self.cfg["payloads"]
        policy = UrlPolicy(bool(pay.get("allow_file_urls")), pay.get("allowed_hosts") or [])
        return Fetcher(settings, policy, on_retry=metrics.count_retry)

    @cached_property
    def store(self):
        from .storage import open_store

        s = self.cfg["storage"]
        return open_store(s["url"], endpoint_url=s.get("endpoint_url"), region=s.get("region"),
                          base_dir=self.cfg.base_dir)

    @cached_property
    def inventory(self):
        from .inventory import Inventory

        return Inventory.from_config(self.cfg)

    @cached_property
    def minter(self):
        from .minter import open_minter

        return open_minter(self.cfg["minter"], self.zk, self.layout.counter("minter"))

    @cached_property
    def mailer(self):
        from .mail import open_mailer

        return open_mailer(self.cfg["mail"], base_dir=self.cfg.base_dir)

    @cached_property
    def zip_limits(self):
        from handlers.unzip import ZipLimits

        z = self.cfg["zip"]
        return ZipLimits(**{k: z[k] for k in ZipLimits.__dataclass_fields__ if k in z})

    def check(self) -> None:
        """Build every part that needs no network, so a mistake in the configuration stops the
        worker at start with a message naming it, not each job later as an internal error."""
        from .storage import StorageError

        for name in ("fetcher", "store", "minter", "mailer", "zip_limits"):
            try:
                getattr(self, name)
            except (ValueError, TypeError, KeyError, StorageError) as e:
                raise ConfigError(f"{name} configuration in {self.cfg.source}: {e}") from e

    @property
    def work_dir(self):
        return self.cfg.path("work_dir")

    def close(self) -> None:
        inv = self.__dict__.get("inventory")
        if inv is not None:
            inv.close()
