"""The system files of an object version: ERC (``mrt-erc.txt``), Dublin Core (``mrt-dc.xml``) and
the storage manifest (checkm 0.7).

Every function here is deterministic (no timestamps, files in name order), so a processing step
that runs again produces byte-identical files and the storing step finds them already stored.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

UNAVAILABLE = "(:unav)"

OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"
DC_NS = "http://purl.org/dc/elements/1.1/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
OAI_DC_XSD = "http://www.openarchives.org/OAI/2.0/oai_dc.xsd"

STORE_MANIFEST_PROFILE = "http://uc3.cdlib.org/registry/store/manifest/mrt-store-manifest"
MANIFEST_FIELDS = (
    "nfo:fileName",
    "nfo:hashAlgorithm",
    "nfo:hashValue",
    "nfo:fileSize",
    "mrt:storageKey",
)
PREFIXES = (
    ("mrt:", "http://merritt.cdlib.org/terms#"),
    ("nfo:", "http://www.semanticdesktop.org/ontologies/2007/03/22/nfo#"),
)

for _prefix, _uri in (("oai_dc", OAI_DC_NS), ("dc", DC_NS), ("xsi", XSI_NS)):
    ET.register_namespace(_prefix, _uri)

_LINE_BREAKS = re.compile(r"\s*[\r\n\v\f\x85\u2028\u2029]+\s*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SHA256 = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------------------------------------
# ERC


def _erc_value(value: str | None) -> str:
    if value is None:
        return UNAVAILABLE
    folded = _CONTROL.sub(" ", _LINE_BREAKS.sub(" ", value)).strip()
    return folded or UNAVAILABLE


def erc_text(*, who: str, what: str, when: str, where: list[str]) -> str:
    """An ERC record in ANVL, as Merritt writes ``mrt-erc.txt``.

    One line per element: line breaks inside a value are folded into single spaces, so no value
    can end the record or forge another element. Missing or blank values become ``(:unav)``;
    each non-blank ``where`` gets its own line (``(:unav)`` if there is none).
    """
    lines = ["erc:", f"who: {_erc_value(who)}", f"what: {_erc_value(what)}",
             f"when: {_erc_value(when)}"]
    wheres = [_erc_value(w) for w in where if w and w.strip()] or [UNAVAILABLE]
    lines.extend(f"where: {w}" for w in wheres)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Dublin Core


def _xml_text(value: str) -> str:
    # ElementTree escapes markup but would happily emit characters XML 1.0 forbids.
    return _NOT_XML.sub("\ufffd", value)


def dublin_core_xml(*, title: str, creator: str, date: str, identifiers: list[str]) -> str:
    """An ``oai_dc:dc`` document (UTF-8 declared) that any XML parser accepts.

    Markup characters are escaped and characters XML 1.0 cannot carry are replaced by U+FFFD.
    Blank values are left out rather than written as empty elements.
    """
    root = ET.Element(
        f"{{{OAI_DC_NS}}}dc", {f"{{{XSI_NS}}}schemaLocation": f"{OAI_DC_NS} {OAI_DC_XSD}"}
    )
    pairs = [("title", title), ("creator", creator), ("date", date)]
    pairs.extend(("identifier", i) for i in identifiers)
    for name, value in pairs:
        if value and value.strip():
            ET.SubElement(root, f"{{{DC_NS}}}{name}").text = _xml_text(value.strip())
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


# ---------------------------------------------------------------------------------------------
# Storage manifest


@dataclass
class ManifestFile:
    name: str
    size: int
    sha256: str
    storage_key: str


def _check_field(what: str, value: str) -> None:
    if not value:
        raise ValueError(f"empty {what}")
    if "|" in value:
        raise ValueError(f"{what} {value!r} contains '|', the checkm field separator")
    if _CONTROL.search(value) or _LINE_BREAKS.search(value):
        raise ValueError(f"{what} {value!r} contains a line break or control character")
    if value != value.strip():
        raise ValueError(f"{what} {value!r} starts or ends with whitespace")


def storage_manifest_text(ark: str, version: int, files: list[ManifestFile]) -> str:
    """A checkm 0.7 storage manifest listing every file of the version, sorted by name.

    Raises ValueError for anything the format cannot carry unambiguously: a ``|``, a line break
    or edge whitespace in a name or key, a name starting with ``#``, a duplicate name, a digest
    that is not SHA-256 hex, a negative size.
    """
    _check_field("ARK", ark)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer, not {version!r}")
    seen: set[str] = set()
    for f in files:
        _check_field("file name", f.name)
        _check_field("storage key", f.storage_key)
        if f.name.startswith("#"):
            raise ValueError(
                f"file name {f.name!r} starts with '#', which checkm reads as a comment"
            )
        if f.name in seen:
            raise ValueError(f"file name {f.name!r} is listed twice")
        seen.add(f.name)
        if not _SHA256.fullmatch(f.sha256):
            raise ValueError(f"{f.name}: {f.sha256!r} is not a lower-case SHA-256 hex digest")
        if isinstance(f.size, bool) or not isinstance(f.size, int) or f.size < 0:
            raise ValueError(f"{f.name}: size {f.size!r} is not a byte count")
    lines = ["#%checkm_0.7", f"#%profile | {STORE_MANIFEST_PROFILE}"]
    lines.extend(f"#%prefix | {prefix} | {uri}" for prefix, uri in PREFIXES)
    lines.append("#%fields | " + " | ".join(MANIFEST_FIELDS))
    lines.append(f"# object {ark} version {version}")
    for f in sorted(files, key=lambda f: f.name):
        lines.append(f"{f.name} | sha256 | {f.sha256} | {f.size} | {f.storage_key}")
    lines.append("#%eof")
    return "\n".join(lines) + "\n"


def parse_storage_manifest(text: str) -> list[ManifestFile]:
    """Read a storage manifest back; ValueError (with the line number) for anything malformed,
    including a missing ``#%eof`` (a truncated manifest)."""
    fields: list[str] | None = None
    files: list[ManifestFile] = []
    started = ended = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if ended:
            raise ValueError(f"line {number}: content after #%eof")
        if not started:
            if stripped.lower() != "#%checkm_0.7":
                raise ValueError(f"line {number}: not a checkm 0.7 manifest (no #%checkm_0.7)")
            started = True
            continue
        if stripped.startswith("#%"):
            directive, *values = [v.strip() for v in stripped.split("|")]
            directive = directive.lower()
            if directive == "#%eof":
                ended = True
            elif directive == "#%fields":
                fields = values
                missing = [f for f in MANIFEST_FIELDS if f not in fields]
                if missing:
                    raise ValueError(f"line {number}: #%fields lacks {', '.join(missing)}")
            elif directive == "#%profile":
                if not values or values[0].rstrip("/").rsplit("/", 1)[-1] != "mrt-store-manifest":
                    raise ValueError(f"line {number}: not a storage manifest profile")
            continue
        if stripped.startswith("#"):
            continue
        if fields is None:
            raise ValueError(f"line {number}: file row before #%fields")
        files.append(_parse_row(number, stripped, fields))
    if not started:
        raise ValueError("empty manifest")
    if not ended:
        raise ValueError("manifest has no #%eof: it is truncated")
    return files


def _parse_row(number: int, line: str, fields: list[str]) -> ManifestFile:
    values = [v.strip() for v in line.split("|")]
    if len(values) > len(fields):
        raise ValueError(f"line {number}: {len(values)} values for {len(fields)} fields")
    row = dict(zip(fields, values + [""] * (len(fields) - len(values)), strict=True))
    if row["nfo:hashAlgorithm"].lower() != "sha256":
        raise ValueError(f"line {number}: hash algorithm {row['nfo:hashAlgorithm']!r}, not sha256")
    digest = row["nfo:hashValue"].lower()
    if not _SHA256.fullmatch(digest):
        raise ValueError(f"line {number}: {row['nfo:hashValue']!r} is not a SHA-256 digest")
    if not re.fullmatch(r"[0-9]+", row["nfo:fileSize"]):
        raise ValueError(f"line {number}: file size {row['nfo:fileSize']!r} is not a number")
    if not row["nfo:fileName"] or not row["mrt:storageKey"]:
        raise ValueError(f"line {number}: file name or storage key is empty")
    return ManifestFile(
        row["nfo:fileName"], int(row["nfo:fileSize"]), digest, row["mrt:storageKey"]
    )
