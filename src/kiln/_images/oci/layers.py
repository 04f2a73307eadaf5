"""Deterministic layer tars: the same files give the same bytes on any machine.

Entries are sorted by path (a folder before what it holds), every folder is an
entry of its own (parents included), mtimes are one constant, owners are root
(uid/gid 0, no names), modes are normalised like pip's (folders and executable
files 0755, other files 0644), and the format is PAX. Nothing of the tree's
creation order, timestamps, umask or owner reaches the tar.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kiln._images.oci.compress import BlobWriter, Compression, Written
from kiln._util.epoch import MTIME

COPY_BUFFER = 1 << 20  # a file's bytes go to the tar in pieces of this size (not 16 KiB)


def _walk(root: Path) -> Iterator[tuple[tuple[str, ...], Path]]:
    """Every folder, file and link under ``root`` (not ``root`` itself), unsorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel = here.relative_to(root).parts
        for name in [*dirnames, *filenames]:
            yield (*rel, name), here / name


def tar_info(name: str, kind: bytes, *, size: int = 0, executable: bool = False) -> tarfile.TarInfo:
    """The entry ``name`` of ``kind`` (a file, folder or symlink type) with the rules above."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if kind == tarfile.SYMTYPE:
        info.mode = 0o777
    elif kind == tarfile.DIRTYPE:
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o755 if executable else 0o644
    return info


def _info(parts: tuple[str, ...], path: Path) -> tarfile.TarInfo:
    name = "/".join(parts)
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        info = tar_info(name, tarfile.SYMTYPE)
        info.linkname = str(path.readlink())
        return info
    if stat.S_ISDIR(mode):
        return tar_info(name, tarfile.DIRTYPE)
    if stat.S_ISREG(mode):
        return tar_info(
            name, tarfile.REGTYPE, size=path.stat().st_size, executable=bool(mode & 0o111)
        )
    raise ValueError(f"{path}: only folders, files and symlinks go into a layer")


def write_tar(root: Path, out: BinaryIO) -> None:
    """The tree under ``root`` as a deterministic tar (its paths relative to ``root``)."""
    entries = sorted(_walk(root), key=lambda item: item[0])
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.copybufsize = COPY_BUFFER  # type: ignore[attr-defined]  # TarFile's, not in typeshed
        for parts, path in entries:
            info = _info(parts, path)
            if info.isreg():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)


def write_layer(root: Path, out: BinaryIO, compression: Compression) -> Written:
    """The tree under ``root`` as a layer blob in ``out``; its diff_id, digest and sizes."""
    writer = BlobWriter(out, compression)
    write_tar(root, writer)  # type: ignore[arg-type]  # BlobWriter is the file tarfile writes
    return writer.finish()
