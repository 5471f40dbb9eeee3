"""Configuration: defaults, the shipped files, environment overrides, secrets kept out."""

from __future__ import annotations

from pathlib import Path

import pytest

from zkqueue.config import ConfigError, load

CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_shipped_files_load_and_resolve_paths_against_the_file():
    cfg = load(CONFIG / "zkqueue.yaml", environ={})
    assert cfg.path("work_dir") == (CONFIG.parent / "var" / "work").resolve()
    assert cfg.profile("demo")["priority"] == 5
    prod = load(CONFIG / "production.example.yaml", environ={})
    assert prod.zk_hosts.count(",") == 2
    with pytest.raises(ConfigError, match="profile 'demo' is not configured"):
        prod.profile("demo")


def test_environment_overrides_any_key_and_short_forms():
    env = {"ZKQUEUE_ZK": "zk9:2181", "ZKQUEUE_ROOT": "/other",
           "ZKQUEUE_STORAGE__URL": "s3://b/p", "ZKQUEUE_WORKER__THREADS": "7",
           "ZKQUEUE_MINTER__PASSWORD": "hunter2"}
    cfg = load(CONFIG / "zkqueue.yaml", environ=env)
    assert (cfg.zk_hosts, cfg.zk_root) == ("zk9:2181", "/other")
    assert cfg["storage"]["url"] == "s3://b/p"
    assert cfg["worker"]["threads"] == 7
    assert cfg["minter"]["password"] == "hunter2"
    assert "hunter2" not in repr(cfg.redacted())


def test_bad_configuration_names_the_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("disk_threshold_percent: 170\n")
    with pytest.raises(ConfigError, match=r"disk_threshold_percent in .*bad.yaml"):
        load(bad, environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("zookeeper: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(broken, environ={})
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load(tmp_path / "missing.yaml", environ={})
