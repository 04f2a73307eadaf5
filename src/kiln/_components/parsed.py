"""Generated YAMLs' parsed documents, kept as JSON by the sha256 of the YAML's bytes.

A release reads every component YAML back (to check what a cached one pins, and for its
catalog row): 1004 YAML parses at N=500, 1-3 s, for bytes that were parsed on the last
run. The documents are a function of the bytes alone, so they are kept (``Kept``) under
the bytes' sha256: a kept file that is damaged is parsed again, and so is one that is
not there. Only documents JSON holds exactly are kept (KFP's are: strings, numbers,
lists, mappings).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import yaml

from kiln._components import catalog
from kiln._components.catalog import yaml_documents
from kiln._util.kept import Kept, code_digest

# The documents are PyYAML's, read by catalog.yaml_documents: both are named.
FORMAT = (
    f"kiln parsed yaml 1 pyyaml {yaml.__version__} code {code_digest(catalog.__file__)} sha256:"
).encode()


class ParsedYamls:
    """``parse(data)``: the documents of ``data`` (as ``yaml_documents``; shared: read
    them, never change them), from ``folder`` when kept there (None: always parsed)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.kept = Kept(folder, FORMAT) if folder is not None else None
        self.parsed = 0  # YAMLs parsed by this object (not found in the folder)
        self.documents = functools.lru_cache(maxsize=8)(self._documents)

    def __call__(self, data: bytes) -> tuple[Any, ...]:
        return self.documents(data)

    def _documents(self, data: bytes) -> tuple[Any, ...]:
        if self.kept is None:
            self.parsed += 1
            return yaml_documents(data)
        sha = hashlib.sha256(data).hexdigest()
        kept = self.kept.get(sha)
        if isinstance(kept, list):
            return tuple(kept)
        self.parsed += 1
        docs = yaml_documents(data)
        self.kept.put(sha, list(docs))
        return docs
