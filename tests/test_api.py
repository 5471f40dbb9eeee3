"""The HTTP API on real uvicorn and ZooKeeper servers: submission, progress, errors, auth."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import uvicorn
from kazoo.client import KazooClient

from tests.conftest import make_config, run_worker
from zkqueue import zkserver
from zkqueue.api import create_app, is_loopback, openapi_document, resolve_token, serve
from zkqueue.config import ConfigError
from zkqueue.inventory import Inventory
from zkqueue.layout import Layout, encode
from zkqueue.queue import Queue

DOCS_OPENAPI = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
TOKEN = "s3cret-token-for-tests-0123456789"


@contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and a free port; yields the base URL."""
    port = zkserver.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def api(cfg, queue) -> Iterator[str]:
    with running(create_app(cfg, queue)) as url:
        yield url


def snapshot(zk: KazooClient, path: str) -> dict[str, tuple[int, int]]:
    """(mzxid, pzxid) of every node under ``path``: any write below it changes this."""
    stat = zk.exists(path)
    if stat is None:
        return {}
    out = {path: (stat.mzxid, stat.pzxid)}
    for child in zk.get_children(path):
        out.update(snapshot(zk, f"{path}/{child}"))
    return out


def assert_json_error(resp: requests.Response, status: int) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    assert "Traceback" not in resp.text
    doc = resp.json()
    assert isinstance(doc["error"], str) and doc["error"]
    return doc


# -- submission and progress -------------------------------------------------------------------

def test_submit_is_idempotent_on_uuid(api, queue):
    body = {"payload_url": "https://example.org/deposit.checkm", "profile": "demo",
            "submitter": "api-test", "priority": 7, "uuid": "3f6c1d2e-aaaa-4bbb-8ccc-0123456789ab",
            "notify_email": "curator@example.org", "submission_mode": "update"}
    first = requests.post(f"{api}/batches", json=body, timeout=10)
    assert first.status_code == 201, first.text
    bid = first.json()["batch_id"]
    assert first.json()["created"] is True
    assert first.headers["location"] == f"/batches/{bid}"
    again = requests.post(f"{api}/batches", json={**body, "priority": 1}, timeout=10)
    assert again.status_code == 200
    assert again.json() == {"batch_id": bid, "created": False}
    sub = queue.batch(bid)["submission"]
    assert (sub["priority"], sub["submission_mode"], sub["submitter"]) == ("07", "update",
                                                                           "api-test")
    assert [b["batch_id"] for b in queue.list_batches()] == [bid]
    listed = requests.get(f"{api}/batches", params={"status": "pending"}, timeout=10).json()
    assert [(b["batch_id"], b["status"]) for b in listed] == [(bid, "pending")]
    assert requests.get(f"{api}/batches", params={"status": "completed"}, timeout=10).json() == []


def test_progress_of_a_run_with_a_failure(api, queue, cfg, merritt):
    """Seed 001's progress page: per-job status and the message a depositor can act on."""
    merritt.fail_next("/generalDrapery.jpg", status=404, method="HEAD")
    resp = requests.post(f"{api}/batches", timeout=10, json={
        "payload_url": f"{merritt.url}/sampleBatchOfFiles.checkm", "profile": "demo"})
    bid = resp.json()["batch_id"]
    pending = requests.get(f"{api}/batches/{bid}", timeout=10).json()
    assert (pending["status"], pending["counts"], pending["jobs"]) == ("pending", {}, [])
    run_worker(cfg)
    doc = requests.get(f"{api}/batches/{bid}", timeout=10).json()
    assert doc == {**queue.batch_status(bid), "archived": False}  # `zkqueue status --json`
    assert doc["status"] == "failed"
    assert doc["counts"] == {"completed": 2, "failed": 1}
    failed = [j for j in doc["jobs"] if j["status"] == "failed"]
    assert len(failed) == 1 and "404" in failed[0]["message"]
    assert "generalDrapery.jpg" in failed[0]["message"]
    assert all(j["ark"].startswith("ark:/") for j in doc["jobs"] if j["status"] == "completed")
    job = requests.get(f"{api}/jobs/{failed[0]['job_id']}", timeout=10).json()
    assert (job["job_id"], job["status"], job["batch_id"]) == (failed[0]["job_id"], "failed", bid)
    assert job["last_successful_status"] == "pending"
    listed = requests.get(f"{api}/batches", params={"status": "failed"}, timeout=10).json()
    assert [b["batch_id"] for b in listed] == [bid]


