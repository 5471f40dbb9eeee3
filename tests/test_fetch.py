import hashlib
import socket
import threading
from pathlib import Path

import pytest

from handlers.digests import file_digest, file_digests, normalize_algorithm, normalize_digest
from handlers.fetch import (
    Downloaded,
    FetchCancelled,
    Fetcher,
    FetchError,
    HttpSettings,
    UrlPolicy,
)
from tests.httpserver import HandlerServer, LoopbackServer, QuietHandler

MERRITT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "merritt-samples"
CALL911_MD5 = "47d321056e60944a06973793c7b5841e"
CALL911_SHA256 = hashlib.sha256((MERRITT / "call911.jpg").read_bytes()).hexdigest()


def fast(retries: int = 2, **kw) -> HttpSettings:
    return HttpSettings(timeout=kw.pop("timeout", 5), retries=retries, backoff_initial=0.001,
                        backoff_max=0.01, **kw)


@pytest.fixture
def server():
    with LoopbackServer(MERRITT) as srv:
        yield srv


@pytest.fixture
def retries():
    return []


@pytest.fixture
def fetcher(retries):
    return Fetcher(fast(), UrlPolicy(), on_retry=lambda url, exc: retries.append((url, exc)))


def md5(value: str = CALL911_MD5) -> dict:
    return {"algorithm": "md5", "value": value}


def test_download_verifies_and_reports_digests(server, fetcher, tmp_path):
    dest = tmp_path / "new" / "dir" / "call911.jpg"
    got = fetcher.download(server.url + "/call911.jpg", dest, digest=md5(), expected_size=87112)
    assert got == Downloaded(dest, 87112, {"sha256": CALL911_SHA256, "md5": CALL911_MD5})
    assert dest.read_bytes() == (MERRITT / "call911.jpg").read_bytes()
    assert list(dest.parent.iterdir()) == [dest]


def test_download_without_digest_still_gives_sha256(server, fetcher, tmp_path):
    got = fetcher.download(server.url + "/call911.jpg", tmp_path / "f")
    assert got.digests == {"sha256": CALL911_SHA256}


def test_503_twice_then_success(server, fetcher, retries, tmp_path):
    server.fail_next("/call911.jpg", status=503, times=2)
    got = fetcher.download(server.url + "/call911.jpg", tmp_path / "f", digest=md5())
    assert got.size == 87112
    assert server.hits["/call911.jpg"] == 3
    assert len(retries) == 2
    url, exc = retries[0]
    assert url == server.url + "/call911.jpg"
    assert isinstance(exc, FetchError) and not exc.permanent and "HTTP 503" in str(exc)


def test_gives_up_after_the_retries(server, fetcher, tmp_path):
    server.fail_next("/call911.jpg", status=500, times=10)
    with pytest.raises(FetchError) as err:
        fetcher.download(server.url + "/call911.jpg", tmp_path / "f")
    assert err.value.permanent is False
    assert str(err.value) == (f"{server.url}/call911.jpg: gave up after 3 attempts; "
                              "last error: HTTP 500 Internal Server Error")
    assert server.hits["/call911.jpg"] == 3
    assert not (tmp_path / "f").exists() and not (tmp_path / "f.part").exists()


def test_429_is_retried(server, fetcher):
    server.fail_next("/call911.txt", status=429, headers={"Retry-After": "0"})
    assert fetcher.get_bytes(server.url + "/call911.txt") == (MERRITT / "call911.txt").read_bytes()
    assert server.hits["/call911.txt"] == 2


def test_404_fails_at_once(server, fetcher, retries, tmp_path):
    with pytest.raises(FetchError) as err:
        fetcher.download(server.url + "/nothing.jpg", tmp_path / "f")
    assert err.value.permanent is True
    assert str(err.value) == f"{server.url}/nothing.jpg: not found (HTTP 404)"
    assert err.value.url == f"{server.url}/nothing.jpg"
    assert server.hits["/nothing.jpg"] == 1
    assert retries == []


def test_403_fails_at_once(server, fetcher):
    server.fail_next("/call911.txt", status=403)
    with pytest.raises(FetchError, match="access denied") as err:
        fetcher.get_bytes(server.url + "/call911.txt")
    assert err.value.permanent and server.hits["/call911.txt"] == 1


