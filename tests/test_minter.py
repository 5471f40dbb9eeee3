"""Minting against a real ZooKeeper (local minter) and a loopback server speaking EZID's API."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import pytest
from kazoo.client import KazooClient

from tests.httpserver import HandlerServer, QuietHandler
from zkqueue import zkserver
from zkqueue.minter import EzidMinter, LocalMinter, MintError, open_minter

SHOULDER = "ark:/99999/fk4"
USER, PASSWORD = "apitest", "Ez1d-pa55word"


# local minter ---------------------------------------------------------------------------------


def test_local_minter_format_and_sequence(zk, zk_root):
    minter = LocalMinter(zk, f"{zk_root}/counters/minter", SHOULDER)
    assert [minter.mint() for _ in range(3)] == [
        "ark:/99999/fk40000001",
        "ark:/99999/fk40000002",
        "ark:/99999/fk40000003",
    ]
    again = LocalMinter(zk, f"{zk_root}/counters/minter", SHOULDER)
    assert again.mint() == "ark:/99999/fk40000004"


def test_local_minter_threads_never_share_an_ark(zk, zk_root):
    minter = LocalMinter(zk, f"{zk_root}/counter", SHOULDER)
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [minter.mint() for _ in range(25)], range(8)))
    arks = [ark for batch in batches for ark in batch]
    assert len(arks) == 200
    assert len(set(arks)) == 200
    assert all(ark.startswith(SHOULDER) and len(ark) == len(SHOULDER) + 7 for ark in arks)


def test_local_minters_on_separate_sessions_never_share_an_ark(zk, zk_hosts, zk_root):
    # Separate clients and minter objects contend only through ZooKeeper, as processes do.
    other = KazooClient(hosts=zk_hosts, timeout=15)
    other.start(timeout=30)
    try:
        minters = [LocalMinter(c, f"{zk_root}/shared", SHOULDER) for c in (zk, other) * 2]
        with ThreadPoolExecutor(4) as pool:
            batches = list(pool.map(lambda m: [m.mint() for _ in range(15)], minters))
    finally:
        other.stop()
        other.close()
    arks = [ark for batch in batches for ark in batch]
    assert sorted(arks) == [f"{SHOULDER}{n:07d}" for n in range(1, 61)]


def test_local_minter_refuses_a_bad_shoulder(zk, zk_root):
    for shoulder in ("", "99999/fk4", "ark:/99999/fk 4", "ark:/99999/fk|4"):
        with pytest.raises(ValueError):
            LocalMinter(zk, f"{zk_root}/c", shoulder)


def test_local_minter_without_zookeeper_is_a_transient_error(zk_hosts, zk_root):
    client = KazooClient(hosts=zk_hosts, timeout=15)
    client.start(timeout=30)
    minter = LocalMinter(client, f"{zk_root}/c", SHOULDER)
    client.stop()
    try:
        with pytest.raises(MintError) as err:
            minter.mint()
        assert not err.value.permanent
    finally:
        client.close()


# EZID -----------------------------------------------------------------------------------------


class Ezid(HandlerServer):
    """Speaks the part of EZID's API the minter uses; records every request."""

    def __init__(self) -> None:
        super().__init__(EzidHandler)
        self.shoulders = {SHOULDER}
        self.counter = 0
        self.fail_with: list[int] = []
        self.mint_outside_shoulder = False
        self.requests: list[dict] = []
        self.lock = threading.Lock()


class EzidHandler(QuietHandler):
    server: Ezid

    def reply(self, status: int, text: str) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8")
        srv = self.server
        with srv.lock:
            srv.requests.append(
                {"path": self.path, "content_type": self.headers.get("Content-Type"), "body": body}
            )
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self.reply(401, "error: unauthorized")
            if not self.path.startswith("/shoulder/"):
                return self.reply(404, "error: not found")
            if self.headers.get("Content-Type") != "text/plain; charset=UTF-8":
                return self.reply(400, "error: bad request - content type")
            shoulder = unquote(self.path[len("/shoulder/") :])
            if shoulder not in srv.shoulders:
                return self.reply(400, f"error: bad request - no such shoulder: {shoulder}")
            if srv.fail_with:
                return self.reply(srv.fail_with.pop(0), "error: service unavailable")
            srv.counter += 1
            minted = (
                f"ark:/12345/zz{srv.counter}"
                if srv.mint_outside_shoulder
                else (f"{shoulder}{srv.counter:05d}")
            )
            return self.reply(201, f"success: {minted}\n")


