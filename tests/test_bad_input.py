"""Bad input fails the job (or batch) with a message a depositor can act on; nothing else stops."""

from __future__ import annotations

import pytest

from tests.conftest import run_worker
from tests.deposits import Deposit, md5, row
from tests.httpserver import LoopbackServer
from zkqueue import transitions
from zkqueue.config import _merge
from zkqueue.layout import Layout
from zkqueue.queue import Queue


@pytest.fixture
def deposit(tmp_path):
    folder = tmp_path / "deposit"
    folder.mkdir()
    with LoopbackServer(folder) as server:
        d = Deposit(folder, server.url)
        d.server = server
        yield d


def by_local_id(queue: Queue, bid: str) -> dict:
    return {j["local_id"]: j for j in queue.batch_status(bid)["jobs"]}


def test_bad_objects_fail_with_actionable_messages_and_the_rest_ingest(deposit, queue, cfg):
    d = deposit
    good = d.object_manifest("good.checkm", {"a.txt": None, "b.txt": None})
    wrong = d.object_manifest("wrong.checkm", {"c.txt": None}, digests={"c.txt": "0" * 32})
    missing = d.object_manifest("missing.checkm", {"d.txt": None})
    (d.folder / "d.txt").unlink()
    dup = d.object_manifest("dup.checkm", {"e1.txt": None, "e2.txt": None},
                            names={"e2.txt": "e1.txt"})
    escape = d.object_manifest("escape.checkm", {"f.txt": None}, names={"f.txt": "../f.txt"})
    absolute = d.object_manifest("abs.checkm", {"g.txt": None}, names={"g.txt": "/etc/g.txt"})
    (d.folder / "corrupt.checkm").write_text("#%checkm_0.7\n#%profile | http://x/mrt-ingest-"
                                             "manifest\nno fields line here\n#%eof\n")
    d.zip("ok.zip", {"page1.txt": b"one", "page2.txt": b"two"})
    d.zip("evil.zip", {"fine.txt": b"x", "../../outside.txt": b"gotcha"})
    batch = d.batch("batch.checkm", "batch", [
        row(good, "good"), row(wrong, "wrong"), row(missing, "missing"), row(dup, "dup"),
        row(escape, "escape"), row(absolute, "abs"), row(f"{d.url}/corrupt.checkm", "corrupt"),
        row(f"{d.url}/nothing-here.checkm", "404"),
        row("http://127.0.0.1:9/unreachable.checkm", "unreachable"),
        row("ftp://127.0.0.1/x.checkm", "ftp"),
    ])
    zips = d.batch("zips.checkm", "containers", [
        row(f"{d.url}/ok.zip", "okzip", "ok.zip"), row(f"{d.url}/evil.zip", "evilzip", "evil.zip")])
    b1 = queue.submit(batch, "demo")
    b2 = queue.submit(zips, "demo")
    run_worker(cfg, threads=3)
    jobs = by_local_id(queue, b1)
    assert jobs["good"]["status"] == "completed"
    expect = {
        "wrong": ["downloading", "c.txt", "md5 expected " + "0" * 32, "found"],
        "missing": ["estimating", "d.txt", "404"],
        "dup": ["dup.checkm line", "e1.txt"],
        "escape": ["escape.checkm line", "../f.txt"],
        "abs": ["abs.checkm line", "/etc/g.txt"],
        "corrupt": ["corrupt.checkm line 3"],
        "404": ["nothing-here.checkm", "404"],
        "unreachable": ["unreachable.checkm"],
        "ftp": ["ftp"],
    }
    for local_id, words in expect.items():
        job = jobs[local_id]
        assert job["status"] == "failed", (local_id, job)
        for w in words:
            assert w in job["message"], (local_id, w, job["message"])
    wrong_md5 = md5((d.folder / "c.txt").read_bytes())
    assert wrong_md5 in jobs["wrong"]["message"]
    zjobs = by_local_id(queue, b2)
    assert zjobs["okzip"]["status"] == "completed"
    assert zjobs["evilzip"]["status"] == "failed"
    assert "evil.zip" in zjobs["evilzip"]["message"]
    assert "../../outside.txt" in zjobs["evilzip"]["message"]
    assert not any(p.name == "outside.txt" for p in cfg.path("work_dir").parent.rglob("*"))
    doc = queue.batch_status(b1)
    assert doc["status"] == "failed"
    assert doc["counts"] == {"completed": 1, "failed": 9}
    assert doc["message"] == "1 completed, 9 failed of 10 job(s)"


def test_corrupt_batch_manifest_fails_the_batch_naming_the_line(deposit, queue, cfg):
    d = deposit
    (d.folder / "broken.checkm").write_text(
        "#%checkm_0.7\n#%profile | http://x/mrt-batch-manifest\n"
        "#%fields | nfo:fileUrl | nfo:fileName\n"
        f"{d.url}/a.checkm | a | too | many | values\n#%eof\n")
    bid = queue.submit(f"{d.url}/broken.checkm", "demo")
    missing = queue.submit(f"{d.url}/not-there.checkm", "demo")
    run_worker(cfg)
    doc = queue.batch_status(bid)
    assert doc["status"] == "failed" and doc["jobs"] == []
    assert "broken.checkm line 4" in doc["message"]
    assert "expected at most 2 values" in doc["message"]
    m = queue.batch_status(missing)
    assert m["status"] == "failed" and "404" in m["message"]
    # reporting it again (by any path) cannot turn the never-expanded batch into a success
    transitions.transition_batch(queue.zk, queue.layout, bid, "update-reporting")
    run_worker(cfg)
    again = queue.batch_status(bid)
    assert again["status"] == "failed"
    assert "never finished creating its jobs" in again["message"]
    assert "broken.checkm line 4" in again["message"]


def test_transient_errors_are_retried_inside_the_step(deposit, queue, cfg):
    url = deposit.object_manifest("obj.checkm", {"x.txt": None})
    deposit.server.fail_next("/x.txt", status=503, times=2, method="GET")
    bid = queue.submit(url, "demo")
    run_worker(cfg)
    assert queue.batch_status(bid)["status"] == "completed"
    assert deposit.server.hits["/x.txt"] >= 3  # HEAD, then GET 503, 503, 200


def test_file_urls_are_refused_unless_configured(tmp_path, zk, zk_hosts, zk_root):
    from tests.conftest import make_config

    (tmp_path / "local.txt").write_text("local payload")
    strict = make_config(tmp_path, zk_hosts, zk_root)
    q = Queue(zk, Layout(zk_root), strict)
    from zkqueue.queue import SubmissionError

    with pytest.raises(SubmissionError, match="scheme 'file' is not allowed"):
        q.submit(f"file://{tmp_path / 'local.txt'}", "demo")
    loose = make_config(tmp_path, zk_hosts, zk_root,
                        **_merge({}, {"payloads": {"allow_file_urls": True}}))
    q2 = Queue(zk, Layout(zk_root), loose)
    bid = q2.submit(f"file://{tmp_path / 'local.txt'}", "demo")
    run_worker(loose)
    doc = q2.batch_status(bid)
    assert doc["status"] == "completed", doc