def test_connection_dropped_mid_body_is_retried(server, fetcher, retries, tmp_path):
    server.drop_next("/call911.jpg")
    got = fetcher.download(server.url + "/call911.jpg", tmp_path / "f", digest=md5())
    assert got.digests["md5"] == CALL911_MD5
    assert server.hits["/call911.jpg"] == 2
    assert str(retries[0][1]) == (f"{server.url}/call911.jpg: connection broken: the connection "
                                  "closed after 43556 bytes, 43556 more were announced")


def test_connection_dropped_every_time_gives_up(server, fetcher):
    server.drop_next("/call911.jpg", times=5)
    with pytest.raises(FetchError, match="gave up after 3 attempts") as err:
        fetcher.get_bytes(server.url + "/call911.jpg")
    assert not err.value.permanent


def test_timeout_is_retried(server, retries):
    fetcher = Fetcher(fast(timeout=0.3), UrlPolicy(), on_retry=lambda u, e: retries.append(e))
    server.stall_next("/call911.txt", seconds=1.0)
    assert fetcher.get_bytes(server.url + "/call911.txt").startswith(b"Just keepin'")
    assert "timed out after 0.3 s" in str(retries[0])


def test_connection_refused_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError) as err:
        Fetcher(fast(retries=1), UrlPolicy()).get_bytes(f"http://127.0.0.1:{port}/x")
    assert err.value.permanent is False
    assert "gave up after 2 attempts" in str(err.value)
    assert "Connection refused" in str(err.value)


def test_digest_mismatch_is_permanent_and_leaves_nothing(server, fetcher, tmp_path):
    dest = tmp_path / "f.jpg"
    dest.write_bytes(b"previous good copy")
    wrong = "0" * 32
    with pytest.raises(FetchError) as err:
        fetcher.download(server.url + "/call911.jpg", dest, digest=md5(wrong))
    assert str(err.value) == f"{server.url}/call911.jpg: md5 expected {wrong}, found {CALL911_MD5}"
    assert err.value.permanent
    assert server.hits["/call911.jpg"] == 1
    assert dest.read_bytes() == b"previous good copy"
    assert not (tmp_path / "f.jpg.part").exists()


def test_sha256_digest_is_checked_too(server, fetcher, tmp_path):
    got = fetcher.download(server.url + "/call911.jpg", tmp_path / "f",
                           digest={"algorithm": "SHA-256", "value": CALL911_SHA256.upper()})
    assert got.digests == {"sha256": CALL911_SHA256}


def test_size_mismatch_is_permanent(server, fetcher, tmp_path):
    with pytest.raises(FetchError) as err:
        fetcher.download(server.url + "/call911.jpg", tmp_path / "f", expected_size=1000)
    assert err.value.permanent
    assert "size expected 1000 bytes, the server announces 87112" in str(err.value)
    assert server.hits["/call911.jpg"] == 1
    assert list(tmp_path.iterdir()) == []


def test_unknown_digest_algorithm_is_permanent_before_any_request(server, fetcher, tmp_path):
    with pytest.raises(FetchError, match="unsupported digest algorithm 'crc32'") as err:
        fetcher.download(server.url + "/call911.jpg", tmp_path / "f",
                         digest={"algorithm": "crc32", "value": "1234"})
    assert err.value.permanent
    assert server.hits["/call911.jpg"] == 0


