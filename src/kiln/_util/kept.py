"""Records worked out from files' bytes, kept as JSON by the sha256 of those bytes.

The pattern of ``kiln._components.parsed``, for many small records read together: a
record that is a function of some bytes alone (and of what ``kind`` names: the record's
format, and whatever else decides it, such as the Python whose parser read them) is
kept under the sha256 of ``kind`` and the bytes. The records of one run are kept in one
file (1004 component modules at N=500: one read, not 1004 opens), which starts with the
sha256 of the JSON after it: a file that does not have it (truncated, edited) holds no
record, and every record is worked out again. Only records JSON holds exactly are kept.
The file is a cache: one that cannot be written is no error, it only keeps nothing.

``Kept`` keeps one value per file instead, under a folder by a sha256 the caller gives
(each generated YAML's parsed documents, each wheel's import packages and Requires-Dist,
whether the component sources pass ``validate``): values read one by one, not together.
Both seal what they write the same way (``seal`` / ``unseal``). What kiln's own code
works out from the bytes names that code in its kind or form (``code_digest``): a kiln
whose code changed without a new version (a checkout, an editable install) must not be
handed what its previous code worked out.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from kiln._util.files import write_atomic

_HEAD = b"sha256:"


@functools.cache
def code_digest(*modules: str) -> str:
    """The sha256 over the bytes of the source files ``modules`` (a module's
    ``__file__``): the code that works out a kept record, named in its kind or form."""
    digest = hashlib.sha256()
    for module in modules:
        data = Path(module).read_bytes()
        digest.update(f"{len(data)}\0".encode() + data)
    return digest.hexdigest()


def seal(form: bytes, body: bytes) -> bytes:
    """``body`` behind a first line of ``form`` and the sha256 of ``body``."""
    return form + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def unseal(form: bytes, data: bytes) -> bytes | None:
    """The body ``seal(form, body)`` wrote, or None: another form, or damaged bytes."""
    head, _, body = data.partition(b"\n")
    return body if head == form + hashlib.sha256(body).hexdigest().encode() else None


def _exact_json(value: Any) -> bytes | None:
    """``value`` as JSON when JSON gives it back equal (mappings keep their order, a tuple
    comes back a list), else None."""
    try:
        body = json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return None
    return body if json.loads(body) == value else None


class Kept:
    """JSON values under ``folder`` by a sha256 (of the bytes they were computed from);
    ``form``: the first line's prefix, which names what is kept and in which format."""

    def __init__(self, folder: Path, form: bytes) -> None:
        self.folder = folder
        self.form = form

    def _path(self, sha: str) -> Path:
        return self.folder / f"{sha[:2]}/{sha}.json"

    def get(self, sha: str) -> Any | None:
        """The value kept for ``sha``; None when there is none or it is damaged."""
        try:
            body = unseal(self.form, self._path(sha).read_bytes())
            return json.loads(body) if body is not None else None
        except (OSError, ValueError):
            return None

    def put(self, sha: str, value: Any) -> None:
        """Keep ``value`` for ``sha`` when JSON holds it exactly (compare with what ``get``
        will give); a cache that cannot be written is not kept."""
        body = _exact_json(value)
        if body is not None:
            with contextlib.suppress(OSError):  # a cache not writable keeps nothing
                write_atomic(self._path(sha), seal(self.form, body))


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
                    body = unseal(_HEAD, self.path.read_bytes())
                    held = json.loads(body) if body is not None else {}
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
        if _exact_json(record) is not None:
            self._used[self._key(data)] = record

    def save(self) -> None:
        if self.path is None or self._used == self._read():
            return
        body = json.dumps(self._used, separators=(",", ":")).encode()  # mappings in order
        with contextlib.suppress(OSError):  # a cache not writable keeps nothing
            write_atomic(self.path, seal(_HEAD, body))
        self._held = dict(self._used)