@pytest.fixture
def ezid():
    with Ezid() as server:
        yield server


def ezid_minter(server: Ezid, **kw) -> EzidMinter:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5)
    password = kw.pop("password", PASSWORD)
    return EzidMinter(server.url, SHOULDER, USER, password, **kw)


def test_ezid_mints_sequential_arks(ezid):
    minter = ezid_minter(ezid)
    assert [minter.mint() for _ in range(3)] == [
        "ark:/99999/fk400001",
        "ark:/99999/fk400002",
        "ark:/99999/fk400003",
    ]
    assert ezid.requests[0]["path"] == "/shoulder/ark:/99999/fk4"
    assert ezid.requests[0]["body"] == ""


def test_ezid_sends_an_escaped_target(ezid):
    ezid_minter(ezid, target="https://repo.example.org/m/100%\nx").mint()
    assert ezid.requests[0]["body"] == "_target: https://repo.example.org/m/100%25%0Ax\n"


def test_ezid_503_is_retried(ezid):
    ezid.fail_with = [503]
    assert ezid_minter(ezid).mint() == "ark:/99999/fk400001"
    assert len(ezid.requests) == 2


def test_ezid_gives_up_after_bounded_retries(ezid):
    ezid.fail_with = [503] * 10
    with pytest.raises(MintError) as err:
        ezid_minter(ezid, retries=2).mint()
    assert not err.value.permanent
    assert "503" in str(err.value)
    assert len(ezid.requests) == 3


def test_ezid_wrong_password_is_permanent_with_ezid_text_and_no_password(ezid):
    minter = ezid_minter(ezid, password="wrong-Secret-9")
    with pytest.raises(MintError) as err:
        minter.mint()
    assert err.value.permanent
    assert "401" in str(err.value) and "error: unauthorized" in str(err.value)
    assert "wrong-Secret-9" not in str(err.value) and "wrong-Secret-9" not in repr(minter)
    assert len(ezid.requests) == 1


def test_ezid_bad_request_is_permanent(ezid):
    minter = EzidMinter(ezid.url, "ark:/99999/nope", USER, PASSWORD, backoff=0.01)
    with pytest.raises(MintError) as err:
        minter.mint()
    assert err.value.permanent
    assert "no such shoulder" in str(err.value)
    assert len(ezid.requests) == 1


def test_ezid_identifier_outside_the_shoulder_is_refused(ezid):
    ezid.mint_outside_shoulder = True
    with pytest.raises(MintError) as err:
        ezid_minter(ezid).mint()
    assert err.value.permanent and "ark:/12345/zz1" in str(err.value)


def test_ezid_unreachable_is_transient():
    url = f"http://127.0.0.1:{zkserver.free_port()}"
    with pytest.raises(MintError) as err:
        EzidMinter(url, SHOULDER, USER, PASSWORD, retries=1, backoff=0.01).mint()
    assert not err.value.permanent
    assert PASSWORD not in str(err.value)


def test_ezid_refuses_credentials_in_the_url():
    with pytest.raises(ValueError) as err:
        EzidMinter(f"https://{USER}:{PASSWORD}@ezid.example.org", SHOULDER, USER, PASSWORD)
    assert PASSWORD not in str(err.value)


# configuration --------------------------------------------------------------------------------


def test_open_minter(zk, zk_root, ezid, monkeypatch):
    local = open_minter({"type": "local", "shoulder": SHOULDER}, zk, f"{zk_root}/counters")
    assert isinstance(local, LocalMinter)
    assert local.mint() == "ark:/99999/fk40000001"
    assert zk.exists(f"{zk_root}/counters/ark%3A%2F99999%2Ffk4")

    monkeypatch.setenv("ZKQ_EZID_PW", PASSWORD)
    remote = open_minter(
        {
            "type": "ezid",
            "url": ezid.url,
            "shoulder": SHOULDER,
            "user": USER,
            "password_env": "ZKQ_EZID_PW",
        },
        zk,
        f"{zk_root}/counters",
    )
    assert isinstance(remote, EzidMinter)
    assert remote.mint() == "ark:/99999/fk400001"

    for bad in (
        {"type": "other", "shoulder": SHOULDER},
        {"type": "local"},
        {"type": "ezid", "url": ezid.url, "shoulder": SHOULDER, "user": USER},
        {"type": "ezid", "url": ezid.url, "shoulder": SHOULDER, "password": PASSWORD},
    ):
        with pytest.raises(ValueError):
            open_minter(bad, zk, f"{zk_root}/counters")
