"""Worker processes for crash tests: real `zkqueue worker` processes, real signals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_config(cfg, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.data))
    return path


def start_worker(config_file: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "zkqueue.cli", "--config", str(config_file), "worker", *args],
        stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL, env=env, cwd=ROOT)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
