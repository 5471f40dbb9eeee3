"""Where ingested objects land: a local folder (``file://``) or S3 and S3-compatible stores (``s3://``).

Guarantees shared by both stores:

- :meth:`Store.put_file` is idempotent: a key that already holds the same size and SHA-256 is not
  rewritten, so a storing step that is run again costs reads, not writes.
- It refuses a source file whose SHA-256 is not the one the caller expects (``permanent=True``),
  and it returns only after reading back what the store now holds and finding the expected size and
  digest; otherwise it raises :class:`StorageError`.
- Keys are ``/``-separated relative paths; empty, ``.`` and ``..`` segments are refused, so no key
  reaches outside the store's root or prefix.
- Errors never carry credentials.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

AREAS = ("producer", "system")
CHUNK = 1024 * 1024
TMP_SUFFIX = ".zkq-tmp"


class StorageError(Exception):
    """A store operation failed; ``permanent`` says whether trying again can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Stored:
    key: str
    size: int
    sha256: str
    written: bool = True  # False: the key already held these bytes, nothing was uploaded


class Store(Protocol):
    url: str

    def put_file(self, key: str, path: Path, sha256: str) -> Stored: ...

    def exists(self, key: str, size: int, sha256: str) -> bool: ...

    def get_bytes(self, key: str) -> bytes: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def location(self, key: str) -> str: ...


def object_key(ark: str, version: int, area: str, name: str) -> str:
    """The storage key of one file of an object version.

    The ARK is percent-encoded into a single segment, so different ARKs never share a prefix
    that ends in ``/``. ``name`` must be a safe relative path (ValueError otherwise).
    """
    if not ark:
        raise ValueError("object_key needs an ARK")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer, not {version!r}")
    if area not in AREAS:
        raise ValueError(f"area must be one of {', '.join(AREAS)}, not {area!r}")
    check_key(name)
    return f"{quote(ark, safe='')}/{version}/{area}/{name}"


