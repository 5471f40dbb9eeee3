"""Small deposits written by tests: checkm manifests, files and zips in a served folder."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

PROFILES = {
    "object": "mrt-ingest-manifest",
    "batch": "mrt-batch-manifest",
    "containers": "mrt-container-batch-manifest",
    "files": "mrt-single-file-batch-manifest",
}
OBJECT_FIELDS = ["nfo:fileUrl", "nfo:hashAlgorithm", "nfo:hashValue", "nfo:fileSize",
                 "nfo:fileLastModified", "nfo:fileName"]
BATCH_FIELDS = OBJECT_FIELDS + ["mrt:primaryIdentifier", "mrt:localIdentifier", "mrt:creator",
                                "mrt:title", "mrt:date"]


def checkm(kind: str, rows: list[list[str]], fields: list[str] | None = None) -> str:
    fields = fields or (OBJECT_FIELDS if kind == "object" else BATCH_FIELDS)
    head = ["#%checkm_0.7",
            f"#%profile | http://uc3.cdlib.org/registry/ingest/manifest/{PROFILES[kind]}",
            "#%fields | " + " | ".join(fields)]
    return "\n".join(head + [" | ".join(r) for r in rows] + ["#%eof", ""])


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Deposit:
    """A folder served at ``url``; helpers write files and manifests into it."""

    def __init__(self, folder: Path, url: str):
        self.folder, self.url = folder, url

    def file(self, name: str, data: bytes | None = None) -> bytes:
        data = data if data is not None else f"content of {name}\n".encode() * 50
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def object_manifest(self, name: str, files: dict[str, bytes | None],
                        digests: dict[str, str] | None = None,
                        names: dict[str, str] | None = None) -> str:
        """Write files and an object manifest listing them; returns the manifest URL."""
        rows = []
        for fname, data in files.items():
            data = self.file(fname, data)
            digest = (digests or {}).get(fname, md5(data))
            rows.append([f"{self.url}/{fname}", "md5", digest, str(len(data)), "",
                         (names or {}).get(fname, fname)])
        (self.folder / name).write_text(checkm("object", rows))
        return f"{self.url}/{name}"

    def batch(self, name: str, kind: str, rows: list[list[str]]) -> str:
        (self.folder / name).write_text(checkm(kind, rows))
        return f"{self.url}/{name}"

    def zip(self, name: str, entries: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for n, data in entries.items():
                zf.writestr(n, data)
        return self.file(name, buf.getvalue())


def row(url: str, local_id: str = "", name: str = "", digest: str = "", title: str = "") -> list:
    return [url, "md5" if digest else "", digest, "", "", name, "", local_id, "", title, ""]