def test_batch_cleaned_out_of_zookeeper_answers_from_inventory(api, cfg):
    summary = {"batch_id": "bid0000000777", "status": "completed", "counts": {"completed": 1},
               "jobs": [{"job_id": "jid0000000777", "status": "completed", "local_id": "x",
                         "ark": "ark:/99999/fk4x", "message": ""}], "message": "1 completed"}
    inv = Inventory.open(cfg["inventory"]["url"])
    inv.save_batch_summary("bid0000000777", "completed", summary)
    inv.close()
    doc = requests.get(f"{api}/batches/bid0000000777", timeout=10).json()
    assert doc == {**summary, "archived": True}
    assert_json_error(requests.get(f"{api}/batches/bid0000000778", timeout=10), 404)


def test_reads_never_write_to_zookeeper(api, queue, zk, zk_root):
    bid = queue.submit("https://example.org/a.checkm", "demo", uuid="read-only-check")
    before = snapshot(zk, zk_root)
    for path in (f"/batches/{bid}", "/batches", "/batches?status=pending", "/jobs/jid0000000001",
                 "/batches/bid0000009999", "/metrics", "/healthz", f"/batches/{bid}"):
        assert requests.get(api + path, timeout=10).status_code in (200, 404)
    requests.post(f"{api}/batches", json={"payload_url": "https://example.org/a.checkm",
                                          "profile": "demo", "uuid": "read-only-check"},
                  timeout=10)
    assert snapshot(zk, zk_root) == before


def test_reads_on_an_empty_root_create_nothing(cfg, zk, zk_root):
    with Queue(zk, Layout(zk_root), cfg) as q, running(create_app(cfg, q)) as url:
        assert requests.get(f"{url}/batches", timeout=10).json() == []
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 200
        assert_json_error(requests.get(f"{url}/batches/bid0000000001", timeout=10), 404)
        assert zk.exists(zk_root) is None


# -- bad requests --------------------------------------------------------------------------------

GOOD = {"payload_url": "https://example.org/deposit.checkm", "profile": "demo"}

BAD_SUBMISSIONS = [
    ({**GOOD, "profile": "nope"}, "nope"),
    ({**GOOD, "payload_url": "file:///etc/passwd"}, "scheme"),
    ({**GOOD, "payload_url": "ftp://example.org/x"}, "scheme"),
    ({**GOOD, "callback_url": "javascript:alert(1)"}, "callback"),
    ({"profile": "demo"}, "body.payload_url"),
    ({**GOOD, "priority": 150}, "body.priority"),
    ({**GOOD, "priority": "soon"}, "body.priority"),
    ({**GOOD, "uuid": "../../zookeeper"}, "body.uuid"),
    ({**GOOD, "uuid": "."}, "body.uuid"),
    ({**GOOD, "uuid": ""}, "body.uuid"),
    ({**GOOD, "submission_mode": "replace"}, "body.submission_mode"),
    ({**GOOD, "notify_email": "not an address"}, "body.notify_email"),
    ({**GOOD, "payloadUrl": "typo"}, "body.payloadUrl"),
    ([GOOD], "body"),
]


def test_bad_submissions_are_refused_with_a_reason(api, zk, zk_root):
    for body, named in BAD_SUBMISSIONS:
        doc = assert_json_error(requests.post(f"{api}/batches", json=body, timeout=10), 422)
        assert named in json.dumps(doc), (body, doc)
    assert zk.exists(f"{zk_root}/batch-uuids") is None or not zk.get_children(
        f"{zk_root}/batch-uuids"), "nothing was queued"


