"""Damaging a cache file as the cache tests do, without touching what it is linked to."""

from __future__ import annotations

from pathlib import Path


def replace_file(path: Path, data: bytes) -> None:
    """``data`` as ``path``: a new file renamed over it, so a hard-linked cache file (the
    run's shared cache, in the end-to-end tests) is never changed in place."""
    tmp = path.with_name(f".{path.name}.damaged")
    tmp.write_bytes(data)
    tmp.replace(path)


def flip_a_byte(data: bytes) -> bytes:
    """``data`` at its size, its middle byte inverted."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
