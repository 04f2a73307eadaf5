"""Small file utilities shared by the stages."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def temporary_beside(target: Path) -> Iterator[Path]:
    """A new empty file in ``target``'s folder (made if missing), removed on the way out
    unless it was moved: write it, check it, then ``replace`` it onto ``target``, so a
    killed run never leaves a half-written file under the target's name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: Path, data: bytes) -> None:
    """``data`` as ``target``: all of it, or (killed midway) the file as it was."""
    with temporary_beside(target) as tmp:
        tmp.write_bytes(data)
        tmp.replace(target)
