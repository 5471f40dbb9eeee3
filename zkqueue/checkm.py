"""Parser for checkm 0.7 manifests as Merritt uses them (see DESIGN §5).

It checks the syntax only; what a manifest's rows mean for a batch or an object is decided in
zkqueue.payloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

KINDS = {
    "mrt-ingest-manifest": "object",
    "mrt-batch-manifest": "batch",
    "mrt-container-batch-manifest": "container-batch",
    "mrt-single-file-batch-manifest": "single-file-batch",
}

FIELDS = (
    "nfo:fileUrl",
    "nfo:hashAlgorithm",
    "nfo:hashValue",
    "nfo:fileSize",
    "nfo:fileLastModified",
    "nfo:fileName",
    "mrt:primaryIdentifier",
    "mrt:localIdentifier",
    "mrt:creator",
    "mrt:title",
    "mrt:date",
    "mrt:mimeType",
)

HEADER = "#%checkm_0.7"

_FIELD_BY_LOWER = {f.lower(): f for f in FIELDS}
_QUOTE_LIMIT = 80


class ManifestError(ValueError):
    """A manifest that cannot be used. str() is "<source> line <n>: <reason>" (or
    "<source>: <reason>" when no single line is at fault)."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = f"{source} line {line}" if line is not None else source
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Entry:
    """One row. `values` maps each declared field to its stripped value ("" when the row ends
    before that field)."""

    line: int
    values: dict[str, str]

    def _get(self, field: str) -> str:
        return self.values.get(field, "")

    @property
    def url(self) -> str:
        return self._get("nfo:fileUrl")

    @property
    def hash_algorithm(self) -> str:
        return self._get("nfo:hashAlgorithm")

    @property
    def hash_value(self) -> str:
        return self._get("nfo:hashValue")

    @property
    def size(self) -> int | None:
        value = self._get("nfo:fileSize")
        return int(value) if value else None

    @property
    def last_modified(self) -> str:
        return self._get("nfo:fileLastModified")

    @property
    def file_name(self) -> str:
        return self._get("nfo:fileName")

    @property
    def primary_id(self) -> str:
        return self._get("mrt:primaryIdentifier")

    @property
    def local_id(self) -> str:
        return self._get("mrt:localIdentifier")

    @property
    def creator(self) -> str:
        return self._get("mrt:creator")

    @property
    def title(self) -> str:
        return self._get("mrt:title")

    @property
    def date(self) -> str:
        return self._get("mrt:date")

    @property
    def mime_type(self) -> str:
        return self._get("mrt:mimeType")


@dataclass(frozen=True)
class Manifest:
    source: str
    profile: str
    kind: str
    fields: tuple[str, ...]
    entries: tuple[Entry, ...]


def _quote(text: str) -> str:
    if len(text) > _QUOTE_LIMIT:
        text = text[:_QUOTE_LIMIT] + "..."
    return repr(text)


def looks_like_checkm(data: bytes) -> bool:
    """True when the first non-blank line starts with "#%checkm" (any version, so that a
    manifest of the wrong version is reported as such rather than ingested as a file)."""
    head = data[:65536]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return head.lstrip(b" \t\r\n").startswith(b"#%checkm")