@pytest.mark.parametrize("policy, url, words", [
    (UrlPolicy(), "ftp://h/x", ["scheme 'ftp' is not allowed", "allowed: http, https"]),
    (UrlPolicy(), "file:///etc/passwd", ["file:// URLs are not allowed"]),
    (UrlPolicy(allow_file_urls=True), "file://server/share/x", ["names the host 'server'"]),
    (UrlPolicy(allow_file_urls=True), "gopher://h/x", ["allowed: http, https, file"]),
    (UrlPolicy(allowed_hosts=["Repo.Example.org", "cdn.example.org"]), "https://evil.example/x",
     ["host 'evil.example' is not allowed", "allowed hosts: cdn.example.org, repo.example.org"]),
    (UrlPolicy(), "http:///nohost", ["no host name"]),
])
def test_policy_refusals_are_permanent(policy, url, words, tmp_path):
    with pytest.raises(FetchError) as err:
        policy.check(url)
    assert err.value.permanent
    for word in words:
        assert word in str(err.value)
    with pytest.raises(FetchError):
        Fetcher(fast(), policy).download(url, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_policy_accepts_listed_hosts_in_any_case():
    UrlPolicy(allowed_hosts=["repo.example.org"]).check("HTTPS://Repo.Example.ORG:8443/a")
    UrlPolicy().check("http://anything.example/a")


def test_redirects_are_followed_within_the_policy(server, tmp_path):
    server.redirect("/old.jpg", "/call911.jpg")
    got = Fetcher(fast(), UrlPolicy(allowed_hosts=["127.0.0.1"])).download(
        server.url + "/old.jpg", tmp_path / "f", digest=md5())
    assert got.size == 87112 and server.hits["/call911.jpg"] == 1

    server.redirect("/away.jpg", "http://localhost:1/call911.jpg")
    refused = "redirected to http://localhost:1/call911.jpg, which is refused: host 'localhost'"
    with pytest.raises(FetchError, match=refused) as err:
        Fetcher(fast(), UrlPolicy(allowed_hosts=["127.0.0.1"])).get_bytes(server.url + "/away.jpg")
    assert err.value.permanent


def test_a_redirect_never_leads_to_a_local_file(server, tmp_path):
    server.redirect("/sneaky", "file:///etc/passwd")
    with pytest.raises(FetchError, match="redirected to a non-HTTP URL") as err:
        Fetcher(fast(), UrlPolicy(allow_file_urls=True)).get_bytes(server.url + "/sneaky")
    assert err.value.permanent


def test_credentials_never_appear_in_messages(server, tmp_path):
    seen = []
    fetcher = Fetcher(fast(), UrlPolicy(allowed_hosts=["127.0.0.1"]),
                      on_retry=lambda url, exc: seen.append(f"{url} {exc}"))
    secret_url = server.url.replace("//", "//depositor:s3cret@") + "/call911.jpg"
    server.fail_next("/call911.jpg", status=503, times=5)
    messages = []
    for url in (secret_url, secret_url.replace("call911", "missing"),
                secret_url.replace("127.0.0.1", "elsewhere.example")):
        with pytest.raises(FetchError) as err:
            fetcher.download(url, tmp_path / "f")
        messages += [str(err.value), err.value.url, repr(err.value)]
    assert len(seen) == 2 and len(messages) == 9
    for text in messages + seen:
        assert "s3cret" not in text and "depositor" not in text
    assert messages[3] == f"{server.url}/missing.jpg: not found (HTTP 404)"


def test_credentials_are_sent_to_the_server(tmp_path):
    # The userinfo is removed from messages, not from the request.
    import base64

    seen = []

    class Handler(QuietHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    with HandlerServer(Handler) as httpd:
        port = httpd.server_address[1]
        assert Fetcher(fast(), UrlPolicy()).get_bytes(f"http://u:p%40ss@127.0.0.1:{port}/") == b"ok"
    assert seen == ["Basic " + base64.b64encode(b"u:p@ss").decode()]


def test_cancel_before_start(server, fetcher, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(FetchCancelled) as err:
        fetcher.download(server.url + "/call911.jpg", tmp_path / "f", cancel=cancel)
    assert str(err.value) == "cancelled" and err.value.permanent is False
    assert list(tmp_path.iterdir()) == []


def test_cancel_between_chunks(tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "big.bin").write_bytes(b"x" * (4 << 20))
    cancel = threading.Event()
    counted = []

    def on_bytes(n):
        counted.append(n)
        cancel.set()

    with LoopbackServer(tmp_path / "srv") as srv:
        with pytest.raises(FetchCancelled):
            Fetcher(fast(), UrlPolicy()).download(srv.url + "/big.bin", tmp_path / "out" / "big",
                                                  cancel=cancel, on_bytes=on_bytes)
        assert srv.hits["/big.bin"] == 1
    assert len(counted) == 1 and counted[0] < 4 << 20
    assert list((tmp_path / "out").iterdir()) == []


def test_cancel_during_backoff(server, tmp_path):
    cancel = threading.Event()
    slow = HttpSettings(retries=3, backoff_initial=30, backoff_max=30)
    fetcher = Fetcher(slow, UrlPolicy(), on_retry=lambda url, exc: cancel.set())
    server.fail_next("/call911.jpg", status=503, times=5)
    with pytest.raises(FetchCancelled):
        fetcher.download(server.url + "/call911.jpg", tmp_path / "f", cancel=cancel)
    assert server.hits["/call911.jpg"] == 1


def test_on_bytes_counts_every_byte(server, fetcher, tmp_path):
    counted = []
    fetcher.download(server.url + "/call911.jpg", tmp_path / "f", on_bytes=counted.append)
    assert sum(counted) == 87112


def test_head_size(server, fetcher):
    assert fetcher.head_size(server.url + "/bigHunt2.jpg") == 76935
    assert server.hits["/bigHunt2.jpg"] == 1


def test_head_size_falls_back_to_get_when_head_is_refused(server, fetcher):
    server.fail_next("/bigHunt2.jpg", status=405, method="HEAD")
    assert fetcher.head_size(server.url + "/bigHunt2.jpg") == 76935
    assert server.hits["/bigHunt2.jpg"] == 2


def test_head_size_of_a_missing_file_is_permanent(server, fetcher):
    with pytest.raises(FetchError, match="not found") as err:
        fetcher.head_size(server.url + "/missing")
    assert err.value.permanent


def test_get_bytes_limit(server, fetcher):
    url = server.url + "/4blocks.checkm"
    with pytest.raises(FetchError, match="larger than the limit of 100 bytes") as err:
        fetcher.get_bytes(url, 100)
    assert err.value.permanent
    whole = (MERRITT / "4blocks.checkm").read_bytes()
    assert fetcher.get_bytes(url, 100, truncate=True) == whole[:100]
    assert fetcher.get_bytes(url) == whole


def test_file_urls_when_allowed(tmp_path):
    fetcher = Fetcher(fast(), UrlPolicy(allow_file_urls=True))
    url = (MERRITT / "call911.jpg").as_uri()
    assert fetcher.head_size(url) == 87112
    assert fetcher.get_bytes(url, 10, truncate=True) == (MERRITT / "call911.jpg").read_bytes()[:10]
    got = fetcher.download(url, tmp_path / "c.jpg", digest=md5(), expected_size=87112)
    assert got.digests["md5"] == CALL911_MD5
    with pytest.raises(FetchError, match="cannot be read: No such file") as err:
        fetcher.download((MERRITT / "nope.jpg").as_uri(), tmp_path / "n")
    assert err.value.permanent
    with pytest.raises(FetchError, match="md5 expected"):
        fetcher.download(url, tmp_path / "d.jpg", digest=md5("1" * 32))
    assert not (tmp_path / "d.jpg").exists()


def test_map_keeps_order_runs_everything_and_raises_the_first_error(server, fetcher, tmp_path):
    names = ["call911.jpg", "missing1", "4blocks.jpg", "missing2", "bigHunt.txt"]
    with pytest.raises(FetchError, match="missing1"):
        fetcher.map(lambda n: fetcher.download(f"{server.url}/{n}", tmp_path / n), names)
    assert all(server.hits["/" + n] == 1 for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4blocks.jpg", "bigHunt.txt",
                                                          "call911.jpg"]
    sizes = fetcher.map(lambda n: fetcher.head_size(f"{server.url}/{n}"),
                        ["call911.jpg", "bigHunt.txt", "4blocks.txt"])
    assert sizes == [87112, 33, 265]


# -- digests (the fetcher's checks rest on them) -----------------------------------------------

@pytest.mark.parametrize("name, canonical", [
    ("MD5", "md5"), ("md5", "md5"), ("sha-256", "sha256"), ("SHA256", "sha256"),
    ("SHA-1", "sha1"), (" sha512 ", "sha512"), ("sha_256", "sha256"),
])
def test_normalize_algorithm(name, canonical):
    assert normalize_algorithm(name) == canonical


@pytest.mark.parametrize("name", ["crc32", "sha3-256", "", "md"])
def test_unsupported_algorithm_names_the_supported_ones(name):
    with pytest.raises(ValueError, match=f"unsupported digest algorithm {name!r}; "
                                         "supported: md5, sha1, sha256, sha512"):
        normalize_algorithm(name)


def test_file_digests_of_a_merritt_file():
    path = MERRITT / "call911.jpg"
    assert file_digest(path, "MD5") == CALL911_MD5
    assert file_digests(path, ["md5", "SHA-256", "sha1"]) == {
        "md5": CALL911_MD5, "sha256": CALL911_SHA256,
        "sha1": hashlib.sha1(path.read_bytes()).hexdigest()}


def test_file_digest_streams_files_larger_than_a_chunk(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"0123456789" * 300_000)
    assert file_digest(big, "sha512") == hashlib.sha512(big.read_bytes()).hexdigest()


def test_normalize_digest():
    assert normalize_digest("MD5", " " + CALL911_MD5.upper()) == md5()
    with pytest.raises(ValueError, match="md5 value must be 32 hexadecimal digits, found 'xyz'"):
        normalize_digest("md5", "xyz")
    with pytest.raises(ValueError, match="sha1 value must be 40"):
        normalize_digest("sha1", "g" * 40)
