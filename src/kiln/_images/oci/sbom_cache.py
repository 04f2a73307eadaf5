"""SBOMs kept by the key of what they are made from.

A release writes every image's SBOM, also when nothing changed, and cyclonedx-python-lib
takes a while to make one: 11 SBOMs of a 500-helper repo (the packages image lists all
500 helpers) were 2.6 s of a 9.7 s no-op release, profiled. ``image_sbom`` is a pure
function of its inputs (see ``kiln._images.oci.sbom``), so the bytes are kept under
``sbom_key``: a sha256 over every value it reads, the code of both modules and the
library's version. Each entry starts with the sha256 of the bytes that follow and is
used only when it has them; one that does not is made again. A cache that cannot be
written costs time, not the release.

``kiln._images.oci.sbom`` (and cyclonedx-python-lib, 0.06 s to import) is imported only
to make an SBOM the cache does not hold: a no-op release makes none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from kiln._util.epoch import MTIME
from kiln._util.files import write_atomic
from kiln._util.kept import code_digest, seal, unseal

if TYPE_CHECKING:
    from kiln._images.inputs import ImageInputs

CACHE_FORMAT = "1"
_MAGIC = b"kiln sbom cache sha256:"
# The module that makes SBOMs, by its path: its code is in the key, and reading it does
# not import it.
_MAKER = Path(__file__).with_name("sbom.py")


def sbom_path(dist_dir: Path, image: str, platform: str | None = None) -> Path:
    """Where a release writes ``image``'s SBOM: ``dist/sbom/<image>.cdx.json``; one
    platform's of an image made for several: ``<image>.linux-arm64.cdx.json``."""
    suffix = f".{platform.replace('/', '-')}" if platform else ""
    return dist_dir / "sbom" / f"{image}{suffix}.cdx.json"


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
        "code": code_digest(str(_MAKER), __file__),
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
        content = unseal(_MAGIC, entry.read_bytes())
        if content is not None:
            return content
    from kiln._images.oci.sbom import image_sbom  # noqa: PLC0415 - cyclonedx, only on a miss

    made = image_sbom(inputs, digest)
    with contextlib.suppress(OSError):  # a cache that cannot be written: made each time
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(entry, seal(_MAGIC, made))
    return made
