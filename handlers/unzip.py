"""Unpacking container zips from depositors, who are not trusted to send safe archives."""

from __future__ import annotations

import lzma
import os
import stat
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zkqueue.safepaths import UnsafePath, first_conflict, join_inside, safe_relpath

_CHUNK = 1 << 20
_RATIO_FLOOR = 1 << 20
_SUPPORTED = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


class UnsafeArchive(ValueError):
    """An archive that will not be unpacked; the message names the archive and the entry."""


@dataclass
class ZipLimits:
    max_total_bytes: int = 50 * 2**30
    max_files: int = 100_000
    max_ratio: float = 200.0


def _is_junk(name: str) -> bool:
    parts = name.split("/")
    return "__MACOSX" in parts or parts[-1] == ".DS_Store"


def _plan(
    zf: zipfile.ZipFile, archive: str, limits: ZipLimits
) -> list[tuple[zipfile.ZipInfo, str]]:
    """Check every entry and return (entry, relative name) for the files to write."""
    chosen: list[tuple[zipfile.ZipInfo, str]] = []
    total = 0
    for info in zf.infolist():
        entry = info.orig_filename

        def refuse(why: str, entry: str = entry) -> UnsafeArchive:
            return UnsafeArchive(f"{archive}: entry {entry!r} {why}")

        if info.is_dir() and not info.filename.strip("./"):
            continue  # "./" or "/" as a folder entry: harmless, and some tools write it
        if "\x00" in entry:
            raise refuse("has a NUL character in its name")
        try:
            name = safe_relpath(info.filename.rstrip("/") if info.is_dir() else info.filename)
        except UnsafePath as exc:
            raise refuse(f"cannot be unpacked: {exc}") from None
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise refuse("is a symbolic link; links are not accepted in archives")
        if info.is_dir() or _is_junk(name):
            continue
        # Many tools store permission bits only; a file type, when there is one, must be "file".
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise refuse("is not a regular file")
        if info.flag_bits & 0x1:
            raise refuse("is encrypted; send archives without a password")
        if info.compress_type not in _SUPPORTED:
            raise refuse(f"uses an unsupported compression method ({info.compress_type})")
        if (info.file_size > _RATIO_FLOOR
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            raise refuse(
                f"expands {info.compress_size} bytes to {info.file_size} "
                f"(more than {limits.max_ratio:g} times); refused as a possible zip bomb"
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise UnsafeArchive(
                f"{archive}: unpacks to more than the limit of {limits.max_total_bytes} bytes"
            )
        chosen.append((info, name))
        if len(chosen) > limits.max_files:
            raise UnsafeArchive(f"{archive}: holds more than the limit of {limits.max_files} files")
    conflict = first_conflict([name for _, name in chosen])
    if conflict:
        first, second, reason = conflict
        raise UnsafeArchive(
            f"{archive}: entries {chosen[first][0].orig_filename!r} and "
            f"{chosen[second][0].orig_filename!r} clash: {reason}"
        )
    return _strip_common_folder(chosen)


def _strip_common_folder(
    chosen: list[tuple[zipfile.ZipInfo, str]],
) -> list[tuple[zipfile.ZipInfo, str]]:
    tops = {name.split("/", 1)[0] for _, name in chosen}
    if len(tops) != 1 or any("/" not in name for _, name in chosen):
        return chosen
    return [(info, name.split("/", 1)[1]) for info, name in chosen]


def _mtime(info: zipfile.ZipInfo) -> float | None:
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: str) -> Iterator[bytes]:
    # Only reading is guarded here: an error writing to dest (disk full) is not the archive's fault.
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                yield chunk
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError) as exc:
        raise UnsafeArchive(f"{archive}: entry {info.orig_filename!r} is corrupt ({exc})") from None


def safe_extract(
    zip_path: Path,
    dest: Path,
    limits: ZipLimits = ZipLimits(),  # noqa: B008 - a plain value object, never mutated here
    archive_name: str | None = None,
) -> list[str]:
    """Unpack the files of `zip_path` into `dest` and return their relative names, in archive
    order.

    Guarantees:
    - Nothing is written unless every entry passes the checks: safe relative names (no absolute
      path, "..", backslash, NUL), no symbolic links or other special entries, no encrypted or
      unsupported entries, no duplicate or clashing names, at most limits.max_files files, a
      declared total of at most limits.max_total_bytes, and no entry above 1 MiB that expands
      more than limits.max_ratio times. The byte limit is enforced again while writing, since
      declared sizes can lie.
    - Nothing is written outside `dest`, even through symlinks already there.
    - On any failure, UnsafeArchive names the archive (archive_name, default the file's name)
      and the entry, and the files this call wrote are removed.
    - macOS metadata (`__MACOSX/`, `.DS_Store`) and folder entries are skipped.
    - When every file sits under one single top-level folder, that folder is dropped:
      "photos/a.jpg" and "photos/b.txt" unpack as "a.jpg" and "b.txt" (depositors often zip
      a folder rather than its contents). The three Merritt sample zips have no such folder.
    - File modes from the archive are not applied; modification times are.
    """
    archive = archive_name or zip_path.name
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise UnsafeArchive(f"{archive}: not a readable zip archive ({exc})") from None
    written: list[Path] = []
    total = 0
    try:
        with zf:
            files = _plan(zf, archive, limits)
            for info, name in files:
                try:
                    target = join_inside(dest, name)
                except UnsafePath as exc:
                    raise UnsafeArchive(
                        f"{archive}: entry {info.orig_filename!r}: {exc}"
                    ) from None
                target.parent.mkdir(parents=True, exist_ok=True)
                entry_bytes = 0
                with open(target, "wb") as out:
                    written.append(target)
                    for chunk in _read(zf, info, archive):
                        entry_bytes += len(chunk)
                        total += len(chunk)
                        if entry_bytes > info.file_size or total > limits.max_total_bytes:
                            raise UnsafeArchive(
                                f"{archive}: entry {info.orig_filename!r} expands beyond its "
                                f"declared size or the limit of {limits.max_total_bytes} bytes"
                            )
                        out.write(chunk)
                mtime = _mtime(info)
                if mtime is not None:
                    os.utime(target, (mtime, mtime))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return [name for _, name in files]