def check_key(key: str) -> str:
    """Raise ValueError unless ``key`` is a relative path of non-empty, non-dot segments."""
    if not key or key.startswith("/"):
        raise ValueError(f"not a relative storage path: {key!r}")
    if any(ord(c) < 32 or c == "\x7f" for c in key):
        raise ValueError(f"control character in storage path: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"unsafe segment {segment!r} in storage path {key!r}")
    return key


def _key(key: str) -> str:
    try:
        return check_key(key)
    except ValueError as exc:
        raise StorageError(str(exc), permanent=True) from exc


def _check_sha256(sha256: str) -> str:
    value = sha256.lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise StorageError(f"not a SHA-256 hex digest: {sha256!r}", permanent=True)
    return value


def _chunks(stream: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def _digests(path: Path) -> tuple[int, str, str]:
    """Size, SHA-256 hex and MD5 hex of a local file, in one pass."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        with open(path, "rb") as stream:
            for chunk in _chunks(stream):
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
    except OSError as exc:
        message = f"cannot read source file {path}: {exc.strerror}"
        raise StorageError(message, permanent=True) from exc
    return size, sha.hexdigest(), md5.hexdigest()


def _source_mismatch(path: Path, expected: str, actual: str) -> StorageError:
    return StorageError(
        f"source file {path} has SHA-256 {actual}, expected {expected}", permanent=True
    )


def _read_source(path: Path, sha256: str) -> tuple[int, str]:
    """Size and MD5 hex of the source file, refused unless its SHA-256 is ``sha256``."""
    size, actual, md5 = _digests(path)
    if actual != sha256:
        raise _source_mismatch(path, sha256, actual)
    return size, md5


# ---------------------------------------------------------------------------------------------
# Local folder


class FileStore:
    """Objects as files under ``root``; every write is a temp file, fsync, rename, fsync of the dir.

    After a crash a key holds either its old content or its new content, never a partial file.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_key(key).split("/"))

    def location(self, key: str) -> str:
        return self._path(key).as_uri()

    def exists(self, key: str, size: int, sha256: str) -> bool:
        path = self._path(key)
        try:
            if not path.is_file() or path.stat().st_size != size:
                return False
        except OSError:
            return False
        return _digests(path)[1] == _check_sha256(sha256)

    def put_file(self, key: str, path: Path, sha256: str) -> Stored:
        sha256 = _check_sha256(sha256)
        target = self._path(key)
        size, _ = _read_source(path, sha256)
        if self.exists(key, size, sha256):
            return Stored(key, size, sha256, written=False)
        try:
            self._write(path, target, sha256)
        except OSError as exc:
            raise StorageError(f"cannot write {target.as_uri()}: {exc.strerror}") from exc
        stored_size, stored_sha, _ = _digests(target)
        if (stored_size, stored_sha) != (size, sha256):
            raise StorageError(
                f"verification of {target.as_uri()} failed: holds {stored_size} bytes with SHA-256 "
                f"{stored_sha}, expected {size} bytes with {sha256}"
            )
        return Stored(key, size, sha256)

    def _write(self, source: Path, target: Path, sha256: str) -> None:
        _makedirs_durable(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                for chunk in _chunks(src):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            # The source may have changed since it was hashed; never publish other bytes.
            if digest.hexdigest() != sha256:
                raise _source_mismatch(source, sha256, digest.hexdigest())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"no object at {path.as_uri()}", permanent=True) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path.as_uri()}: {exc.strerror}") from exc

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key that starts with ``prefix`` (string prefix, as in S3); returns how many.

        An empty prefix is refused: it would delete the whole store.
        """
        if not prefix:
            raise StorageError("refusing to delete with an empty prefix", permanent=True)
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(folder) if folder else self.root
        if not start.is_dir():
            return 0
        deleted = 0
        try:
            for dirpath, _dirs, filenames in os.walk(start, topdown=False):
                here = Path(dirpath)
                rel_dir = here.relative_to(self.root).as_posix()
                rel_dir = "" if rel_dir == "." else rel_dir + "/"
                for name in filenames:
                    if (rel_dir + name).startswith(prefix):
                        (here / name).unlink(missing_ok=True)
                        deleted += not name.endswith(TMP_SUFFIX)
                if rel_dir.startswith(prefix):
                    try:
                        here.rmdir()
                    except OSError:
                        pass  # not empty: it holds keys outside the prefix
        except OSError as exc:
            raise StorageError(f"cannot delete under {start.as_uri()}: {exc.strerror}") from exc
        return deleted


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(folder: Path) -> None:
    """mkdir -p that fsyncs the parent of each folder it creates (else a crash may lose it)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        _fsync_dir(path.parent)


# ---------------------------------------------------------------------------------------------
# S3


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


