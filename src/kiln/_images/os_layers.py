"""The OS layers of a lock, as blobs: found, fetched or built, and always checked.

Where a layer comes from, in order:
1. kiln's layer cache, the blob of the lock's digest (its sha256 checked);
2. built from the locked ``.deb`` files, when kiln's cache holds them all;
3. the registry's copy of the layer (the release's registry holds it once any image
   on it was pushed), its digest checked: a machine that can no longer fetch a
   superseded ``.deb`` builds from there;
4. built from ``.deb`` files fetched from the mirrors (each checked against its sha256).
A layer built here must have the lock's diff_id and digest; where no source has a
package any more, the error names the packages and ``kiln lock --upgrade-os``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from kiln._debian.archive import Mirrors
from kiln._debian.deb import Deb, read_deb
from kiln._debian.layer import (
    Release,
    TreeBuilder,
    add_bytecode,
    add_ld_cache,
    add_packages,
    add_system,
    write_tree,
)
from kiln._debian.lock import DebPin, LayerPin, OsLock, PackageSet
from kiln._debian.tree import DIR, FILE, SYMLINK, Entry, normalize
from kiln._errors import ArtifactAltered, CommandFailed, ConfigError, ServiceUnavailable
from kiln._images.oci.base_image import BaseImage
from kiln._images.oci.cache import Blob, LayerCache
from kiln._images.oci.compress import GZIP, BlobWriter, Written
from kiln._images.oci.image import canonical_json, rfc3339, sha256_digest
from kiln._images.oci.install import compile_bytecode
from kiln._images.oci.interpreter import FolderPython
from kiln._images.oci.rootfs import needed
from kiln._util.epoch import MTIME
from kiln._util.files import sha256_file, temporary_beside
from kiln._util.paths import stays_inside

# The environment of kiln's OS base: Debian's PATH, and the C.UTF-8 locale glibc has built in.
OS_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
)


class LayerCopies(Protocol):
    """Where a built layer may already be: the registry's blobs (``RegistryCopies``)."""

    def fetch(self, layer: LayerPin, target: Path) -> bool:
        """Download the blob of ``layer`` into ``target`` if some repository of the
        registry holds it; whether it did. Its bytes are checked by the caller."""
        ...


class Blobs(Protocol):
    """What finding a layer in a registry needs of its client (``RegistryClient``)."""

    def blob_exists(self, repository: str, digest: str) -> bool: ...

    def download_blob(self, repository: str, digest: str, target: Path) -> int: ...


class RegistryCopies:
    """The layers a registry holds in any of ``repositories`` (the workspace's images:
    each holds the OS layer once any of them was pushed)."""

    def __init__(self, registry: Blobs, repositories: Sequence[str]) -> None:
        self._registry = registry
        self._repositories = tuple(repositories)

    def fetch(self, layer: LayerPin, target: Path) -> bool:
        for repository in self._repositories:
            if self._registry.blob_exists(repository, layer.digest):
                self._registry.download_blob(repository, layer.digest, target)
                return True
        return False


@dataclass(frozen=True)
class Fetched:
    debs: tuple[tuple[DebPin, bytes], ...]
    gone: tuple[DebPin, ...]  # no mirror has them any more (and the cache neither)


def deb_path(cache: Path, pin: DebPin) -> Path:
    return cache / "debs" / f"{pin.sha256}.deb"


def _cached(cache: Path, pin: DebPin) -> bytes | None:
    """The cached ``.deb`` of ``pin``, if its bytes are still its sha256's."""
    try:
        data = deb_path(cache, pin).read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == pin.sha256 else None


