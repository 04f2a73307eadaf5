"""The local layer cache: blobs by digest, layers by the key of their inputs.

``blobs/sha256/<hex>`` holds content-addressed blobs (layers and base configs);
``layers/<key>.json`` records which blob a layer's inputs gave (a Python layer's
key covers its wheels' sha256s, the install scheme, the compiling interpreter and
the compression; a base layer's its diff_id and the compression), plus the files a
Python layer holds, so collisions with a later layer are found without its tar.
Entries are written to a temporary name and renamed into place: an interrupted
build leaves no entry behind. An entry whose blob is missing is rebuilt; one whose
blob does not have its digest (truncated, or altered at the same size) is discarded
and rebuilt, with one line saying so, never pushed: the registry would refuse it
(DIGEST_INVALID) at every run. Hashing every layer at every run would cost a no-op
release about 0.2 s, so a blob is hashed when its file's identity (inode, size,
mtime, ctime) is not the one kept in ``checked/<hex>`` when it was last found whole,
and at most once per run: any write to a blob, in place or by a rename over it,
changes its ctime.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kiln._errors import CommandFailed
from kiln._images.oci.compress import Compression, Written
from kiln._util.files import write_atomic

FORMAT = "1"  # bump when a key or an entry's layout changes: older entries are then ignored


@dataclass(frozen=True)
class Blob:
    """A layer blob in the cache: what the manifest and the config say about it."""

    media_type: str
    digest: str  # sha256 of the blob (compressed or not)
    size: int
    diff_id: str  # sha256 of the uncompressed tar
    path: Path
    files: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


def key_of(*fields: object) -> str:
    """A cache key: sha256 over the JSON of ``fields`` (and the cache format)."""
    doc = json.dumps(["kiln layer cache", FORMAT, *fields], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()


def _stamp(path: Path) -> list[int]:
    """What any write to ``path`` changes: its inode, size, mtime and ctime."""
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


class LayerCache:
    def __init__(self, root: Path, *, note: Callable[[str], None] | None = None) -> None:
        """``note``: where the one line goes that says a damaged entry was discarded."""
        self.root = root
        self._note = note or (lambda _line: None)
        self._whole: dict[Path, list[int]] = {}  # blobs hashed in this run, by stamp

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def _entry(self, key: str) -> Path:
        return self.root / "layers" / f"{key}.json"

    def _unwritable(self, exc: OSError) -> CommandFailed:
        return CommandFailed(
            f"cannot write to the layer cache {self.root} ({exc}); make it writable or remove it"
        )

    def lookup(self, key: str) -> Blob | None:
        """The layer recorded under ``key``, if its blob is still there, whole."""
        try:
            doc = json.loads(self._entry(key).read_text(encoding="utf-8"))
            blob = Blob(
                media_type=doc["media_type"],
                digest=doc["digest"],
                size=doc["size"],
                diff_id=doc["diff_id"],
                path=self.blob_path(doc["digest"]),
                files=doc.get("files", {}),
            )
            if not self.intact(blob.path, blob.digest, blob.size):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return blob

    def _stamp_path(self, digest: str) -> Path:
        return self.root / "checked" / digest.partition(":")[2]

    def intact(self, path: Path, digest: str, size: int) -> bool:
        """Whether the blob at ``path`` still has ``digest`` (and ``size``); one that has
        not is removed, with one line saying so. It is hashed when its stamp is not the one
        kept (``checked/<hex>``) when it was last found whole, and at most once a run."""
        try:
            stamp = _stamp(path)
        except FileNotFoundError:
            return False
        if stamp == self._whole.get(path):
            return True
        try:
            kept = json.loads(self._stamp_path(digest).read_bytes())
        except (OSError, ValueError):
            kept = None
        if stamp != kept:
            if stamp[1] != size or hash_file(path) != digest:
                self._note(
                    f"layer cache blob {path} did not match its digest {digest} "
                    f"({stamp[1]} bytes, {size} expected); discarded, rebuilt"
                )
                path.unlink(missing_ok=True)
                return False
            self._keep_stamp(digest, stamp)
        self._whole[path] = stamp
        return True

    def _keep_stamp(self, digest: str, stamp: list[int]) -> None:
        """Best effort: a cache that cannot keep it hashes the blob again next run."""
        with contextlib.suppress(OSError):
            write_atomic(self._stamp_path(digest), json.dumps(stamp).encode())

    def record(self, key: str, blob: Blob) -> None:
        doc = {
            "media_type": blob.media_type,
            "digest": blob.digest,
            "size": blob.size,
            "diff_id": blob.diff_id,
            "files": dict(blob.files),
        }
        self._write_atomic(self._entry(key), json.dumps(doc, sort_keys=True).encode())

    def read_blob(self, digest: str) -> bytes | None:
        """A small blob's bytes (a config), if the cache has them unaltered."""
        try:
            data = self.blob_path(digest).read_bytes()
        except OSError:
            return None
        return data if f"sha256:{hashlib.sha256(data).hexdigest()}" == digest else None

    def _write_atomic(self, target: Path, data: bytes) -> None:
        try:
            write_atomic(target, data)
        except OSError as exc:
            raise self._unwritable(exc) from None

    def store(
        self,
        write: Callable[[BinaryIO], Written],
        compression: Compression,
        files: Mapping[str, str] | None = None,
    ) -> Blob:
        """Run ``write`` on a new file, then keep that file as the blob it wrote."""
        folder = self.root / "blobs" / "sha256"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        except OSError as exc:
            raise self._unwritable(exc) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                written = write(fh)
            path = self.blob_path(written.digest)
            Path(tmp).replace(path)
            self._whole[path] = _stamp(path)  # hashed as it was written
            self._keep_stamp(written.digest, self._whole[path])
        finally:
            Path(tmp).unlink(missing_ok=True)
        return Blob(
            media_type=compression.media_type,
            digest=written.digest,
            size=written.size,
            diff_id=written.diff_id,
            path=path,
            files=dict(files or {}),
        )
