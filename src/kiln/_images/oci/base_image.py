"""The base image: its config, its layers, its install scheme.

A base is kiln's OS base (``kiln._images.os_layers``: its layers are built from the OS lock)
or an image in a registry, pinned by digest: its config and layer blobs are read
from there (``pull_base``) and kept in the layer cache; a push to the same registry
mounts them instead of uploading them again.

The install scheme is asked of the base's own interpreter, once per image ID, run
from its unpacked layers (``interpreter``, ``rootfs``): no container.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kiln._errors import CommandFailed, ConfigError, ServiceUnavailable
from kiln._images.oci.cache import Blob, LayerCache, key_of
from kiln._images.oci.image import sha256_digest
from kiln._images.oci.install import InstallScheme
from kiln._images.oci.interpreter import BaseImagePython
from kiln._images.oci.loader import host_machine
from kiln._images.registry_base import split_reference
from kiln._util.files import temporary_beside, write_text_atomic


@dataclass(frozen=True)
class BaseImage:
    ref: str  # a registry reference, or kiln's OS base by name (OsBase.name)
    image_id: str  # sha256 of the config bytes (an engine would call it the image ID)
    config: Mapping[str, Any]  # the image config JSON
    layers: tuple[Blob, ...]
    # Read from a registry: (host, repository), so a push there can mount its blobs.
    origin: tuple[str, str] | None = None
    digest: str | None = None  # its manifest digest in that registry


class BlobSource(Protocol):
    """What pulling a base needs of a registry (``RegistryClient``)."""

    host: str

    def digest(self, repository: str, tag: str) -> str | None: ...

    def manifest(self, repository: str, reference: str, *, lists: bool = False) -> bytes: ...

    def download_blob(self, repository: str, digest: str, target: Path) -> int: ...


# -- a base from its registry ---------------------------------------------------------
_GZIP_TYPES = {  # the same bytes, named the OCI way in kiln's OCI manifest
    "application/vnd.docker.image.rootfs.diff.tar.gzip": (
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ),
}
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def _pick_platform(index: Mapping[str, Any], ref: str) -> str:
    arch = _ARCHITECTURES.get(host_machine(), host_machine())
    offered = []
    for entry in index.get("manifests") or []:
        platform = entry.get("platform") or {}
        offered.append(f"{platform.get('os')}/{platform.get('architecture')}")
        if platform.get("os") == "linux" and platform.get("architecture") == arch:
            return str(entry["digest"])
    raise ConfigError(
        f"base image {ref!r} has no linux/{arch} image (it offers {', '.join(offered) or 'none'});"
        " kiln runs the base's Python on this machine: use a base built for it"
    )


def _record_path(cache: LayerCache, host: str, repository: str, digest: str) -> Path:
    key = key_of("registry base", host, repository, digest)
    return cache.root / "bases" / f"registry-{key}.json"


def _blob(cache: LayerCache, doc: Mapping[str, Any]) -> Blob:
    media_type = str(doc["media_type"])
    return Blob(
        media_type=_GZIP_TYPES.get(media_type, media_type),
        digest=str(doc["digest"]),
        size=int(doc["size"]),
        diff_id=str(doc["diff_id"]),
        path=cache.blob_path(str(doc["digest"])),
    )


def _from_record(ref: str, record: Path, cache: LayerCache) -> BaseImage | None:
    """A base pulled before (all its blobs still in the cache), or None."""
    try:
        doc = json.loads(record.read_text(encoding="utf-8"))
        config_bytes = cache.read_blob(doc["config"])
        layers = tuple(_blob(cache, layer) for layer in doc["layers"])
        if config_bytes is None or not all(cache.intact(b.path, b.digest, b.size) for b in layers):
            return None  # pulled again: a blob that is not whole is never pushed
        origin = (str(doc["host"]), str(doc["repository"]))
        config = json.loads(config_bytes)
        return BaseImage(ref, doc["config"], config, layers, origin, doc["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fetch(
    registry: BlobSource, repository: str, digest: str, size: int, cache: LayerCache
) -> None:
    target = cache.blob_path(digest)
    if cache.intact(target, digest, size):
        return
    with temporary_beside(target) as tmp:  # one per kiln at work
        registry.download_blob(repository, digest, tmp)
        tmp.replace(target)


def pull_base(registry: BlobSource, ref: str, cache: LayerCache) -> BaseImage:
    """The base ``ref`` read from its registry: config and layer blobs as published there
    (kept in the cache; a base pinned by digest is read from the cache after once)."""
    _host, repository, reference = split_reference(ref)
    host = registry.host
    if not reference.startswith("sha256:"):
        found = registry.digest(repository, reference)
        if found is None:
            raise ConfigError(
                f"base image {ref!r}: registry {host} has no {repository}:{reference}; check "
                "image.toml's base"
            )
        reference = found
    record = _record_path(cache, host, repository, reference)
    cached = _from_record(ref, record, cache)
    if cached is not None:
        return cached
    raw = registry.manifest(repository, reference, lists=True)
    doc = json.loads(raw)
    if "manifests" in doc:  # a list of per-platform images: this machine's
        raw = registry.manifest(repository, _pick_platform(doc, ref))
        doc = json.loads(raw)
    digest = sha256_digest(raw)
    config_digest = str(doc["config"]["digest"])
    _fetch(registry, repository, config_digest, int(doc["config"]["size"]), cache)
    config_bytes = cache.read_blob(config_digest)
    if config_bytes is None:
        raise ServiceUnavailable(f"base image {ref!r}: its config {config_digest} did not arrive")
    config = json.loads(config_bytes)
    diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
    if len(diff_ids) != len(doc["layers"]):
        raise ConfigError(
            f"base image {ref!r}: its manifest lists {len(doc['layers'])} layer(s), its config "
            f"{len(diff_ids)}; the image is malformed: use another base"
        )
    layers = []
    for descriptor, diff_id in zip(doc["layers"], diff_ids, strict=True):
        _fetch(registry, repository, descriptor["digest"], int(descriptor["size"]), cache)
        layers.append(
            {"media_type": descriptor["mediaType"], "digest": descriptor["digest"],
             "size": descriptor["size"], "diff_id": diff_id}
        )  # fmt: skip
    entry = {"host": host, "repository": repository, "digest": digest, "config": config_digest,
             "layers": layers}  # fmt: skip
    write_text_atomic(record, json.dumps(entry, sort_keys=True))
    blobs = tuple(_blob(cache, layer) for layer in layers)
    return BaseImage(ref, config_digest, config, blobs, (host, repository), digest)


# Run by the base's python3: where pip in the image would install.
_PROBE = """\
import json, sys, sysconfig
paths = sysconfig.get_paths()
print(json.dumps({
    "python": "%d.%d" % sys.version_info[:2],
    "cache_tag": sys.implementation.cache_tag,
    "paths": {k: paths[k] for k in ("purelib", "platlib", "scripts", "data", "include")},
}))
"""
_PROBE_FORMAT = "2"


def _scheme(doc: Mapping[str, Any]) -> InstallScheme:
    paths = doc["paths"]
    return InstallScheme(
        python=str(doc["python"]),
        cache_tag=str(doc["cache_tag"]),
        executable=str(doc["executable"]),
        purelib=str(paths["purelib"]),
        platlib=str(paths["platlib"]),
        scripts=str(paths["scripts"]),
        data=str(paths["data"]),
        include=str(paths["include"]),
    )


def image_env(config: Mapping[str, Any]) -> dict[str, str]:
    """The Env of an image config, as a mapping."""
    pairs = (str(e).partition("=") for e in (config.get("config") or {}).get("Env") or [])
    return {k: v for k, _, v in pairs}


def base_image_python(base: BaseImage, cache: LayerCache) -> BaseImagePython:
    """The base's own ``python3``, run from its unpacked layers (unpacked on first use)."""
    return BaseImagePython(base.image_id, base.layers, image_env(base.config), cache)


def probe_scheme(base: BaseImage, cache: LayerCache, python: BaseImagePython) -> InstallScheme:
    """The install scheme of ``base``'s ``python3`` (``python``); asked once per image ID,
    then cached. No container: the base's interpreter runs from its unpacked layers."""
    kept = cache.root / "probes" / f"{base.image_id.partition(':')[2]}.v{_PROBE_FORMAT}.json"
    try:
        return _scheme(json.loads(kept.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        output = python.run(_PROBE, env=image_env(base.config))
    except CommandFailed as exc:
        raise ConfigError(
            f"base image {base.ref!r}: its python3 failed to report its install scheme "
            f"({exc}); kiln installs into the base's own Python: use a base with a working "
            "python3 on PATH"
        ) from None
    doc = json.loads(output)
    doc["paths"] = {k: python.image_path(v) for k, v in doc["paths"].items()}
    doc["executable"] = python.image_python
    scheme = _scheme(doc)
    write_text_atomic(kept, json.dumps(doc, sort_keys=True))
    return scheme
