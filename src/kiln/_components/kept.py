"""Values computed from some bytes, kept as JSON by the sha256 of those bytes.

A release computes the same things from the same bytes on every run: each generated
YAML's parsed documents (``parsed``), each wheel's import packages and Requires-Dist
(``packages.WheelFacts``), whether the component sources pass ``validate``. What is
computed is a function of the bytes alone, so it is kept under the bytes' sha256, each
file starting with the sha256 of the JSON after it: a kept file that does not have it
(truncated, edited) is computed again, and so is one that is not there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kiln._util.files import write_atomic


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
            head, _, body = self._path(sha).read_bytes().partition(b"\n")
        except OSError:
            return None
        if head != self.form + hashlib.sha256(body).hexdigest().encode():
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    def put(self, sha: str, value: Any) -> None:
        """Keep ``value`` for ``sha`` when JSON holds it exactly (mappings keep their
        order, a tuple comes back a list: compare with what ``get`` will give); a cache
        that cannot be written is not kept."""
        try:
            body = json.dumps(value, allow_nan=False).encode()
            if json.loads(body) == value:
                digest = hashlib.sha256(body).hexdigest().encode()
                write_atomic(self._path(sha), self.form + digest + b"\n" + body)
        except (TypeError, ValueError, OSError):  # not JSON's types; a cache not writable
            pass
