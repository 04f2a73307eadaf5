"""Layer blobs written in tests: a gzip tar of the entries given, as the layer cache holds
one."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from kiln._images.oci.cache import Blob
from kiln._images.oci.compress import GZIP, BlobWriter

D, F, S, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


def _entry(tar: tarfile.TarFile, name: str, kind: bytes, data: bytes = b"", link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def layer(tmp_path: Path, name: str, *entries: tuple[str, bytes, bytes, str]) -> Blob:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, kind, data, link in entries:
            _entry(tar, path, kind, data, link)
    out = tmp_path / f"{name}.tar.gz"
    with out.open("wb") as fh:
        writer = BlobWriter(fh, GZIP)
        writer.write(raw.getvalue())
        written = writer.finish()
    return Blob(GZIP.media_type, written.digest, written.size, written.diff_id, out)
