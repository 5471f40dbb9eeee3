"""File names from manifests and zip archives are untrusted: turn them into paths that stay inside
a job's working folder, or refuse them with a reason a depositor can act on."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4096

_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafePath(ValueError):
    """A file name that cannot be used; the message names it and says why."""


def _refuse(name: str, why: str) -> UnsafePath:
    return UnsafePath(f"unusable file name {name!r}: {why}")


def safe_relpath(name: str) -> str:
    """Return `name` as a normalised relative POSIX path ("a//b" and "./a" collapse).

    Guarantees: the result is non-empty, relative, has no "." or ".." segment, no backslash, no
    NUL or other control character, and every segment fits a usual file system (255 bytes).
    Anything that would need guessing is refused rather than repaired.
    """
    if not name:
        raise _refuse(name, "it is empty")
    for ch in name:
        if ord(ch) < 32 or 127 <= ord(ch) < 160:
            raise _refuse(name, f"it contains the control character U+{ord(ch):04X}")
    if "\\" in name:
        raise _refuse(name, "it contains a backslash; use '/' to separate folders")
    if name.startswith("/"):
        raise _refuse(name, "it is an absolute path; names must be relative")
    if _DRIVE.match(name):
        raise _refuse(name, "it starts with a drive letter; names must be relative")
    segments = [s for s in name.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise _refuse(name, "it contains a '..' segment")
    if not segments:
        raise _refuse(name, "it names no file (only '.' or '/')")
    for segment in segments:
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise _refuse(name, f"a segment is longer than {MAX_SEGMENT_BYTES} bytes")
    result = "/".join(segments)
    if len(result.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise _refuse(name, f"it is longer than {MAX_PATH_BYTES} bytes")
    return result


def join_inside(root: Path, name: str) -> Path:
    """Return root / safe_relpath(name).

    Guarantee: the returned path, once resolved (following any symlinks that already exist under
    root), is inside root.resolve(); otherwise UnsafePath is raised.
    """
    rel = safe_relpath(name)
    path = root / rel
    if not path.resolve().is_relative_to(root.resolve()):
        raise _refuse(name, f"it leads outside {root} through a symbolic link")
    return path


def first_conflict(names: Sequence[str]) -> tuple[int, int, str] | None:
    """Find the first pair of names (already safe_relpath'd) that cannot both be files.

    Returns (earlier index, later index, reason) or None. Two names conflict when they are equal,
    or when one is a folder of the other ("a" and "a/b"): both cannot exist on a file system.
    """
    files: dict[str, int] = {}
    folders: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in files:
            return files[name], index, f"the name {name!r} is used twice"
        if name in folders:
            return folders[name], index, f"{name!r} is needed as a folder and cannot be a file"
        parts = name.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in files:
                return files[folder], index, (
                    f"{name!r} needs {folder!r} to be a folder, but it is also a file"
                )
            folders.setdefault(folder, index)
        files[name] = index
    return None
