"""The production-shaped set-up end to end: S3 storage (moto_server), EZID minting, SMTP mail,
signed callbacks, all real servers on loopback. No secret reaches a log line or a znode."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pytest

from tests.conftest import make_config, run_worker
from tests.httpserver import HandlerServer, QuietHandler
from tests.test_mail import PASSWORD as SMTP_PASSWORD
from tests.test_mail import smtp  # noqa: F401 - a fixture
from tests.test_minter import PASSWORD as EZID_PASSWORD
from tests.test_minter import SHOULDER, USER, ezid  # noqa: F401 - a fixture
from tests.test_storage import bucket, s3_client, s3_endpoint  # noqa: F401 - fixtures
from zkqueue.inventory import Inventory
from zkqueue.layout import Layout
from zkqueue.queue import Queue
from zkqueue.storage import object_key

CALLBACK_SECRET = "cb-Secret-0123"


class Callbacks(HandlerServer):
    def __init__(self):
        super().__init__(CallbackHandler)
        self.received: list[tuple[dict, str, bytes]] = []
        self.fail_first = 1

    @property
    def url(self) -> str:
        return f"{super().url}/hook"


class CallbackHandler(QuietHandler):
    server: Callbacks

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.server.fail_first:
            self.server.fail_first -= 1
            self.send_response(503)
        else:
            self.server.received.append(
                (json.loads(body), self.headers["X-Zkqueue-Signature"], body))
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def callbacks():
    with Callbacks() as srv:
        yield srv


def test_production_parts_end_to_end(
    merritt, zk, zk_hosts, zk_root, tmp_path, s3_endpoint, bucket, ezid, smtp,  # noqa: F811
    callbacks, caplog,
):
    controller, mailbox = smtp
    caplog.set_level(logging.DEBUG)
    cfg = make_config(
        tmp_path, zk_hosts, zk_root,
        storage={"url": f"s3://{bucket}/ingest", "endpoint_url": s3_endpoint,
                 "region": "us-east-1"},
        minter={"type": "ezid", "url": ezid.url, "shoulder": SHOULDER, "user": USER,
                "password": EZID_PASSWORD},
        profiles={"demo": {"priority": 5, "notify_email": "curators@example.org",
                           "callback_secret": CALLBACK_SECRET}},
    )
    # replaces the outbox (a merge would keep both)
    cfg.data["mail"] = {"smtp": {"host": controller.hostname, "port": controller.port,
                                 "user": "zkqueue", "password": SMTP_PASSWORD, "timeout": 5}}
    q = Queue(zk, Layout(zk_root), cfg)
    bid = q.submit(f"{merritt.url}/sampleBatchOfFiles.checkm", "demo", "tester",
                   callback_url=callbacks.url)
    run_worker(cfg, threads=2)
    doc = q.batch_status(bid)
    assert doc["status"] == "completed", doc
    arks = sorted(j["ark"] for j in doc["jobs"])
    assert arks == [f"{SHOULDER}{n:05d}" for n in (1, 2, 3)]  # minted by EZID, once each
    assert len(ezid.requests) == 3
    s3 = s3_client(s3_endpoint)
    inv = Inventory.open(cfg["inventory"]["url"])
    for ark in arks:
        (v,) = inv.versions(ark)
        for f in v.files:
            head = s3.head_object(Bucket=bucket, Key=f"ingest/{f.storage_key}")
            assert head["ContentLength"] == f.size
        man = object_key(ark, 1, "system", "mrt-manifest.txt")
        assert s3.head_object(Bucket=bucket, Key=f"ingest/{man}")["ContentLength"] > 0
    inv.close()
    # one signed callback per job (the first attempt got a 503 and was retried)
    assert sorted(b["ark"] for b, _, _ in callbacks.received) == arks
    for body, sig, raw in callbacks.received:
        want = hmac.new(CALLBACK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert sig == f"sha256={want}" and body["batch_id"] == bid
    # the summary went out by SMTP to the profile's address
    (sender, rcpts, content) = mailbox.received[-1]
    assert rcpts == ["curators@example.org"]
    assert f"batch {bid} completed" in content.decode()
    # secrets never reach a log line or ZooKeeper
    logs = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    dumped = json.dumps([q.job(j["job_id"]) for j in doc["jobs"]] + [q.batch(bid)])
    for secret in (EZID_PASSWORD, SMTP_PASSWORD, CALLBACK_SECRET):
        assert secret not in logs and secret not in dumped
