"""Small file utilities shared by the stages."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


def text_of(data: bytes) -> str:
    """``data`` as ``Path.read_text(encoding="utf-8")`` gives a file of those bytes: UTF-8
    (else ``UnicodeDecodeError``), each "\r\n" and "\r" read as "\n" (universal newlines,
    so a checkout with CRLF line ends reads the same)."""
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


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
    killed run never leaves a half-written file under the target's name.

    Its mode is ``target``'s when there is one, else what the umask gives a new file
    (0644 as a rule): a YAML or a lock written this way reads like one written in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        # No suffix of the target's: a reader listing *.yaml must not see it.
        tmp = target.parent / f".tmp-{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue
        break
    try:
        with contextlib.suppress(FileNotFoundError):
            os.fchmod(fd, stat.S_IMODE(target.stat().st_mode))
        os.close(fd)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: Path, data: bytes) -> None:
    """``data`` as ``target``: all of it, or (killed, or the disk full midway) the file as
    it was. A reader sees the old file or the new one, whole."""
    with temporary_beside(target) as tmp:
        tmp.write_bytes(data)
        tmp.replace(target)


def write_text_atomic(target: Path, text: str) -> None:
    """``text`` (UTF-8) as ``target``, as ``write_atomic`` writes."""
    write_atomic(target, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[BinaryIO]:
    """A binary file to stream ``target``'s new content into (too large to hold in memory):
    it becomes ``target`` when the block ends normally, and is dropped when it raises."""
    with temporary_beside(target) as tmp:
        with tmp.open("wb") as out:
            yield out
        tmp.replace(target)


@contextlib.contextmanager
def replaced_folder(target: Path) -> Iterator[Path]:
    """A new empty folder beside ``target`` to fill; it takes ``target``'s place when the
    block ends normally (the old one removed), and is removed when it raises. A reader
    finds the old folder whole, then (for a moment) none, then the new one whole: never
    a half-written one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.parent / f".tmp-{secrets.token_hex(8)}"
    staged.mkdir()  # the umask's mode, as the folder made in place had (mkdtemp's is 0700)
    try:
        yield staged
        old = staged.with_name(f"{staged.name}-old")
        with contextlib.suppress(FileNotFoundError):
            target.rename(old)
        staged.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


STALE_AFTER = 24 * 3600.0  # seconds: no fetch or build into a temporary folder lasts a day


def sweep_stale(folder: Path, *, prefix: str = ".tmp-", older_than: float = STALE_AFTER) -> None:
    """Remove the temporary folders and files (``prefix``) under ``folder`` untouched for
    ``older_than`` seconds: a kiln killed by SIGKILL (no cleanup runs) leaves its own
    behind. A younger one may be another kiln's, at work: it is left alone."""
    now = time.time()
    with contextlib.suppress(OSError):
        entries = [e for e in folder.iterdir() if e.name.startswith(prefix)]
        for entry in entries:
            with contextlib.suppress(OSError):
                if now - entry.lstat().st_mtime < older_than:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
