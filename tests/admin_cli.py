"""Run ``zkqueue admin ...`` (and other ``zkqueue`` commands) in-process for the admin tests,
against the session's real ZooKeeper, with the test configuration written to a YAML file."""

from __future__ import annotations

import json
import logging

import yaml
from click.testing import CliRunner, Result

from zkqueue.cli import main


class Cli:
    """``cli("admin", "holds", code=0)`` runs the command and checks its exit code."""

    def __init__(self, cfg, tmp_path):
        self.cfg = cfg
        self.path = tmp_path / "zkqueue.yaml"
        self.path.write_text(yaml.safe_dump(cfg.data))

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> Result:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level  # the CLI points logging at its stderr
        try:
            r = CliRunner().invoke(main, ["--config", str(self.path), "--zk", self.cfg.zk_hosts,
                                          "--root", self.cfg.zk_root, *args], input=input)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        assert r.exit_code == code, (args, r.exit_code, r.stdout, r.stderr, r.exception)
        return r

    def json(self, *args: str, code: int = 0, input: str | None = None):
        """Run with --json; stdout must be exactly one JSON document."""
        return json.loads(self(*args, "--json", code=code, input=input).stdout)
