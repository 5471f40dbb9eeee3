"""Digest algorithms accepted in manifests, under one canonical spelling each."""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20

# Hex digits per algorithm, to refuse a value that cannot be right before any download.
HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
SUPPORTED = tuple(HEX_LENGTHS)


def normalize_algorithm(name: str) -> str:
    """Canonical lower-case name ("MD5" -> "md5", "SHA-256" -> "sha256").

    Raises ValueError naming the supported algorithms for anything else.
    """
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in HEX_LENGTHS:
        raise ValueError(
            f"unsupported digest algorithm {name!r}; supported: {', '.join(SUPPORTED)}"
        )
    return key


def normalize_digest(algorithm: str, value: str) -> dict[str, str]:
    """{"algorithm": canonical name, "value": lower-case hex}; ValueError when the value is not
    hex of the length that algorithm produces."""
    algo = normalize_algorithm(algorithm)
    hex_value = value.strip().lower()
    if len(hex_value) != HEX_LENGTHS[algo] or not set(hex_value) <= set(string.hexdigits):
        raise ValueError(
            f"{algo} value must be {HEX_LENGTHS[algo]} hexadecimal digits, found {value!r}"
        )
    return {"algorithm": algo, "value": hex_value}


def new_hash(algorithm: str) -> hashlib._Hash:
    """A fresh hash object for a supported algorithm (any accepted spelling)."""
    # usedforsecurity=False: md5/sha1 are integrity checks here, and must work on FIPS hosts.
    return hashlib.new(normalize_algorithm(algorithm), usedforsecurity=False)


def file_digests(path: Path, algorithms: Iterable[str]) -> dict[str, str]:
    """Hex digests of the file for each algorithm, keyed by canonical name, in one read."""
    hashes = {normalize_algorithm(a): new_hash(a) for a in algorithms}
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file, read in chunks (any size)."""
    return file_digests(path, [algorithm])[normalize_algorithm(algorithm)]