class S3Store:
    """Objects in an existing bucket under an optional prefix.

    Uploads carry the expected SHA-256 (``ChecksumSHA256``) so S3 itself rejects other bytes; each
    object also records its SHA-256 as user metadata (``sha256``) so multipart objects, whose S3
    checksum is a checksum of part checksums, can be recognised later. Files larger than
    ``multipart_threshold`` go up in ``part_size`` parts.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Any,
        *,
        multipart_threshold: int = 256 * 1024 * 1024,
        part_size: int = 64 * 1024 * 1024,
        page_size: int = 1000,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.page_size = page_size
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._bucket_seen = False

    def _full(self, key: str) -> str:
        _key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    # errors -----------------------------------------------------------------------------------

    def _error(self, exc: Exception, doing: str) -> StorageError:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code == "NoSuchBucket":
                return self._no_bucket()
            text = f"{doing}: {code or status} {error.get('Message', '')}".rstrip()
            transient = (
                status >= 500
                or status in (408, 429)
                or code
                in (
                    "BadDigest",
                    "RequestTimeout",
                    "SlowDown",
                    "Throttling",
                    "ThrottlingException",
                )
            )
            return StorageError(text, permanent=not transient)
        if isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError):
            return StorageError(f"{doing}: {type(exc).__name__}: {exc}")
        return StorageError(f"{doing}: {type(exc).__name__}: {exc}", permanent=True)

    def _no_bucket(self) -> StorageError:
        return StorageError(
            f"bucket {self.bucket!r} does not exist (storage {self.url}); it must be created "
            "before ingesting",
            permanent=True,
        )

    def _call(self, doing: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, doing) from exc

    def _head(self, key: str) -> dict | None:
        """head_object, or None when the key is absent (and the bucket is known to exist)."""
        full = self._full(key)
        try:
            return self.client.head_object(Bucket=self.bucket, Key=full, ChecksumMode="ENABLED")
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status != 404:
                raise self._error(exc, f"cannot read {self.location(key)}") from exc
        except BotoCoreError as exc:
            raise self._error(exc, f"cannot read {self.location(key)}") from exc
        # A HEAD reply has no body, so a missing bucket and a missing key look the same.
        self._ensure_bucket()
        return None

    def _ensure_bucket(self) -> None:
        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise self._no_bucket() from exc
            raise self._error(exc, f"cannot reach bucket {self.bucket!r}") from exc
        except BotoCoreError as exc:
            raise self._error(exc, f"cannot reach bucket {self.bucket!r}") from exc
        self._bucket_seen = True

    # operations -------------------------------------------------------------------------------

    def exists(self, key: str, size: int, sha256: str) -> bool:
        sha256 = _check_sha256(sha256)
        head = self._head(key)
        if head is None or head.get("ContentLength") != size:
            return False
        checksum = head.get("ChecksumSHA256")
        if checksum and not _is_multipart(head):
            return checksum == _b64(sha256)
        return head.get("Metadata", {}).get("sha256") == sha256

    def put_file(self, key: str, path: Path, sha256: str) -> Stored:
        sha256 = _check_sha256(sha256)
        full = self._full(key)
        size, md5 = _read_source(path, sha256)
        if self.exists(key, size, sha256):
            return Stored(key, size, sha256, written=False)
        if size > self.multipart_threshold:
            expected_checksum, expected_etag = self._put_multipart(key, full, path, sha256)
        else:
            with open(path, "rb") as body:
                self._call(
                    f"cannot upload {self.location(key)}",
                    "put_object",
                    Bucket=self.bucket,
                    Key=full,
                    Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(sha256),
                    Metadata={"sha256": sha256},
                )
            expected_checksum, expected_etag = _b64(sha256), md5
        self._verify(key, size, expected_checksum, expected_etag)
        self._bucket_seen = True
        return Stored(key, size, sha256)

    def _put_multipart(self, key: str, full: str, path: Path, sha256: str) -> tuple[str, str]:
        """Upload in parts; returns the composite SHA-256 checksum and ETag S3 should report."""
        doing = f"cannot upload {self.location(key)}"
        upload = self._call(
            doing,
            "create_multipart_upload",
            Bucket=self.bucket,
            Key=full,
            ChecksumAlgorithm="SHA256",
            Metadata={"sha256": sha256},
        )
        upload_id = upload["UploadId"]
        parts, part_shas, part_md5s = [], [], []
        try:
            with open(path, "rb") as stream:
                for number, chunk in enumerate(_chunks(stream, self.part_size), start=1):
                    part_sha = hashlib.sha256(chunk).digest()
                    part_shas.append(part_sha)
                    part_md5s.append(hashlib.md5(chunk, usedforsecurity=False).digest())
                    reply = self._call(
                        doing,
                        "upload_part",
                        Bucket=self.bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=base64.b64encode(part_sha).decode("ascii"),
                    )
                    parts.append(
                        {
                            "PartNumber": number,
                            "ETag": reply["ETag"],
                            "ChecksumSHA256": base64.b64encode(part_sha).decode("ascii"),
                        }
                    )
            self._call(
                doing,
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            raise
        composite = base64.b64encode(hashlib.sha256(b"".join(part_shas)).digest()).decode("ascii")
        etag = hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest()
        return composite, f"{etag}-{len(parts)}"

    def _verify(self, key: str, size: int, checksum: str, etag: str) -> None:
        head = self._head(key)
        where = self.location(key)
        if head is None:
            raise StorageError(f"verification of {where} failed: the object is not there")
        if head.get("ContentLength") != size:
            raise StorageError(
                f"verification of {where} failed: holds {head.get('ContentLength')} bytes, "
                f"expected {size}"
            )
        reported = head.get("ChecksumSHA256")
        if reported:
            # Multipart checksums may be reported with a "-<parts>" suffix.
            if reported.split("-", 1)[0] != checksum:
                raise StorageError(
                    f"verification of {where} failed: SHA-256 checksum {reported}, "
                    f"expected {checksum}"
                )
            return
        reported_etag = str(head.get("ETag", "")).strip('"')
        if reported_etag != etag:
            raise StorageError(
                f"verification of {where} failed: the store returned no SHA-256 checksum and "
                f"ETag {reported_etag!r}, expected {etag!r}",
                permanent=True,
            )

    def get_bytes(self, key: str) -> bytes:
        where = self.location(key)
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            return reply["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                raise StorageError(f"no object at {where}", permanent=True) from exc
            raise self._error(exc, f"cannot read {where}") from exc
        except BotoCoreError as exc:
            raise self._error(exc, f"cannot read {where}") from exc

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key that starts with ``prefix``; returns how many. Empty prefix refused."""
        if not prefix:
            raise StorageError("refusing to delete with an empty prefix", permanent=True)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        doing = f"cannot delete s3://{self.bucket}/{full}*"
        deleted = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.page_size}
        )
        try:
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                reply = self._call(
                    doing,
                    "delete_objects",
                    Bucket=self.bucket,
                    Delete={"Objects": keys, "Quiet": True},
                )
                errors = reply.get("Errors", [])
                if errors:
                    first = errors[0]
                    raise StorageError(
                        f"{doing}: {len(errors)} keys not deleted, e.g. {first.get('Key')}: "
                        f"{first.get('Code')} {first.get('Message', '')}".rstrip()
                    )
                deleted += len(keys)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, doing) from exc
        return deleted