BAD_REQUESTS = [
    ("POST", "/batches", b"{not json", 422),
    ("POST", "/batches", b"", 422),
    ("GET", "/batches/bid123", None, 422),
    ("GET", "/batches/jid0000000001", None, 422),
    ("GET", "/batches/bid0000000001%2F..%2F..", None, 404),
    ("GET", "/batches/..%2Fjobs", None, 404),
    ("GET", "/jobs/jid00000000012", None, 422),
    ("GET", "/jobs/jid0000000001", None, 404),
    ("GET", "/batches?status=" + "x" * 100, None, 422),
    ("GET", "/nowhere", None, 404),
    ("DELETE", "/batches", None, 405),
    ("POST", "/batches", b"x" * 70_000, 413),
]


def test_bad_requests_get_json_errors(api):
    for method, path, data, status in BAD_REQUESTS:
        resp = requests.request(method, api + path, data=data, timeout=10,
                                headers={"Content-Type": "application/json"})
        assert_json_error(resp, status)


def test_unknown_status_lists_the_known_ones(api):
    doc = assert_json_error(requests.get(f"{api}/batches?status=done", timeout=10), 400)
    assert "done" in doc["error"]
    assert doc["known"] == ["pending", "held", "processing", "reporting", "failed",
                            "update-reporting", "completed", "deleted"]


def test_corrupt_queue_data_is_a_json_500_without_traceback(api, zk, zk_root):
    zk.create(f"{zk_root}/batches/bid0000000042/status", encode([1, 2]), makepath=True)
    resp = requests.get(f"{api}/batches/bid0000000042", timeout=10)
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal error"}


# -- health, metrics, description --------------------------------------------------------------

def test_healthz_follows_the_zookeeper_connection(cfg, zk_hosts, zk_root):
    client = KazooClient(hosts=zk_hosts, timeout=10)
    client.start(timeout=30)
    q = Queue(client, Layout(zk_root), cfg)
    with running(create_app(cfg, q)) as url:
        ok = requests.get(f"{url}/healthz", timeout=10)
        assert (ok.status_code, ok.json()) == (200, {"status": "ok", "zookeeper": "CONNECTED"})
        client.stop()
        down = requests.get(f"{url}/healthz", timeout=10)
        assert down.status_code == 503 and down.json()["status"] == "unavailable"
        assert_json_error(requests.get(f"{url}/batches/bid0000000001", timeout=10), 503)
        text = requests.get(f"{url}/metrics", timeout=10).text
        assert "zkqueue_zookeeper_up 0.0" in text
    client.close()


def test_metrics_endpoint_serves_queue_gauges_and_process_metrics(api, queue):
    queue.submit("https://example.org/a.checkm", "demo")
    resp = requests.get(f"{api}/metrics", timeout=10)
    assert resp.headers["content-type"].startswith("text/plain")
    lines = resp.text.splitlines()
    assert 'zkqueue_batches{status="pending"} 1.0' in lines
    assert 'zkqueue_jobs{status="pending"} 0.0' in lines
    assert "zkqueue_zookeeper_up 1.0" in lines
    assert any(line.startswith("process_resident_memory_bytes") for line in lines)
    assert not any(line.startswith("zkqueue_transitions_total") for line in lines), \
        "worker counters belong to the workers' own /metrics"


def test_openapi_description_is_published_and_matches_docs(api):
    served = requests.get(f"{api}/openapi.json", timeout=10).json()
    assert served == openapi_document()
    assert json.loads(DOCS_OPENAPI.read_text()) == served, (
        "docs/openapi.json is stale: python -m zkqueue.api > docs/openapi.json")
    assert set(served["paths"]) == {"/batches", "/batches/{bid}", "/jobs/{jid}", "/metrics",
                                    "/healthz"}
    assert requests.get(f"{api}/docs", timeout=10).status_code == 200


# -- authentication ------------------------------------------------------------------------------

@pytest.fixture
def token_api(tmp_path, zk_hosts, zk_root, queue) -> Iterator[str]:
    cfg = make_config(tmp_path, zk_hosts, zk_root, api={"token": TOKEN})
    with running(create_app(cfg, queue)) as url:
        yield url


