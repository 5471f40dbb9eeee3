"""Configuration: one YAML file, defaults for every key, environment overrides.

Guarantees: every key has a default (the embedded, one-machine set-up); relative paths are
resolved against the directory of the YAML file (or the working directory without one); an
environment variable ``ZKQUEUE_<SECTION>__<KEY>`` (YAML-parsed) overrides any key, and the short
forms ``ZKQUEUE_ZK`` / ``ZKQUEUE_ROOT`` override the ZooKeeper hosts and root. Secrets are read
from the file or the environment only and never appear in :meth:`Config.redacted`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "zookeeper": {"hosts": "127.0.0.1:2181", "root": "/zkqueue", "session_timeout": 15.0},
    "zk_server": {"data_dir": "var/zookeeper", "port": 2181},
    "work_dir": "var/work",
    "disk_threshold_percent": 70,
    "storage": {"url": "file://var/storage", "endpoint_url": None, "region": None},
    "minter": {"type": "local", "shoulder": "ark:/99999/fk4"},
    "inventory": {"url": "sqlite:///var/inventory.db"},
    "mail": {"outbox": "var/outbox"},
    "payloads": {"allow_file_urls": False, "allowed_hosts": []},
    "http": {
        "timeout": 30.0,
        "retries": 4,
        "backoff_initial": 0.5,
        "backoff_max": 30.0,
        "threads": 4,
        "max_manifest_bytes": 16 * 2**20,
    },
    "zip": {"max_total_bytes": 50 * 2**30, "max_files": 100_000, "max_ratio": 200.0},
    "worker": {
        "threads": 2,
        "poll_interval": 30.0,
        "provision_retry": 30.0,
        "metrics_port": 0,
        "metrics_addr": "0.0.0.0",
    },
    "api": {"token": None, "token_env": None, "max_body_bytes": 65536},
    "exporter": {"timeout": 5.0, "pending_scan_limit": 20_000},
    "limits": {
        "max_state_dir": 20_000,
        "expansion_chunk": 40,
        "message_bytes": 4096,
    },
    "profiles": {"demo": {"priority": 5, "notify_email": None, "callback_secret": None}},
    "logging": {"level": "INFO", "format": "json"},
}

SECRET_KEYS = {"password", "secret", "callback_secret", "token", "api_token", "user_password"}
PATH_KEYS = {("work_dir",), ("zk_server", "data_dir"), ("mail", "outbox")}


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and the file."""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: dict[str, str]) -> dict:
    over: dict = {}
    if "ZKQUEUE_ZK" in environ:
        over.setdefault("zookeeper", {})["hosts"] = environ["ZKQUEUE_ZK"]
    if "ZKQUEUE_ROOT" in environ:
        over.setdefault("zookeeper", {})["root"] = environ["ZKQUEUE_ROOT"]
    for name, raw in environ.items():
        if not name.startswith("ZKQUEUE_") or "__" not in name:
            continue
        parts = [p.lower() for p in name[len("ZKQUEUE_") :].split("__")]
        node = over
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        key = parts[-1]
        # Secrets stay strings: YAML would turn a numeric token into an int, "yes" into True.
        node[key] = raw if key in SECRET_KEYS or not raw else yaml.safe_load(raw)
    return over


@dataclass
class Config:
    """The resolved settings; ``data`` is the merged dict, ``base_dir`` anchors relative paths."""

    data: dict = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    base_dir: Path = field(default_factory=Path.cwd)
    source: str = "<defaults>"

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def path(self, *keys: str) -> Path:
        """A path setting, absolute."""
        value: Any = self.data
        for key in keys:
            value = value[key]
        p = Path(os.path.expanduser(str(value)))
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def zk_hosts(self) -> str:
        return str(self.data["zookeeper"]["hosts"])

    @property
    def zk_root(self) -> str:
        root = "/" + str(self.data["zookeeper"]["root"]).strip("/")
        return root

    def profile(self, name: str) -> dict:
        profiles = self.data.get("profiles") or {}
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(
                f"profile {name!r} is not configured in {self.source} (known: {known})"
            )
        return dict(profiles[name] or {})

    def redacted(self) -> dict:
        """The settings with every secret replaced by '***', safe to log or print (passwords in
        URLs too: ``postgresql://user:***@host/db``)."""
        from .inventory import redact_url

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: ("***" if k in SECRET_KEYS and v else walk(v)) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            if isinstance(node, str) and "://" in node:
                return redact_url(node)
            return node

        return walk(self.data)


def load(
    path: str | Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict | None = None,
) -> Config:
    """Defaults, then the YAML file (``path`` or ``$ZKQUEUE_CONFIG``), then the environment,
    then ``overrides`` (command-line options)."""
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get("ZKQUEUE_CONFIG")
    data = copy.deepcopy(DEFAULTS)
    base_dir = Path.cwd()
    source = "<defaults>"
    if path:
        p = Path(path).expanduser().resolve()
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"cannot read configuration {p}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"configuration {p} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"configuration {p} must be a mapping of keys, found {type(loaded).__name__}"
            )
        if "profiles" in loaded:
            data["profiles"] = {}
        data = _merge(data, loaded)
        base_dir, source = p.parent, str(p)
    data = _merge(data, _env_overrides(environ))
    data = _merge(data, overrides or {})
    cfg = Config(data=data, base_dir=base_dir, source=source)
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    pct = cfg["disk_threshold_percent"]
    if not isinstance(pct, int | float) or not 0 < pct <= 100:
        raise ConfigError(
            f"disk_threshold_percent in {cfg.source} must be in (0, 100], found {pct!r}"
        )
    if not str(cfg["zookeeper"]["root"]).startswith("/"):
        raise ConfigError(f"zookeeper.root in {cfg.source} must start with '/'")
    for name, prof in (cfg.get("profiles") or {}).items():
        if prof is not None and not isinstance(prof, dict):
            raise ConfigError(f"profiles.{name} in {cfg.source} must be a mapping")
