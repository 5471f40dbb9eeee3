"""Storage against a real folder and a real S3 API server (moto_server on loopback)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from zkqueue import zkserver
from zkqueue.storage import (
    FileStore,
    S3Store,
    StorageError,
    Stored,
    object_key,
    open_store,
)

ARK = "ark:/99999/fk40000001"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# keys


def test_object_key_quotes_the_ark_into_one_segment():
    assert object_key(ARK, 2, "producer", "images/a b.jpg") == (
        "ark%3A%2F99999%2Ffk40000001/2/producer/images/a b.jpg"
    )
    assert object_key(ARK, 1, "system", "mrt-erc.txt").split("/")[:3] == [
        "ark%3A%2F99999%2Ffk40000001",
        "1",
        "system",
    ]


@pytest.mark.parametrize(
    "args",
    [
        (ARK, 1, "other", "a.txt"),
        (ARK, 0, "producer", "a.txt"),
        (ARK, True, "producer", "a.txt"),
        (ARK, 1, "producer", "../a.txt"),
        (ARK, 1, "producer", "/etc/passwd"),
        (ARK, 1, "producer", "a//b"),
        (ARK, 1, "producer", "a/./b"),
        (ARK, 1, "producer", ""),
        (ARK, 1, "producer", "a\nb"),
        ("", 1, "producer", "a"),
    ],
)
def test_object_key_refuses_unsafe_input(args):
    with pytest.raises(ValueError):
        object_key(*args)


# ---------------------------------------------------------------------------------------------
# file store


@pytest.fixture
def file_store(tmp_path) -> FileStore:
    store = open_store("file://storage", base_dir=tmp_path)
    assert isinstance(store, FileStore)
    return store


def test_open_store_resolves_relative_file_urls_against_base_dir(tmp_path):
    store = open_store("file://var/storage", base_dir=tmp_path)
    assert store.url == f"file://{tmp_path}/var/storage"
    absolute = open_store(f"file://{tmp_path}/abs", base_dir=Path("/elsewhere"))
    assert absolute.url == f"file://{tmp_path}/abs"


@pytest.mark.parametrize("url", ["ftp://host/x", "file://", "s3://", "gs://bucket/x"])
def test_open_store_refuses_unusable_urls(url):
    with pytest.raises(StorageError) as err:
        open_store(url)
    assert err.value.permanent


def test_file_store_round_trip(file_store, tmp_path):
    data = b"preserve me\n" * 100
    src = write(tmp_path / "in" / "a.txt", data)
    key = object_key(ARK, 1, "producer", "dir/a.txt")

    assert not file_store.exists(key, len(data), sha(data))
    stored = file_store.put_file(key, src, sha(data))

    assert stored == Stored(key, len(data), sha(data))
    assert file_store.get_bytes(key) == data
    assert file_store.exists(key, len(data), sha(data))
    assert not file_store.exists(key, len(data), sha(b"other"))
    assert not file_store.exists(key, len(data) + 1, sha(data))
    target = (
        tmp_path / "storage" / "ark%3A%2F99999%2Ffk40000001" / "1" / "producer" / "dir" / "a.txt"
    )
    assert target.read_bytes() == data
    assert file_store.location(key) == target.as_uri()
    leftovers = [p.name for p in target.parent.iterdir() if p.name != "a.txt"]
    assert leftovers == []


def test_file_store_does_not_rewrite_identical_content(file_store, tmp_path):
    data = b"same bytes"
    src = write(tmp_path / "a.txt", data)
    key = object_key(ARK, 1, "producer", "a.txt")
    file_store.put_file(key, src, sha(data))
    target = tmp_path / "storage" / Path(*key.split("/"))
    before = target.stat()

    time.sleep(0.01)
    file_store.put_file(key, src, sha(data))

    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_file_store_replaces_different_content_at_the_key(file_store, tmp_path):
    key = object_key(ARK, 1, "producer", "a.txt")
    file_store.put_file(key, write(tmp_path / "old", b"old"), sha(b"old"))
    file_store.put_file(key, write(tmp_path / "new", b"new content"), sha(b"new content"))
    assert file_store.get_bytes(key) == b"new content"


def test_file_store_refuses_a_source_with_the_wrong_digest(file_store, tmp_path):
    src = write(tmp_path / "a.txt", b"actual")
    key = object_key(ARK, 1, "producer", "a.txt")
    with pytest.raises(StorageError) as err:
        file_store.put_file(key, src, sha(b"expected"))
    assert err.value.permanent
    assert sha(b"expected") in str(err.value)
    with pytest.raises(StorageError):
        file_store.get_bytes(key)
    root = tmp_path / "storage"
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def test_file_store_missing_key_and_missing_source_are_permanent(file_store, tmp_path):
    key = object_key(ARK, 1, "producer", "nope.txt")
    with pytest.raises(StorageError) as err:
        file_store.get_bytes(key)
    assert err.value.permanent
    with pytest.raises(StorageError) as err:
        file_store.put_file(key, tmp_path / "missing", sha(b""))
    assert err.value.permanent


def test_file_store_delete_prefix_deletes_only_that_object(file_store, tmp_path):
    src = write(tmp_path / "a.txt", b"x")
    other_ark = ARK + "0"  # its quoted form starts with ARK's quoted form
    keys = [object_key(ARK, v, area, "a.txt") for v in (1, 2) for area in ("producer", "system")]
    keep = object_key(other_ark, 1, "producer", "a.txt")
    for key in [*keys, keep]:
        file_store.put_file(key, src, sha(b"x"))

    deleted = file_store.delete_prefix(quote_ark(ARK) + "/")

    assert deleted == 4
    assert file_store.exists(keep, 1, sha(b"x"))
    assert not (tmp_path / "storage" / quote_ark(ARK)).exists()
    assert file_store.delete_prefix(quote_ark(ARK) + "/") == 0


def test_delete_prefix_refuses_empty_prefix_and_escapes(file_store):
    for prefix in ("", "../x/"):
        with pytest.raises(StorageError) as err:
            file_store.delete_prefix(prefix)
        assert err.value.permanent


def quote_ark(ark: str) -> str:
    return object_key(ark, 1, "system", "x").split("/")[0]


# ---------------------------------------------------------------------------------------------
# S3 through a real moto_server


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    if shutil.which("moto_server") is None:
        pytest.fail("moto_server is not installed (pip install 'moto[server]')")
    port = zkserver.free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing-secret")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def s3_client(endpoint: str, attempts: int = 3):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": attempts}),
    )


@pytest.fixture
def bucket(s3_endpoint) -> str:
    name = f"zkq-{uuid.uuid4().hex[:16]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3_endpoint, bucket) -> S3Store:
    store = open_store(f"s3://{bucket}/pre/fix", endpoint_url=s3_endpoint, region="us-east-1")
    assert isinstance(store, S3Store)
    return store


def test_s3_round_trip_under_the_prefix_with_sha256_checksum(
    s3_store, s3_endpoint, bucket, tmp_path
):
    data = os.urandom(10_000)
    key = object_key(ARK, 1, "producer", "dir/a.bin")
    assert not s3_store.exists(key, len(data), sha(data))

    stored = s3_store.put_file(key, write(tmp_path / "a.bin", data), sha(data))

    assert stored == Stored(key, len(data), sha(data))
    assert s3_store.get_bytes(key) == data
    assert s3_store.exists(key, len(data), sha(data))
    assert not s3_store.exists(key, len(data), sha(b"other"))
    assert s3_store.url == f"s3://{bucket}/pre/fix"
    assert s3_store.location(key) == f"s3://{bucket}/pre/fix/{key}"
    head = s3_client(s3_endpoint).head_object(
        Bucket=bucket, Key=f"pre/fix/{key}", ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert head["Metadata"]["sha256"] == sha(data)


def test_s3_does_not_rewrite_identical_content(s3_store, s3_endpoint, bucket, tmp_path):
    client = s3_client(s3_endpoint)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key = object_key(ARK, 1, "producer", "a.txt")
    src = write(tmp_path / "a.txt", b"same")

    s3_store.put_file(key, src, sha(b"same"))
    s3_store.put_file(key, src, sha(b"same"))
    versions = client.list_object_versions(Bucket=bucket, Prefix=f"pre/fix/{key}")["Versions"]
    assert len(versions) == 1

    s3_store.put_file(key, write(tmp_path / "b.txt", b"changed"), sha(b"changed"))
    versions = client.list_object_versions(Bucket=bucket, Prefix=f"pre/fix/{key}")["Versions"]
    assert len(versions) == 2
    assert s3_store.get_bytes(key) == b"changed"


def test_s3_multipart_upload_is_verified_and_recognised(s3_endpoint, bucket, tmp_path):
    mib = 1024 * 1024
    store = S3Store(
        bucket, "", s3_client(s3_endpoint), multipart_threshold=5 * mib, part_size=5 * mib
    )
    data = os.urandom(5 * mib + 100)
    key = object_key(ARK, 1, "producer", "big.bin")
    src = write(tmp_path / "big.bin", data)

    store.put_file(key, src, sha(data))

    head = s3_client(s3_endpoint).head_object(Bucket=bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-2")
    assert store.exists(key, len(data), sha(data))
    assert not store.exists(key, len(data), sha(b"x"))
    assert store.get_bytes(key) == data
    assert store.url == f"s3://{bucket}"


def test_s3_refuses_a_source_with_the_wrong_digest(s3_store, s3_endpoint, bucket, tmp_path):
    key = object_key(ARK, 1, "producer", "a.txt")
    with pytest.raises(StorageError) as err:
        s3_store.put_file(key, write(tmp_path / "a.txt", b"actual"), sha(b"expected"))
    assert err.value.permanent
    assert "Contents" not in s3_client(s3_endpoint).list_objects_v2(Bucket=bucket)


def test_s3_missing_bucket_is_a_clear_permanent_error(s3_endpoint, tmp_path):
    store = open_store("s3://no-such-bucket-zkq/x", endpoint_url=s3_endpoint, region="us-east-1")
    key = object_key(ARK, 1, "producer", "a.txt")
    src = write(tmp_path / "a.txt", b"a")
    for call in (
        lambda: store.put_file(key, src, sha(b"a")),
        lambda: store.exists(key, 1, sha(b"a")),
        lambda: store.get_bytes(key),
    ):
        with pytest.raises(StorageError) as err:
            call()
        assert err.value.permanent
        assert "no-such-bucket-zkq" in str(err.value)
        assert "does not exist" in str(err.value)
    names = [b["Name"] for b in s3_client(s3_endpoint).list_buckets()["Buckets"]]
    assert "no-such-bucket-zkq" not in names  # nothing was created on the way


def test_s3_missing_key_is_permanent(s3_store):
    with pytest.raises(StorageError) as err:
        s3_store.get_bytes(object_key(ARK, 1, "producer", "nope"))
    assert err.value.permanent
    assert "no object" in str(err.value)


def test_s3_delete_prefix_pages_through_and_spares_other_objects(s3_endpoint, bucket, tmp_path):
    store = S3Store(bucket, "pre", s3_client(s3_endpoint), page_size=3)
    src = write(tmp_path / "a.txt", b"x")
    keys = [object_key(ARK, 1, "producer", f"f{i}.txt") for i in range(7)]
    keep = object_key(ARK + "0", 1, "producer", "f0.txt")
    for key in [*keys, keep]:
        store.put_file(key, src, sha(b"x"))

    assert store.delete_prefix(quote_ark(ARK) + "/") == 7

    listed = s3_client(s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in listed] == [f"pre/{keep}"]
    with pytest.raises(StorageError):
        store.delete_prefix("")


def test_s3_unreachable_endpoint_is_transient(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    dead = f"http://127.0.0.1:{zkserver.free_port()}"
    store = S3Store("bucket", "", s3_client(dead, attempts=1))
    key = object_key(ARK, 1, "producer", "a.txt")
    with pytest.raises(StorageError) as err:
        store.put_file(key, write(tmp_path / "a.txt", b"a"), sha(b"a"))
    assert not err.value.permanent
    assert "testing-secret" not in str(err.value)
