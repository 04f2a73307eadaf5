"""SBOMs kept by the key of what they are made from.

A release writes every image's SBOM, also when nothing changed, and cyclonedx-python-lib
takes a while to make one: 11 SBOMs of a 500-helper repo (the packages image lists all
500 helpers) were 2.6 s of a 9.7 s no-op release, profiled. ``image_sbom`` is a pure
function of its inputs (see ``kiln._images.oci.sbom``), so the bytes are kept under
``sbom_key``: a sha256 over every value it reads, the code of both modules and the
library's version. Each entry starts with the sha256 of the bytes that follow and is
used only when it has them; one that does not is made again. A cache that cannot be
written costs time, not the release.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from kiln._images.oci import sbom
from kiln._util.epoch import MTIME
from kiln._util.files import write_atomic

if TYPE_CHECKING:
    from kiln._images.inputs import ImageInputs

CACHE_FORMAT = "1"
_MAGIC = b"kiln sbom cache sha256:"


def _code() -> str:
    digest = hashlib.sha256()
    for module in (sbom.__file__, __file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()


def sbom_key(inputs: ImageInputs, digest: str) -> str:
    """sha256 over everything ``image_sbom(inputs, digest)`` reads, and its code."""
    base = inputs.base
    if isinstance(base, str):
        described: object = base
    else:
        lock = base.lock
        described = [
            lock.release, lock.suite, lock.architecture, lock.path.name,
            [[p.name, p.version, p.architecture, p.sha256, p.source] for p in base.packages],
        ]  # fmt: skip
    wh = inputs.wheelhouse
    doc = {
        "format": CACHE_FORMAT,
        "code": _code(),
        "cyclonedx": version("cyclonedx-python-lib"),
        "epoch": MTIME,
        "digest": digest,
        "image": [inputs.image.name, inputs.image.version, inputs.repository, inputs.tag],
        "base": described,
        "third-party": [[w.name, w.version, w.sha256] for w in wh.third_party],
        "helpers": [[w.distribution, w.version, w.sha256] for w in wh.helpers],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def cached_sbom(inputs: ImageInputs, digest: str, folder: Path) -> bytes:
    """``image_sbom(inputs, digest)``, from ``folder`` when it holds it whole."""
    entry = folder / f"{sbom_key(inputs, digest)}.cdx.json"
    with contextlib.suppress(OSError):
        first, _, content = entry.read_bytes().partition(b"\n")
        if first == _MAGIC + hashlib.sha256(content).hexdigest().encode():
            return content
    made = sbom.image_sbom(inputs, digest)
    with contextlib.suppress(OSError):  # a cache that cannot be written: made each time
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(entry, _MAGIC + hashlib.sha256(made).hexdigest().encode() + b"\n" + made)
    return made
