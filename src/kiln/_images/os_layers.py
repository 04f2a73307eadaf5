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

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln._debian.archive import Mirrors
from kiln._debian.deb import Deb, read_deb
from kiln._debian.layer import Release
from kiln._debian.lock import DebPin, LayerPin, OsLock, PackageSet
from kiln._debian.tree import Entry
from kiln._errors import ArtifactAltered, CommandFailed, ConfigError, ServiceUnavailable
from kiln._images.oci.base_image import BaseImage
from kiln._images.oci.cache import Blob, LayerCache
from kiln._images.oci.compress import GZIP
from kiln._images.oci.image import canonical_json, rfc3339, sha256_digest
from kiln._images.oci.index import DEFAULT_VARIANTS
from kiln._images.oci.rootfs import unpack
from kiln._images.os_tree import (
    WORK_PREFIX,
    extras_tree,
    host_architecture,
    os_tree,
    read_layer,
    store_tree,
)
from kiln._util.epoch import MTIME
from kiln._util.files import sha256_file, temporary_beside
from kiln._util.scratch import scratch_folder

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


# Threads reading .debs at once: each one's data.tar is decompressed in one call that
# leaves the GIL (``read_deb``).
READERS = 2


def _reads(pins: Sequence[tuple[DebPin, bytes]]) -> list[Deb]:
    def read(pin_data: tuple[DebPin, bytes]) -> Deb:
        pin, data = pin_data
        return read_deb(data, name=pin.name, where=f"{pin.filename} (images/os.lock)")

    with ThreadPoolExecutor(READERS, thread_name_prefix="kiln-deb") as pool:
        return list(pool.map(read, pins))


def check_layer(blob: Blob, pin: LayerPin, lock: Path, what: str) -> None:
    if (blob.diff_id, blob.digest, blob.size) != (pin.diff_id, pin.digest, pin.size):
        raise ConfigError(
            f"{lock}: {what} built from the locked packages is {blob.digest} (diff_id "
            f"{blob.diff_id}), the lock records {pin.digest} (diff_id {pin.diff_id}); the lock "
            "was written by another version of kiln or edited: run `kiln lock` and commit it"
        )


