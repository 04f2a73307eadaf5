"""Generated YAMLs' parsed documents, kept as JSON by the sha256 of the YAML's bytes.

A release reads every component YAML back (to check what a cached one pins, and for its
catalog row): 1004 YAML parses at N=500, 1-3 s, for bytes that were parsed on the last
run. The documents are a function of the bytes alone, so they are kept under the bytes'
sha256, each file starting with the sha256 of the JSON after it: a kept file that does
not have it (truncated, edited) is parsed again, and so is one that is not there. Only
documents JSON holds exactly are kept (KFP's are: strings, numbers, lists, mappings).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from kiln._components.catalog import yaml_documents
from kiln._util.files import write_atomic

FORMAT = b"kiln parsed yaml 1 sha256:"


class ParsedYamls:
    """``parse(data)``: the documents of ``data`` (as ``yaml_documents``; shared: read
    them, never change them), from ``folder`` when kept there (None: always parsed)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.parsed = 0  # YAMLs parsed by this object (not found in the folder)
        self.documents = functools.lru_cache(maxsize=8)(self._documents)

    def __call__(self, data: bytes) -> tuple[Any, ...]:
        return self.documents(data)

    def _documents(self, data: bytes) -> tuple[Any, ...]:
        if self.folder is None:
            self.parsed += 1
            return yaml_documents(data)
        sha = hashlib.sha256(data).hexdigest()
        path = self.folder / sha[:2] / f"{sha}.json"
        kept = self._read(path)
        if kept is not None:
            return kept
        self.parsed += 1
        docs = yaml_documents(data)
        try:
            body = json.dumps(list(docs), allow_nan=False).encode()
            if json.loads(body) == list(
                docs
            ):  # JSON holds them exactly (mappings keep their order)
                write_atomic(
                    path, FORMAT + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
                )
        except (TypeError, ValueError, OSError):  # not JSON's types; a cache not writable
            pass
        return docs

    @staticmethod
    def _read(path: Path) -> tuple[Any, ...] | None:
        try:
            head, _, body = path.read_bytes().partition(b"\n")
        except OSError:
            return None
        if head != FORMAT + hashlib.sha256(body).hexdigest().encode():
            return None
        try:
            docs = json.loads(body)
        except ValueError:
            return None
        return tuple(docs) if isinstance(docs, list) else None
