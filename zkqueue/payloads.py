"""What a submitted payload means: the jobs a batch expands into (expand), and the files an object
manifest lists (object_files). Both refuse bad rows with a ManifestError naming the line."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from handlers.digests import normalize_digest
from zkqueue import checkm
from zkqueue.checkm import Entry, Manifest, ManifestError
from zkqueue.safepaths import UnsafePath, first_conflict, safe_relpath

SINGLE_KEY = "000000"

_MANIFEST_TYPES = {
    "object": "object-manifest",
    "batch": "batch-manifest",
    "container-batch": "container-batch-manifest",
    "single-file-batch": "single-file-batch-manifest",
}
_PAYLOAD_TYPES = {"batch": "manifest", "container-batch": "container", "single-file-batch": "file"}


@dataclass(frozen=True)
class JobSpec:
    """One job to create. `key` is the same every time the same manifest is expanded, so a worker
    that resumes an interrupted expansion can tell which jobs already exist."""

    key: str
    payload_url: str
    payload_type: str
    file_name: str
    local_id: str = ""
    primary_id: str = ""
    title: str = ""
    creator: str = ""
    date: str = ""
    digest: dict | None = None
    size: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class Expansion:
    manifest_type: str
    jobs: list[JobSpec]


@dataclass(frozen=True)
class FileSpec:
    name: str
    url: str
    digest: dict | None
    size: int | None
    line: int


def url_file_name(url: str) -> str:
    """The last path segment of a URL, percent-decoded ("" when the path ends with "/")."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def _row_name(entry: Entry, url: str, source: str) -> str:
    # The URL stays out of messages: it may carry credentials, and the line number suffices.
    name = entry.file_name or url_file_name(url)
    if not name:
        raise ManifestError(
            source, entry.line,
            "no nfo:fileName, and the URL does not end in a file name; give nfo:fileName",
        )
    try:
        return safe_relpath(name)
    except UnsafePath as exc:
        raise ManifestError(source, entry.line, str(exc)) from None


def _row_digest(entry: Entry, source: str) -> dict | None:
    if not entry.hash_algorithm:
        return None
    try:
        return normalize_digest(entry.hash_algorithm, entry.hash_value)
    except ValueError as exc:
        raise ManifestError(source, entry.line, str(exc)) from None


def expand(payload_url: str, data: bytes, source_name: str) -> Expansion:
    """The jobs a batch payload stands for.

    - not a checkm manifest: one "file" job named after the URL's last path segment;
    - an object manifest: one "manifest" job for the payload URL itself (its files are read
      when the job runs, see object_files);
    - a batch manifest of any kind: one job per row, keyed by the row's line number, with the
      row's URL resolved against payload_url and its metadata copied.

    Raises ManifestError (naming the line where there is one) for a manifest that does not parse,
    an empty batch, unusable names or digests, or a local identifier used twice in one batch.
    """
    if not checkm.looks_like_checkm(data):
        name = url_file_name(payload_url)
        try:
            name = safe_relpath(name)
        except UnsafePath as exc:
            raise ManifestError(
                source_name, None,
                f"the payload is a single file, but its URL gives no usable file name: {exc}",
            ) from None
        return Expansion("file", [JobSpec(SINGLE_KEY, payload_url, "file", name)])

    manifest = checkm.parse(data, source_name)
    if manifest.kind == "object":
        return Expansion("object-manifest", [JobSpec(SINGLE_KEY, payload_url, "manifest", "")])
    if not manifest.entries:
        raise ManifestError(source_name, None, "the batch manifest lists no objects (no rows)")

    payload_type = _PAYLOAD_TYPES[manifest.kind]
    local_id_lines: dict[str, int] = {}
    jobs = []
    for entry in manifest.entries:
        if entry.local_id:
            first = local_id_lines.setdefault(entry.local_id, entry.line)
            if first != entry.line:
                raise ManifestError(
                    source_name, entry.line,
                    f"local identifier {entry.local_id!r} is also used on line {first}; "
                    "each object in a batch needs its own",
                )
        url = urljoin(payload_url, entry.url)
        name = "" if payload_type == "manifest" else _row_name(entry, url, source_name)
        jobs.append(JobSpec(
            key=f"{entry.line:06d}",
            payload_url=url,
            payload_type=payload_type,
            file_name=name,
            local_id=entry.local_id,
            primary_id=entry.primary_id,
            title=entry.title,
            creator=entry.creator,
            date=entry.date,
            digest=_row_digest(entry, source_name),
            size=entry.size,
            line=entry.line,
        ))
    return Expansion(_MANIFEST_TYPES[manifest.kind], jobs)


def object_files(manifest: Manifest, *, base_url: str | None = None) -> list[FileSpec]:
    """The files of one object, in manifest order.

    Relative URLs are resolved against `base_url`, or against manifest.source when base_url is
    not given (so parse a fetched manifest with its URL as the source). Names come from
    nfo:fileName, else the URL's last path segment.

    Guarantees: every name is a safe relative path and no two names collide (equal, or one a
    folder of the other); every digest has a supported algorithm and a well-formed value.
    Otherwise ManifestError names the line(s).
    """
    source = manifest.source
    if manifest.kind != "object":
        raise ManifestError(
            source, None,
            f"expected an object manifest (profile mrt-ingest-manifest), "
            f"found {manifest.profile} ({manifest.kind})",
        )
    if not manifest.entries:
        raise ManifestError(source, None, "the object manifest lists no files (no rows)")
    base = base_url if base_url is not None else source
    files = []
    for entry in manifest.entries:
        url = urljoin(base, entry.url)
        files.append(FileSpec(
            name=_row_name(entry, url, source),
            url=url,
            digest=_row_digest(entry, source),
            size=entry.size,
            line=entry.line,
        ))
    conflict = first_conflict([f.name for f in files])
    if conflict:
        first, second, reason = conflict
        raise ManifestError(
            source, files[second].line, f"{reason} (see also line {files[first].line})"
        )
    return files