def _decode_lines(text: str | bytes, source: str) -> list[str]:
    if isinstance(text, bytes):
        if text.startswith(b"\xef\xbb\xbf"):
            text = text[3:]
        lines = []
        for number, raw in enumerate(text.split(b"\n"), start=1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ManifestError(
                    source, number,
                    f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "save the manifest as UTF-8",
                ) from None
    else:
        lines = text.removeprefix("\ufeff").split("\n")
    return [line.removesuffix("\r") for line in lines]


def _directive(stripped: str) -> tuple[str, list[str]]:
    parts = [p.strip() for p in stripped.split("|")]
    return parts[0].lower(), parts[1:]


def _kind_of(profile: str, source: str, number: int) -> str:
    segment = urlsplit(profile).path.rstrip("/").rsplit("/", 1)[-1]
    if segment not in KINDS:
        known = ", ".join(KINDS)
        raise ManifestError(
            source, number,
            f"unknown profile {_quote(profile)}; its last path segment must be one of: {known}",
        )
    return KINDS[segment]


def _parse_fields(values: list[str], source: str, number: int) -> tuple[str, ...]:
    if not values or values == [""]:
        raise ManifestError(source, number, "#%fields lists no field names")
    fields: list[str] = []
    for value in values:
        field = _FIELD_BY_LOWER.get(value.lower())
        if field is None:
            raise ManifestError(
                source, number,
                f"unknown field name {_quote(value)}; known fields: {' '.join(FIELDS)}",
            )
        if field in fields:
            raise ManifestError(source, number, f"field {field} is listed twice")
        fields.append(field)
    if "nfo:fileUrl" not in fields:
        raise ManifestError(source, number, "#%fields must include nfo:fileUrl")
    return tuple(fields)


def _parse_row(line: str, number: int, fields: tuple[str, ...], source: str) -> Entry:
    values = [v.strip() for v in line.split("|")]
    if len(values) > len(fields):
        raise ManifestError(
            source, number,
            f"expected at most {len(fields)} values (fields: {' '.join(fields)}), "
            f"found {len(values)}",
        )
    row = dict(zip(fields, values + [""] * (len(fields) - len(values)), strict=True))
    if not row["nfo:fileUrl"]:
        raise ManifestError(source, number, "no nfo:fileUrl: every row needs a URL first")
    size = row.get("nfo:fileSize", "")
    if size and not (size.isascii() and size.isdigit()):
        raise ManifestError(
            source, number,
            f"nfo:fileSize must be a whole number of bytes, found {_quote(size)}",
        )
    algorithm, digest = row.get("nfo:hashAlgorithm", ""), row.get("nfo:hashValue", "")
    if digest and not algorithm:
        raise ManifestError(
            source, number, "nfo:hashValue is given without nfo:hashAlgorithm (e.g. md5)"
        )
    if algorithm and not digest:
        raise ManifestError(
            source, number, f"nfo:hashAlgorithm {_quote(algorithm)} is given without nfo:hashValue"
        )
    return Entry(line=number, values=row)


def parse(text: str | bytes, source: str) -> Manifest:
    """Parse a checkm 0.7 manifest. `source` names it in every error (a URL or file name;
    pass it without credentials).

    Guarantees on success: the header, profile, fields and #%eof were all present, every row has
    a URL, no more values than fields, a non-negative integer size when one is given, and a hash
    algorithm and value together or neither. Otherwise ManifestError names the line.
    """
    lines = _decode_lines(text, source)
    header_seen = False
    profile = kind = ""
    profile_line = fields_line = 0
    fields: tuple[str, ...] = ()
    entries: list[Entry] = []
    eof_line = last_line = 0

    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped:
            last_line = number
        if eof_line:
            if stripped:
                raise ManifestError(
                    source, number,
                    f"text after #%eof (line {eof_line}): {_quote(stripped)}",
                )
            continue
        if not stripped:
            continue
        if not header_seen:
            name = stripped.split("|")[0].strip()
            if name == HEADER:
                header_seen = True
                continue
            if name.lower().startswith("#%checkm"):
                raise ManifestError(
                    source, number,
                    f"unsupported checkm version {_quote(name)}; expected {HEADER}",
                )
            raise ManifestError(
                source, number,
                f"not a checkm manifest: expected {HEADER} as the first line, "
                f"found {_quote(stripped)}",
            )
        if stripped.startswith("#%"):
            name, values = _directive(stripped)
            if name == "#%profile":
                if profile:
                    raise ManifestError(
                        source, number, f"second #%profile (the first is on line {profile_line})"
                    )
                if not values or not values[0]:
                    raise ManifestError(source, number, "#%profile gives no URL")
                profile, profile_line = values[0], number
                kind = _kind_of(profile, source, number)
            elif name == "#%fields":
                if fields:
                    raise ManifestError(
                        source, number, f"second #%fields (the first is on line {fields_line})"
                    )
                if entries:
                    raise ManifestError(
                        source, number, "#%fields must come before the first row"
                    )
                fields, fields_line = _parse_fields(values, source, number), number
            elif name == "#%eof":
                eof_line = number
            # #%prefix and any other directive only declare things this parser does not need.
            continue
        if stripped.startswith("#"):
            continue
        if not profile:
            raise ManifestError(source, number, "row before any #%profile line")
        if not fields:
            raise ManifestError(source, number, "row before any #%fields line")
        entries.append(_parse_row(line, number, fields, source))

    if not header_seen:
        raise ManifestError(source, None, f"empty file; expected a checkm manifest ({HEADER})")
    if not eof_line:
        raise ManifestError(
            source, last_line,
            "the manifest ends here without #%eof: it looks truncated "
            "(was it copied or uploaded completely?)",
        )
    if not profile:
        raise ManifestError(source, eof_line, "no #%profile line before #%eof")
    if not fields:
        raise ManifestError(source, eof_line, "no #%fields line before #%eof")
    return Manifest(
        source=source, profile=profile, kind=kind, fields=fields, entries=tuple(entries)
    )
