"""The local layer cache: blobs by digest, layers by the key of their inputs.

``blobs/sha256/<hex>`` holds content-addressed blobs (layers and base configs);
``layers/<key>.json`` records which blob a layer's inputs gave (a Python layer's
key covers its wheels' sha256s, the install scheme, the compiling interpreter and
the compression; a base layer's its diff_id and the compression), plus the files a
Python layer holds, so collisions with a later layer are found without its tar.
Entries are written to a temporary name and renamed into place: an interrupted
build leaves no entry behind. An entry whose blob is missing or has another size
is ignored (and rebuilt); a blob's content is checked again by the registry,
which refuses an upload whose digest does not match.
"""

from __future__ import annotations

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


class LayerCache:
    def __init__(self, root: Path) -> None:
        self.root = root

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
            if blob.path.stat().st_size != blob.size:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return blob

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
