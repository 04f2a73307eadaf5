"""The base image, from the local Docker Engine: its config, its layers, its install scheme.

``docker save`` (engine 20.10, the legacy format) gives the config JSON, whose
sha256 is the engine's image ID, and uncompressed ``layer.tar`` files, whose sha256s
are the config's diff_ids. Each layer is compressed once (kiln's pinned gzip) and
kept in the layer cache by diff_id, the config by its digest: a base seen before
is not saved again; while they are compressed, the same tars are unpacked for the
base's interpreter. (Copying, or cross-repository mounting, the blobs of a base that
lives in a registry is the other source, still to come.)

The install scheme is asked of the base's own interpreter, once per image ID, run
from its unpacked layers (``rootfs``): no container.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

import docker
import docker.errors
import requests

from kiln._errors import CommandFailed, ConfigError, ServiceUnavailable
from kiln._images.base import split_reference
from kiln._images.oci.cache import Blob, LayerCache, key_of
from kiln._images.oci.compress import BlobWriter, Compression, Written
from kiln._images.oci.install import InstallScheme
from kiln._images.oci.rootfs import BasePython, host_machine, rootfs_path, unpack_from


@dataclass(frozen=True)
class BaseImage:
    ref: str  # as configured, e.g. kiln-local/python:3.11-bookworm
    image_id: str  # sha256 of the config bytes (the engine's image ID)
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


def from_registry(ref: str) -> bool:
    """Whether kiln reads base ``ref`` from its registry (else from the local engine): a
    reference pinned by digest, or one that names its registry host. One rule, so one
    reference always gives the same layer blobs, and so the same image digest."""
    first, _, rest = ref.partition("@")[0].partition("/")
    return "@sha256:" in ref or bool(
        rest and ("." in first or ":" in first or first == "localhost")
    )


def _not_found(ref: str) -> ConfigError:
    return ConfigError(
        f"base image {ref!r} is not on the Docker Engine; `docker pull` or build it, or set "
        "KILN_BASE_IMAGE / --base-image to a local image"
    )


def _unreachable(ref: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Docker Engine failed while reading base image {ref!r} ({type(exc).__name__}: {exc}); "
        "check that the engine runs (`docker info`)"
    )


class _Chunks(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the ``docker save`` stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._left = memoryview(b"")  # what is left of the current chunk (sliced, not copied)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            try:
                self._left = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def _layer_key(diff_id: str, compression: Compression) -> str:
    return key_of("base layer", diff_id, compression.name)


def _compress(source: IO[bytes], cache: LayerCache, compression: Compression) -> Blob:
    def write(out: BinaryIO) -> Written:
        writer = BlobWriter(out, compression)
        while chunk := source.read(1 << 20):
            writer.write(chunk)
        return writer.finish()

    return cache.store(write, compression)


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def _read_save(ref: str, image: Any, spool: Path) -> tuple[dict[str, Path], dict[str, bytes]]:
    """``docker save`` of ``image``: its layer tars written to files in ``spool`` (by
    their name in the archive), its JSON files read."""
    layers: dict[str, Path] = {}
    files: dict[str, bytes] = {}
    try:
        stream = io.BufferedReader(_Chunks(image.save(named=False)), 1 << 20)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    continue
                if member.name.endswith("/layer.tar"):
                    path = spool / f"{len(layers)}.tar"
                    with path.open("wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                    layers[member.name] = path
                elif member.name.endswith(".json"):
                    files[member.name] = source.read()
    except (docker.errors.APIError, requests.RequestException) as exc:
        raise _unreachable(ref, exc) from None
    return layers, files


def _save(ref: str, image: Any, cache: LayerCache, compression: Compression) -> BaseImage:
    """``docker save`` of ``image``: each layer compressed into the cache and, at the
    same time (the unpacking waits on the disk, the compression on the CPU), the
    layers unpacked for the base's python3 (``rootfs``) from the same uncompressed tars
    (spooled to the cache's temporary folder: ``docker save`` gives the layers in no
    particular order, the manifest, last, tells it)."""
    staging = cache.root / "tmp"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="save-", dir=staging) as tmp:
        by_name, files = _read_save(ref, image, Path(tmp))
        try:
            (entry,) = json.loads(files["manifest.json"])
            config_bytes = files[entry["Config"]]
            spooled = [by_name[name] for name in entry["Layers"]]
        except (KeyError, ValueError, TypeError):
            raise _unreachable(
                ref, ValueError("docker save gave no usable manifest.json")
            ) from None
        image_id = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
        unpacked_before = rootfs_path(image_id, cache).is_dir()
        with ThreadPoolExecutor(1, thread_name_prefix="kiln-unpack") as pool:
            openers = [functools.partial(_open_binary, path) for path in spooled]
            unpacking = pool.submit(unpack_from, image_id, openers, cache)
            blobs = []
            for path in spooled:
                with path.open("rb") as source:
                    blobs.append(_compress(source, cache, compression))
            unpacking.result()
    config = json.loads(config_bytes)
    diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
    if diff_ids != [b.diff_id for b in blobs]:
        if not unpacked_before:  # unpacked from the wrong layers: not to be used
            shutil.rmtree(rootfs_path(image_id, cache), ignore_errors=True)
        raise ServiceUnavailable(
            f"docker save of base image {ref!r} gave layers whose sha256s are not the image's "
            "diff_ids; the engine's storage may be damaged: remove and re-create the image"
        )
    for blob in blobs:
        cache.record(_layer_key(blob.diff_id, compression), blob)
    digest = cache.put_bytes(config_bytes)
    return BaseImage(ref, digest, config, tuple(blobs))


def _cached_engine_base(
    ref: str, image_id: str, cache: LayerCache, compression: Compression
) -> BaseImage | None:
    config_bytes = cache.read_blob(image_id)
    if config_bytes is None:
        return None
    config = json.loads(config_bytes)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    blobs = [cache.lookup(_layer_key(d, compression)) for d in diff_ids]
    if not all(b is not None for b in blobs):
        return None
    return BaseImage(ref, image_id, config, tuple(b for b in blobs if b is not None))


def _seen_path(cache: LayerCache, ref: str) -> Path:
    return cache.root / "bases" / f"engine-{key_of('engine base', ref)}.json"


def last_seen(ref: str, cache: LayerCache, compression: Compression) -> BaseImage | None:
    """The engine's base ``ref`` as kiln last read it, whole in the cache, or None: what
    a digest is computed from when the engine cannot be asked (the release, which reads
    the engine, then checks the digest it pushes against the one computed here)."""
    try:
        image_id = json.loads(_seen_path(cache, ref).read_text(encoding="utf-8"))["image_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return _cached_engine_base(ref, str(image_id), cache, compression)


def load_base(
    client: docker.DockerClient, ref: str, cache: LayerCache, compression: Compression
) -> BaseImage:
    """The base image ``ref`` of the local engine, its layers compressed in ``cache``."""
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        raise _not_found(ref) from None
    except (docker.errors.APIError, requests.RequestException) as exc:
        raise _unreachable(ref, exc) from None
    image_id = str(image.id)
    seen = _seen_path(cache, ref)
    seen.parent.mkdir(parents=True, exist_ok=True)
    found = _cached_engine_base(ref, image_id, cache, compression)
    if found is not None:
        seen.write_text(json.dumps({"ref": ref, "image_id": image_id}), encoding="utf-8")
        return found
    base = _save(ref, image, cache, compression)
    if base.image_id != image_id:
        raise ServiceUnavailable(
            f"docker save of base image {ref!r} gave a config whose sha256 is "
            f"{base.image_id}, not the image ID {image_id}; it changed while kiln read it: "
            "run again"
        )
    seen.write_text(json.dumps({"ref": ref, "image_id": image_id}), encoding="utf-8")
    return base


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
        if config_bytes is None or any(
            not b.path.is_file() or b.path.stat().st_size != b.size for b in layers
        ):
            return None
        origin = (str(doc["host"]), str(doc["repository"]))
        config = json.loads(config_bytes)
        return BaseImage(ref, doc["config"], config, layers, origin, doc["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fetch(
    registry: BlobSource, repository: str, digest: str, size: int, cache: LayerCache
) -> None:
    target = cache.blob_path(digest)
    if target.is_file() and target.stat().st_size == size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)  # one per kiln at work
    os.close(fd)
    tmp = Path(name)
    try:
        registry.download_blob(repository, digest, tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


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
                "image.toml's base (or KILN_BASE_IMAGE)"
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
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
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
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(entry, sort_keys=True), encoding="utf-8")
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


def base_python(base: BaseImage, cache: LayerCache) -> BasePython:
    """The base's own ``python3``, run from its unpacked layers (unpacked on first use)."""
    return BasePython(base.image_id, base.layers, image_env(base.config), cache)


def probe_scheme(base: BaseImage, cache: LayerCache, python: BasePython) -> InstallScheme:
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
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(doc, sort_keys=True), encoding="utf-8")
    return scheme