OS_TREE_BYTES = 256 << 20  # room for a copy of an OS tree (the example's: about 100 MB)


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
        self._ahead: dict[tuple[str, str | None], Future[list[Deb] | None]] = {}

    def _work(self) -> Path:
        """Where an OS tree is copied to compile its standard library: in memory when
        there is room (``scratch_folder``), else the layer cache's tmp."""
        memory = scratch_folder(OS_TREE_BYTES, WORK_PREFIX)
        if memory is not None:
            return memory
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
        architecture: str | None = None,
    ) -> Blob:
        """The layer of ``packages`` (the OS set of ``architecture``, default the lock's
        first, or an image's extras over that OS layer when ``below`` names the image), from
        ``debs`` (default: fetched): built here, no lock pin consulted."""
        one = lock.of(architecture or lock.architecture)
        release = Release(lock.suite, lock.release)
        if debs is None:
            debs = self._debs_of(packages, lock.path, mirrors=True) or []
        if below is None:
            compiler = self._compiler(lock, one)
            entries, python = os_tree(
                debs, release, work=self._work(), compiler=compiler,
                compiler_root=None if compiler is None else lambda: self._unpacked(lock),
            )  # fmt: skip
            if python != lock.python:
                raise ConfigError(
                    f"{lock.path}: the packages install Python {python}, the lock says "
                    f"{lock.python}; run `kiln lock`"
                )
            self._trees[one.architecture] = entries
        else:
            entries = extras_tree(debs, self._os_entries(lock, one.architecture))
        return store_tree(entries, self._cache)

    def _compiler(self, lock: OsLock, one: OsLock) -> Mapping[str, Entry] | None:
        """The OS tree whose ``python3`` compiles ``one``'s standard library: None (its own)
        when it runs here, else the lock's tree for this machine's architecture, whose
        Python package must be the same version (a .pyc depends on its source and the
        compiler only, not on the CPU)."""
        host = host_architecture()
        if one.architecture == host:
            return None
        if host not in lock.architectures:
            raise ConfigError(
                f"{lock.path}: the {one.architecture} OS layer's bytecode is compiled by the "
                f"{host} Python of the same lock (nothing runs emulated), and the lock has no "
                f"{host}: add {host!r} to [tool.kiln.os] architectures and run `kiln lock`"
            )
        mine, theirs = lock.of(host).os.versions(), one.os.versions()
        name = f"python{lock.python}-minimal"
        if mine.get(name) != theirs.get(name):
            raise ConfigError(
                f"{lock.path}: {name} is {theirs.get(name)} for {one.architecture} but "
                f"{mine.get(name)} for {host}; its bytecode is compiled by the {host} Python, "
                "which must be the same version: run `kiln lock --upgrade-os`"
            )
        return self._os_entries(lock, host)

    def _unpacked(self, lock: OsLock) -> Path:
        """This machine's architecture's OS base unpacked under the layer cache, as the
        build of an image on it unpacks it to run its python3 (so, mostly, already)."""
        base = self.base_image(lock, architecture=host_architecture())
        return unpack(base.image_id, base.layers, self._cache)

    def _os_entries(self, lock: OsLock, architecture: str) -> dict[str, Entry]:
        """The OS layer's entries for ``architecture``, read back from its blob (wherever
        that came from)."""
        if architecture not in self._trees:
            self._trees[architecture] = read_layer(self.layer(lock, architecture=architecture))
        return self._trees[architecture]

    def base_image(
        self, lock: OsLock, extras: str | None = None, *, architecture: str | None = None
    ) -> BaseImage:
        """kiln's OS base as an image for ``architecture`` (default: the lock's first): the
        OS layer (and ``extras``' layer: that image's os-packages), with a config written
        here. Nothing of the machine is in it."""
        full, lock = lock, lock.of(architecture or lock.architecture)
        layers = [self.layer(full, architecture=lock.architecture)]
        history = [
            (
                f"kiln: OS layer: Debian {lock.suite} {lock.release}, "
                f"{len(lock.os.packages)} packages (images/{lock.path.name})"
            )
        ]
        if extras is not None:
            layers.append(self.layer(full, extras, architecture=lock.architecture))
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
        if lock.architecture in DEFAULT_VARIANTS:  # arm64: v8, as an image index says it
            config["variant"] = DEFAULT_VARIANTS[lock.architecture]
        image_id = sha256_digest(canonical_json(config))
        return BaseImage(lock.name, image_id, config, tuple(layers))

    def read_ahead(
        self, lock: OsLock, image: str | None = None, *, architecture: str | None = None
    ) -> None:
        """Start reading, in a thread of its own, the cached .debs of a layer ``layer``
        will build (another platform's, while the first one's Python layers are made):
        decompressing them leaves the GIL. Nothing when the layer is cached or a .deb is
        not; whatever goes wrong there, ``layer`` reads them again itself."""
        arch = architecture or lock.architecture
        one = lock.of(arch)
        packages = one.os if image is None else one.extras[image]
        if (arch, image) in self._ahead or packages.layer is None:
            return
        if self._cache.blob_path(packages.layer.digest).exists():
            return
        read: Future[list[Deb] | None] = Future()

        def run() -> None:
            try:
                read.set_result(self._debs_of(packages, lock.path, mirrors=False))
            except BaseException as exc:
                read.set_exception(exc)

        self._ahead[(arch, image)] = read
        threading.Thread(target=run, name=f"kiln-debs-{arch}", daemon=True).start()

    def _cached_debs(
        self, packages: PackageSet, lock: OsLock, arch: str, image: str | None
    ) -> list[Deb] | None:
        """The layer's .debs from kiln's cache (None: one is not there), read ahead or now."""
        ahead = self._ahead.pop((arch, image), None)
        if ahead is not None and ahead.exception() is None:
            return ahead.result()
        return self._debs_of(packages, lock.path, mirrors=False)

    def layer(
        self, lock: OsLock, image: str | None = None, *, architecture: str | None = None
    ) -> Blob:
        """The lock's OS layer for ``architecture`` (default: its first), or ``image``'s
        extras layer, as the lock records it."""
        arch = architecture or lock.architecture
        one = lock.of(arch)
        packages = one.os if image is None else one.extras[image]
        what = "the OS layer" if image is None else f"the {image} image's os-packages layer"
        pin = packages.layer
        if pin is None:
            raise ValueError(f"{lock.path}: {what} has no recorded layer")
        found = self._from_cache(pin)
        if found is None:
            cached = self._cached_debs(packages, lock, arch, image)
            if cached is not None:
                found = self.build(lock, packages, below=image, debs=cached, architecture=arch)
            else:
                found = self._from_registry(pin) or self.build(
                    lock, packages, below=image, architecture=arch
                )
            check_layer(found, pin, lock.path, what)
        return found