def fetch_debs(
    pins: Sequence[DebPin],
    mirrors: Mirrors | None,
    cache: Path,
    *,
    log: Callable[[str], None] = lambda _line: None,
) -> Fetched:
    """Every ``.deb`` of ``pins``: from kiln's cache, else from the mirrors (``None``:
    the cache only). A file whose sha256 is not the lock's is an error naming it."""
    found: list[tuple[DebPin, bytes]] = []
    gone: list[DebPin] = []
    for pin in pins:
        data = _cached(cache, pin)
        if data is None and mirrors is not None:
            with temporary_beside(deb_path(cache, pin)) as tmp:
                url = mirrors.fetch_to(pin.archive, pin.path, tmp)
                if url is not None:
                    sha = sha256_file(tmp)
                    if sha != pin.sha256:
                        raise ArtifactAltered(
                            f"{url}/{pin.path}: sha256 {sha}, but images/os.lock pins "
                            f"{pin.name} {pin.version} to {pin.sha256}; the mirror serves "
                            "other bytes under this name: use another mirror (or, if the "
                            "lock was edited, restore it)"
                        )
                    log(f"    fetched {pin.filename} ({pin.size} bytes)")
                    tmp.replace(deb_path(cache, pin))
                    data = deb_path(cache, pin).read_bytes()
        if data is None:
            gone.append(pin)
        else:
            found.append((pin, data))
    return Fetched(tuple(found), tuple(gone))


def unavailable(pins: Sequence[DebPin], mirrors: Mirrors, cache: Path) -> list[DebPin]:
    """The pins neither kiln's cache (checked by sha256) nor any mirror holds any more."""
    return [p for p in pins if _cached(cache, p) is None and not mirrors.has(p.archive, p.path)]


