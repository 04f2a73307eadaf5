"""Records worked out from files' bytes, kept as JSON by the sha256 of those bytes.

The pattern of ``kiln._components.parsed``, for many small records read together: a
record that is a function of some bytes alone (and of what ``kind`` names: the record's
format, and whatever else decides it, such as the Python whose parser read them) is
kept under the sha256 of ``kind`` and the bytes. The records of one run are kept in one
file (1004 component modules at N=500: one read, not 1004 opens), which starts with the
sha256 of the JSON after it: a file that does not have it (truncated, edited) holds no
record, and every record is worked out again. Only records JSON holds exactly are kept.
The file is a cache: one that cannot be written is no error, it only keeps nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from kiln._util.files import write_atomic

_HEAD = b"sha256:"


class KeptRecords:
    """``get(data)`` / ``put(data, record)``: the record kept for ``data`` in ``path``
    (None: none is kept); ``save()`` writes the records this object was asked for (the
    ones no longer asked for are dropped), when they differ from what the file held."""

    def __init__(self, path: Path | None, kind: str) -> None:
        self.path = path
        self._kind = kind.encode() + b"\0"
        self._held: dict[str, Any] | None = None  # what the file holds, read on first use
        self._used: dict[str, Any] = {}

    def _key(self, data: bytes) -> str:
        return hashlib.sha256(self._kind + data).hexdigest()

    def _read(self) -> dict[str, Any]:
        if self._held is None:
            self._held = {}
            if self.path is not None:
                try:
                    head, _, body = self.path.read_bytes().partition(b"\n")
                    if head == _HEAD + hashlib.sha256(body).hexdigest().encode():
                        held = json.loads(body)
                        self._held = held if isinstance(held, dict) else {}
                except (OSError, ValueError):
                    pass
        return self._held

    def get(self, data: bytes) -> Any | None:
        """The record kept for ``data``, if the file has one."""
        key = self._key(data)
        record = self._read().get(key)
        if record is not None:
            self._used[key] = record
        return record

    def put(self, data: bytes, record: Any) -> None:
        """Keep ``record`` for ``data`` (written by ``save``) when JSON holds it exactly."""
        try:
            exact = json.loads(json.dumps(record, allow_nan=False)) == record
        except (TypeError, ValueError):
            exact = False
        if exact:
            self._used[self._key(data)] = record

    def save(self) -> None:
        if self.path is None or self._used == self._read():
            return
        body = json.dumps(self._used, separators=(",", ":")).encode()  # mappings in order
        with contextlib.suppress(OSError):  # a cache not writable keeps nothing
            write_atomic(
                self.path, _HEAD + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
            )
        self._held = dict(self._used)