GUARDED = [("GET", "/batches"), ("GET", "/batches/bid0000000001"), ("GET", "/jobs/jid0000000001"),
           ("GET", "/metrics"), ("POST", "/batches"), ("GET", "/nowhere")]


WRONG_AUTH = [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer",
              f"bearer  {TOKEN[:-1]}", TOKEN]


def test_guarded_endpoints_need_the_token(token_api, zk, zk_root):
    for (method, path), auth in itertools.product(GUARDED, WRONG_AUTH):
        headers = {"Authorization": auth} if auth else {}
        resp = requests.request(method, token_api + path, headers=headers, timeout=10,
                                json={"payload_url": "https://example.org/x", "profile": "demo"})
        doc = assert_json_error(resp, 401)
        assert resp.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in json.dumps(doc)
    bad_json = requests.post(f"{token_api}/batches", data=b"{", timeout=10)
    assert_json_error(bad_json, 401)
    assert zk.exists(f"{zk_root}/batch-uuids") is None, "nothing was submitted"


def test_the_right_token_opens_every_endpoint(token_api, caplog):
    caplog.set_level(logging.DEBUG)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    made = requests.post(f"{token_api}/batches", headers=auth, timeout=10,
                         json={"payload_url": "https://example.org/x", "profile": "demo"})
    assert made.status_code == 201
    bid = made.json()["batch_id"]
    lower = {"Authorization": f"bearer {TOKEN}"}
    assert requests.get(f"{token_api}/batches/{bid}", headers=lower, timeout=10).ok
    assert requests.get(f"{token_api}/metrics", headers=auth, timeout=10).ok
    assert requests.get(f"{token_api}/batches", headers=auth, timeout=10).json()[0]["batch_id"] \
        == bid
    for public in ("/healthz", "/openapi.json"):
        assert requests.get(token_api + public, timeout=10).status_code == 200
    requests.get(f"{token_api}/batches", headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert TOKEN not in caplog.text


def test_token_settings(tmp_path, zk_hosts, zk_root):
    def cfg(**api):
        return make_config(tmp_path, zk_hosts, zk_root, api=api)

    assert resolve_token(cfg()) is None
    assert resolve_token(cfg(token=TOKEN)) == TOKEN
    assert resolve_token(cfg(token_env="API_TOKEN"), {"API_TOKEN": TOKEN}) == TOKEN
    with pytest.raises(ConfigError, match=r"\$API_TOKEN"):
        resolve_token(cfg(token_env="API_TOKEN"), {})
    with pytest.raises(ConfigError, match="must be a string") as err:
        resolve_token(cfg(token=123456))
    assert "123456" not in str(err.value)
    with pytest.raises(ConfigError, match="only one"):
        resolve_token(cfg(token=TOKEN, token_env="API_TOKEN"), {"API_TOKEN": TOKEN})


def test_serve_refuses_a_public_address_without_a_token(cfg, capsys):
    assert serve(cfg, host="0.0.0.0", port=zkserver.free_port()) == 1
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0" in err and "api.token" in err
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.5", "0.0.0.0",
                                     "10.0.0.1", "example.org")] == [True] * 4 + [False] * 3


def test_zkqueue_serve_command_runs_and_stops_on_sigterm(zk_hosts, zk_root, tmp_path):
    """The CLI end to end: token from the environment, never printed; SIGTERM stops it cleanly."""
    port = zkserver.free_port()
    env = {**os.environ, "PYTHONPATH": str(DOCS_OPENAPI.parents[1]), "ZKQUEUE_API__TOKEN": TOKEN,
           "ZKQUEUE_INVENTORY__URL":
           f"sqlite:///{tmp_path / 'inventory.db'}", "ZKQUEUE_LOGGING__LEVEL": "DEBUG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zkqueue.cli", "--zk", zk_hosts, "--root", zk_root, "serve",
         "--host", "0.0.0.0", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = requests.get(f"{url}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
        assert requests.get(f"{url}/batches", timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(f"{url}/batches", headers=auth, timeout=5).json() == []
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert TOKEN.encode() not in out + err
    assert b"API listening on 0.0.0.0" in err