def extract(tree: Mapping[str, Entry], root: Path) -> None:
    """Write what the image's python3 reads of ``tree`` under ``root`` (folders first).
    Nothing is written through a link: a path whose folder leads out of ``root`` (a link
    to an absolute path, as ``usr/lib/ssl/certs`` is) is left out."""
    top = os.path.realpath(root)
    for path in sorted(tree, key=lambda p: p.split("/")):
        entry = tree[path]
        if not needed(path):
            continue
        target = root / path
        if not stays_inside(target.parent, top):
            continue
        if entry.kind == DIR:
            target.mkdir(parents=True, exist_ok=True)
        elif entry.kind == SYMLINK:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(entry.target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(entry.data)
            target.chmod((entry.mode & 0o777) | stat.S_IRUSR | stat.S_IWUSR)


def read_layer(blob: Blob) -> dict[str, Entry]:
    """A layer blob's entries (what an extras layer is checked against)."""
    entries = {}
    with gzip.open(blob.path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            path = normalize(member.name)
            if not path:
                continue
            if member.isdir():
                entry = Entry(path, DIR, member.mode, uid=member.uid, gid=member.gid)
            elif member.issym():
                entry = Entry(path, SYMLINK, 0o777, target=member.linkname)
            else:
                extracted = tar.extractfile(member)
                data = extracted.read() if extracted is not None else b""
                entry = Entry(path, FILE, member.mode, data=data, uid=member.uid, gid=member.gid)
            entries[path] = dataclasses.replace(entry, owner="the OS layer")
    return entries


def _cache_tag(python: str) -> str:
    return "cpython-" + python.replace(".", "")


def compile_with_own_python(
    tree: Mapping[str, Entry], sources: Sequence[str], *, python: str, work: Path
) -> dict[str, bytes]:
    """``.pyc`` bytes (image path -> bytes) of ``sources``, compiled by the tree's own
    ``python3`` run from a copy of the tree under ``work``."""
    with tempfile.TemporaryDirectory(prefix="os-", dir=work) as tmp:
        root = Path(tmp)
        extract(tree, root)
        interpreter = FolderPython(root, f"/usr/bin/python{python}", f"OS python {python}")
        compiled = compile_bytecode(root, [f"/{s}" for s in sources], _cache_tag(python),
                                    interpreter)  # fmt: skip
        out = {}
        for image_path in compiled:
            folder, name = image_path.lstrip("/").rsplit("/", 1)
            pyc = f"{folder}/__pycache__/{name[:-3]}.{_cache_tag(python)}.pyc"
            out[pyc] = (root / pyc).read_bytes()
    return out


def os_tree(debs: Sequence[Deb], release: Release, *, work: Path) -> tuple[dict[str, Entry], str]:
    """The shared OS layer's entries, and the Python version it installs."""
    builder = TreeBuilder()
    add_packages(builder, debs)
    python = add_system(builder, release)

    def compile_tree(tree: Mapping[str, Entry], sources: Sequence[str]) -> Mapping[str, bytes]:
        return compile_with_own_python(tree, sources, python=python, work=work)

    add_bytecode(builder, python, compile_tree)
    add_ld_cache(builder)
    return builder.entries, python


def extras_tree(debs: Sequence[Deb], below: Mapping[str, Entry]) -> dict[str, Entry]:
    """An image's extras layer: its packages' files over the OS layer ``below``, and an
    ``ld.so.cache`` that knows the libraries of both."""
    builder = TreeBuilder(below)
    add_packages(builder, debs)
    add_ld_cache(builder)
    return builder.entries


def store_tree(entries: Mapping[str, Entry], cache: LayerCache) -> Blob:
    """``entries`` as a layer blob in ``cache`` (kiln's pinned gzip)."""

    def write(out: BinaryIO) -> Written:
        writer = BlobWriter(out, GZIP)
        write_tree(entries.values(), writer)  # type: ignore[arg-type]  # tarfile's file
        return writer.finish()

    return cache.store(write, GZIP)


def _reads(pins: Sequence[tuple[DebPin, bytes]]) -> list[Deb]:
    return [
        read_deb(data, name=pin.name, where=f"{pin.filename} (images/os.lock)")
        for pin, data in pins
    ]


def check_layer(blob: Blob, pin: LayerPin, lock: Path, what: str) -> None:
    if (blob.diff_id, blob.digest, blob.size) != (pin.diff_id, pin.digest, pin.size):
        raise ConfigError(
            f"{lock}: {what} built from the locked packages is {blob.digest} (diff_id "
            f"{blob.diff_id}), the lock records {pin.digest} (diff_id {pin.diff_id}); the lock "
            "was written by another version of kiln or edited: run `kiln lock` and commit it"
        )


class OsLayers:
    """The OS layers of a lock, from the cache, the registry or the mirrors (see module)."""

    def __init__(
        self,
        cache: LayerCache,
        deb_cache: Path,
        mirrors: Mirrors | None,
        *,
        copies: LayerCopies | None = None,
        log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self._cache = cache
        self._debs = deb_cache
        self._mirrors = mirrors
        self._copies = copies
        self._log = log
        self._trees: dict[str, dict[str, Entry]] = {}
        self._checked: dict[str, Blob] = {}  # layer digest -> its blob, checked once

    def _work(self) -> Path:
        work = self._cache.root / "tmp"
        work.mkdir(parents=True, exist_ok=True)
        return work

    def _from_cache(self, pin: LayerPin) -> Blob | None:
        """The cached blob of ``pin``, its sha256 checked (hashed when its file changed
        since it was last found whole; once per run: every image asks for it)."""
        if pin.digest in self._checked:
            return self._checked[pin.digest]
        path = self._cache.blob_path(pin.digest)
        try:
            if not self._cache.intact(path, pin.digest, pin.size):
                return None
        except OSError:
            return None
        blob = Blob(GZIP.media_type, pin.digest, pin.size, pin.diff_id, path)
        self._checked[pin.digest] = blob
        return blob

    def _from_registry(self, pin: LayerPin) -> Blob | None:
        if self._copies is None:
            return None
        target = self._cache.blob_path(pin.digest)
        with temporary_beside(target) as tmp:
            try:
                found = self._copies.fetch(pin, tmp)
            except (ServiceUnavailable, CommandFailed) as exc:  # the mirrors may still serve
                self._log(f"    OS layer {pin.digest[:19]}: the registry's copy failed ({exc})")
                return None
            if not found:
                return None
            if f"sha256:{sha256_file(tmp)}" != pin.digest:
                raise ArtifactAltered(
                    f"the registry's blob {pin.digest} (kiln's OS layer) holds other bytes; "
                    "the registry's storage is damaged or was altered: delete the blob there"
                )
            tmp.replace(target)
        self._log(f"    OS layer {pin.digest[:19]}: taken from the registry")
        return self._from_cache(pin)

    def _debs_of(self, packages: PackageSet, lock: Path, *, mirrors: bool) -> list[Deb] | None:
        fetched = fetch_debs(
            packages.packages, self._mirrors if mirrors else None, self._debs, log=self._log
        )
        if fetched.gone:
            if not mirrors:
                return None
            names = ", ".join(f"{p.name} {p.version}" for p in fetched.gone)
            raise ServiceUnavailable(
                f"{lock}: no mirror serves {names} any more (Debian drops superseded "
                "versions), kiln's cache lacks them and the registry has no copy of the layer; "
                "move the lock to the versions the suites offer now: `kiln lock --upgrade-os`, "
                "then commit images/os.lock"
            )
        return _reads(fetched.debs)

    def build(
        self,
        lock: OsLock,
        packages: PackageSet,
        *,
        below: str | None = None,
        debs: Sequence[Deb] | None = None,
    ) -> Blob:
        """The layer of ``packages`` (``lock.os``, or an image's extras over the OS layer
        when ``below`` names that image), from ``debs`` (default: fetched): built here,
        no lock pin consulted."""
        release = Release(lock.suite, lock.release)
        if debs is None:
            debs = self._debs_of(packages, lock.path, mirrors=True) or []
        if below is None:
            entries, python = os_tree(debs, release, work=self._work())
            if python != lock.python:
                raise ConfigError(
                    f"{lock.path}: the packages install Python {python}, the lock says "
                    f"{lock.python}; run `kiln lock`"
                )
            self._trees["os"] = entries
        else:
            entries = extras_tree(debs, self._os_entries(lock))
        return store_tree(entries, self._cache)

    def _os_entries(self, lock: OsLock) -> dict[str, Entry]:
        """The OS layer's entries, read back from its blob (wherever that came from)."""
        if "os" not in self._trees:
            self._trees["os"] = read_layer(self.layer(lock))
        return self._trees["os"]

    def base_image(self, lock: OsLock, extras: str | None = None) -> BaseImage:
        """kiln's OS base as an image: the OS layer (and ``extras``' layer: that image's
        os-packages), with a config written here. Nothing of the machine is in it."""
        layers = [self.layer(lock)]
        history = [
            (
                f"kiln: OS layer: Debian {lock.suite} {lock.release}, "
                f"{len(lock.os.packages)} packages (images/{lock.path.name})"
            )
        ]
        if extras is not None:
            layers.append(self.layer(lock, extras))
            extra = lock.extras[extras]
            history.append(f"kiln: {extras}'s os-packages: {' '.join(extra.roots)}")
        config = {
            "architecture": lock.architecture,
            "os": "linux",
            "created": rfc3339(MTIME),
            "config": {"Env": list(OS_ENV), "Cmd": ["python3"]},
            "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in layers]},
            "history": [{"created": rfc3339(MTIME), "created_by": line} for line in history],
        }
        image_id = sha256_digest(canonical_json(config))
        return BaseImage(lock.name, image_id, config, tuple(layers))

    def layer(self, lock: OsLock, image: str | None = None) -> Blob:
        """The lock's OS layer (or ``image``'s extras layer), as the lock records it."""
        packages = lock.os if image is None else lock.extras[image]
        what = "the OS layer" if image is None else f"the {image} image's os-packages layer"
        pin = packages.layer
        if pin is None:
            raise ValueError(f"{lock.path}: {what} has no recorded layer")
        found = self._from_cache(pin)
        if found is None:
            cached = self._debs_of(packages, lock.path, mirrors=False)
            if cached is not None:
                found = self.build(lock, packages, below=image, debs=cached)
            else:
                found = self._from_registry(pin) or self.build(lock, packages, below=image)
            check_layer(found, pin, lock.path, what)
        return found
