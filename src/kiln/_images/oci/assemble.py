"""Build an image: the base's layers, a third-party layer, a helper layer, config, manifest.

Each Python layer is kept in the layer cache under a key over its wheels' sha256s,
the base's install scheme, the compiling interpreter (the base's own, by its ID),
the compression and the installer's version: a helper-only change re-installs and
re-tars the helper layer alone. Files are checked across layers too: a helper that ships a file a
third-party wheel ships is an error naming both.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import parse_wheel_filename

from kiln._images.oci.base_image import BaseImage
from kiln._images.oci.cache import Blob, LayerCache, key_of
from kiln._images.oci.compress import Compression
from kiln._images.oci.image import (
    BuiltImage,
    canonical_json,
    image_config,
    image_manifest,
    rfc3339,
)
from kiln._images.oci.install import INSTALLER, InstallScheme, collision, install_wheels
from kiln._images.oci.interpreter import Interpreter
from kiln._images.oci.layer_files import LayerFiles
from kiln._util.epoch import MTIME
from kiln._util.files import sha256_file

# What today's images/*/Dockerfile sets. kfp is installed without its client
# dependencies (as KFP's own runtime installs it): _KFP_RUNTIME=true, which KFP's
# executor command sets too, makes `import kfp` load only the runtime part, so
# `python3 -c "import kfp"` works in the image as well.
KFP_ENV: Mapping[str, str] = {
    "PYTHONUNBUFFERED": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_CACHE_DIR": "1",
    "_KFP_RUNTIME": "true",
}


@dataclass(frozen=True)
class PythonLayer:
    name: str  # "third-party" or "helpers"
    blob: Blob
    wheels: tuple[str, ...]  # file names
    cached: bool  # taken from the layer cache, not installed and tarred again


def _key(
    wheels: Sequence[Path],
    scheme: InstallScheme,
    compression: Compression,
    compiler: Interpreter,
    sha256s: Mapping[Path, str],
) -> str:
    return key_of(
        "python layer",
        sorted((w.name, sha256s.get(w) or sha256_file(w)) for w in wheels),
        dataclasses.asdict(scheme),
        compiler.identity,  # the compiling interpreter: .pyc bytes depend on it
        compression.name,
        MTIME,
        importlib.metadata.version("installer"),
        INSTALLER.decode(),
    )


def python_layer(
    name: str,
    wheels: Sequence[Path],
    *,
    scheme: InstallScheme,
    cache: LayerCache,
    compression: Compression,
    what: str,
    compiler: Interpreter,
    tags: frozenset[Tag] | None = None,
    sha256s: Mapping[Path, str] | None = None,
) -> PythonLayer:
    """The layer holding ``wheels`` installed as ``scheme`` lays them out (an image with
    no helpers has no helper layer: call this with one wheel at least).

    ``sha256s``: the sha256 of those of ``wheels`` that this run has hashed already, at
    the same path (the wheelhouse, checking each third-party wheel against its lock; the
    wheel build, hashing each helper's copy): the key names them without reading the
    files again (1085 wheels over the 11 images at N=500). The others are hashed here."""
    if not wheels:
        raise ValueError(f"{what}: the {name} layer has no wheels")
    files = tuple(sorted(w.name for w in wheels))
    key = _key(wheels, scheme, compression, compiler, sha256s or {})
    hit = cache.lookup(key)
    if hit is not None:
        return PythonLayer(name, hit, files, cached=True)
    # Installed files and their bytecode are held in memory (``layer_files``), not
    # written to a folder; a layer past its budget spills to the cache's tmp.
    spill = cache.root / "tmp"
    spill.mkdir(parents=True, exist_ok=True)
    with LayerFiles(spill=spill) as installed:
        owners = install_wheels(
            wheels, scheme, installed, what=f"{what}, {name} layer", compiler=compiler, tags=tags
        )
        blob = cache.store(lambda out: installed.write_layer(out, compression), compression, owners)
    cache.record(key, blob)
    return PythonLayer(name, blob, files, cached=False)


def _pins(wheels: Sequence[str]) -> str:
    """``name==version`` of each wheel file name."""
    parsed = (parse_wheel_filename(w) for w in wheels)
    return " ".join(f"{name}=={version}" for name, version, _build, _tags in parsed)


def _check_disjoint(layers: Sequence[PythonLayer], what: str) -> None:
    for i, lower in enumerate(layers):
        for upper in layers[i + 1 :]:
            shared = sorted(lower.blob.files.keys() & upper.blob.files.keys())
            if shared:
                path = shared[0]
                raise collision(what, path, lower.blob.files[path], upper.blob.files[path])


def assemble(
    base: BaseImage,
    layers: Sequence[PythonLayer],
    *,
    env: Mapping[str, str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    created: int = MTIME,
    cmd: Sequence[str] | None = None,
    workdir: str | None = None,
    what: str,
) -> BuiltImage:
    """``base`` with ``layers`` on top: the config and manifest bytes (and so the digest).

    ``created`` (seconds since the epoch) should be the commit time of the last change
    to the image's inputs; the layers' own mtimes are a constant either way."""
    _check_disjoint(layers, what)
    blobs = (*base.layers, *(layer.blob for layer in layers))
    history = [f"kiln: {layer.name} layer: {_pins(layer.wheels)}" for layer in layers]
    config = canonical_json(
        image_config(
            base.config,
            blobs,
            history,
            env=env,
            labels=labels,
            created=rfc3339(created),
            cmd=cmd,
            workdir=workdir,
        )
    )
    manifest = canonical_json(image_manifest(config, blobs, annotations))
    return BuiltImage(config=config, manifest=manifest, layers=blobs)