def _is_multipart(head: dict) -> bool:
    return head.get("ChecksumType") == "COMPOSITE" or "-" in str(head.get("ETag", ""))


# ---------------------------------------------------------------------------------------------


def open_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    base_dir: Path | None = None,
) -> Store:
    """A store for ``file://PATH`` or ``s3://bucket/prefix``.

    A relative ``file://`` PATH is resolved against ``base_dir`` (default: the current directory)
    and taken literally (no percent-decoding). Opening contacts nothing and creates nothing;
    S3 credentials come from boto3's usual chain.
    """
    if url.startswith("file://"):
        raw = url[len("file://") :]
        if not raw:
            raise StorageError(f"storage URL {url!r} names no folder", permanent=True)
        path = Path(raw)
        if not path.is_absolute():
            path = Path(base_dir if base_dir is not None else Path.cwd()) / path
        return FileStore(path)
    if url.startswith("s3://"):
        parts = urlsplit(url)
        if not parts.netloc or parts.query or parts.fragment:
            raise StorageError(f"storage URL {url!r} is not s3://bucket/prefix", permanent=True)
        return S3Store(parts.netloc, parts.path, _s3_client(endpoint_url, region))
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise StorageError(
        f"unsupported storage URL scheme {scheme!r}: use file://PATH or s3://bucket/prefix",
        permanent=True,
    )


def _s3_client(endpoint_url: str | None, region: str | None) -> Any:
    if endpoint_url and urlsplit(endpoint_url).password:
        raise StorageError(
            "put S3 credentials in the environment, not in endpoint_url", permanent=True
        )
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        # S3-compatible servers on a host name or IP rarely support virtual-host buckets.
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config
    )
