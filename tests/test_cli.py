"""The zkqueue command line: zk start/stop, submit, status, list, worker, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

from tests.processes import ROOT, write_config
from zkqueue import zkserver
from zkqueue.cli import main


def cli(*args, env=None):
    return CliRunner().invoke(main, list(args), obj={}, env=env, catch_exceptions=False)


def test_zk_start_and_stop(tmp_path):
    port = zkserver.free_port()
    data = tmp_path / "zk"
    r = cli("zk", "start", "--port", str(port), "--data-dir", str(data))
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"127.0.0.1:{port}"
    assert zkserver.four_letter("127.0.0.1", port) == "imok"
    r = cli("zk", "stop", "--data-dir", str(data))
    assert r.exit_code == 0
    assert zkserver.four_letter("127.0.0.1", port) == ""
    r = cli("zk", "stop", "--data-dir", str(data))
    assert r.exit_code == 1 and "no ZooKeeper server recorded" in r.output


def test_submit_status_list_worker(cfg, merritt, tmp_path):
    conf = str(write_config(cfg, tmp_path / "zkqueue.yaml"))
    url = f"{merritt.url}/call911.checkm"
    r = cli("--config", conf, "submit", url, "--profile", "demo", "--uuid", "abc", "--json")
    assert r.exit_code == 0, r.output
    bid = json.loads(r.stdout)["batch_id"]
    again = cli("--config", conf, "submit", url, "--profile", "demo", "--uuid", "abc", "--json")
    assert json.loads(again.stdout) == {"batch_id": bid}
    bad = cli("--config", conf, "submit", url, "--profile", "nope")
    assert bad.exit_code == 1 and "profile 'nope' is not configured" in bad.output
    usage = cli("--config", conf, "submit", url)
    assert usage.exit_code == 2
    r = cli("--config", conf, "list", "batches", "--status", "pending", "--json")
    assert [b["batch_id"] for b in json.loads(r.stdout)] == [bid]
    r = cli("--config", conf, "list", "jobs", "--status", "bogus")
    assert r.exit_code == 2 and "unknown job status" in r.output
    r = cli("--config", conf, "worker", "--drain", "--threads", "2")
    assert r.exit_code == 0
    r = cli("--config", conf, "status", bid, "--json")
    doc = json.loads(r.stdout)
    assert doc["batch_id"] == bid and doc["status"] == "completed"
    assert doc["counts"] == {"completed": 1}
    (job,) = doc["jobs"]
    assert set(job) >= {"job_id", "status", "local_id", "ark", "message"}
    assert job["ark"].startswith("ark:/99999/fk4")
    text = cli("--config", conf, "status", bid)
    assert f"batch {bid}: completed" in text.output and job["ark"] in text.output
    missing = cli("--config", conf, "status", "bid9999999999")
    assert missing.exit_code == 1 and "no batch bid9999999999" in missing.output


def test_env_overrides_reach_the_cli(cfg, zk_hosts, tmp_path):
    conf = write_config(cfg, tmp_path / "zkqueue.yaml")
    r = cli("--config", str(conf), "submit", "http://127.0.0.1/x", "--profile", "demo", "--json",
            env={"ZKQUEUE_ROOT": "/env-root-test", "ZKQUEUE_ZK": zk_hosts})
    bid = json.loads(r.stdout)["batch_id"]
    r = cli("--config", str(conf), "--root", "/env-root-test", "status", bid, "--json")
    assert json.loads(r.stdout)["status"] == "pending"


def test_demo_runs_end_to_end(zk_hosts, zk_root, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "zkqueue.cli", "--zk", zk_hosts, "--root", zk_root, "demo",
         "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed" in done.stdout and "md5 expected 000000" in done.stdout
    assert done.stdout.count("version 1,") == 2
    assert list((tmp_path / "demo" / "outbox").iterdir())


def test_worker_refuses_a_broken_configuration_at_start(cfg, tmp_path):
    cfg.data["minter"] = {"type": "ezid", "shoulder": "ark:/1/x", "url": "http://127.0.0.1:9"}
    conf = str(write_config(cfg, tmp_path / "zkqueue.yaml"))
    r = cli("--config", conf, "worker", "--drain")
    assert r.exit_code == 1
    assert "minter configuration" in r.output and "needs user" in r.output
    cfg.data["minter"] = {"type": "local", "shoulder": "ark:/99999/fk4"}
    cfg.data["storage"] = {"url": "ftp://nowhere"}
    r = cli("--config", str(write_config(cfg, tmp_path / "zkqueue.yaml")), "worker", "--drain")
    assert r.exit_code == 1 and "store configuration" in r.output
    assert "unsupported storage URL scheme 'ftp'" in r.output
