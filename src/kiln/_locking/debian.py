"""`kiln lock` for the OS: resolve the closure, build its layer, write ``images/os.lock``.

A lock made again from the same inputs keeps every version it holds (nothing is
fetched); one whose inputs changed (a root added, an image's os-packages) keeps the
versions the suites still offer; ``--upgrade-os`` takes the newest of everything.
Either way the layer is built and its diff_id and digest are recorded, so every
later build checks it gives the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from kiln._debian.archive import Candidate, Indexes, by_name
from kiln._debian.config import SECTION, python_of
from kiln._debian.layer import WRITER
from kiln._debian.lock import OS_LOCK, ArchSets, LayerPin, OsLock, PackageSet, read_os_lock
from kiln._debian.resolve import Closure, Resolver, extra_closure
from kiln._errors import ConfigError
from kiln._images.os_tree import host_architecture
from kiln._workspace.model import Workspace


class LayerBlob(Protocol):
    """A built layer as the lock records it."""

    @property
    def diff_id(self) -> str: ...

    @property
    def digest(self) -> str: ...

    @property
    def size(self) -> int: ...


class LayerBuilder(Protocol):
    """What locking needs of ``kiln._images.os_layers.OsLayers``: a lock's layer, built."""

    def build(
        self,
        lock: OsLock,
        packages: PackageSet,
        *,
        below: str | None = None,
        architecture: str | None = None,
    ) -> LayerBlob: ...


def os_inputs(workspace: Workspace) -> str:
    """What the OS lock is made from: [tool.kiln.os] and every image's os-packages."""
    extras = {i.name: i.os_packages for i in workspace.images if i.os_packages}
    return workspace.os.inputs(extras)


def stale_reason(lock: OsLock, workspace: Workspace) -> str | None:
    """Why ``lock`` is stale (None: it is not)."""
    if lock.inputs != os_inputs(workspace):
        return f"[{SECTION}] or an image's os-packages changed since it was written"
    if lock.writer != WRITER:
        return (
            f"it was written by a kiln whose OS layer writer is {lock.writer}; this kiln's is "
            f"{WRITER}"
        )
    return None


def check_os_fresh(lock: OsLock, workspace: Workspace) -> None:
    """A ConfigError naming the lock and the fix when it is stale, or when an image on
    kiln's OS base says another Python than the lock's."""
    why = stale_reason(lock, workspace)
    if why is not None:
        raise ConfigError(f"{lock.path}: stale: {why}; run `kiln lock` and commit the result")
    for image in workspace.on_os:
        if image.python != lock.python:
            raise ConfigError(
                f"{workspace.settings_of(image)}: python = {image.python!r}, but kiln's OS "
                f"base installs Python {lock.python} ({lock.path}); set python = "
                f"{lock.python!r}, or change the Python of [{SECTION}] packages"
            )


def fresh_os_lock(workspace: Workspace) -> OsLock:
    """The committed OS lock (``images/os.lock``), checked against ``workspace``: a
    ConfigError naming the lock and the fix when it is missing or stale."""
    lock = read_os_lock(workspace.root)
    check_os_fresh(lock, workspace)
    return lock


@dataclass(frozen=True)
class Change:
    name: str
    before: str | None  # None: added
    after: str | None  # None: removed
    where: str = "os"  # "os" or the image whose os-packages it is

    @property
    def line(self) -> str:
        what = f"{self.name} ({self.where})" if self.where != "os" else self.name
        if self.before is None:
            return f"+ {what} {self.after}"
        if self.after is None:
            return f"- {what} {self.before}"
        return f"  {what} {self.before} -> {self.after}"


def _sets(lock: OsLock | None) -> dict[str, PackageSet]:
    """Each package set of ``lock`` by where it is: "os", an image, and for an architecture
    after the first "os arm64", "<image> arm64"."""
    if lock is None:
        return {}
    found: dict[str, PackageSet] = {}
    for arch in lock.architectures:
        one = lock.of(arch)
        suffix = "" if arch == lock.architecture else f" {arch}"
        found |= {f"os{suffix}": one.os} | {f"{k}{suffix}": v for k, v in one.extras.items()}
    return found


def _order(where: str) -> tuple[str, bool, str]:
    """Each architecture's sets together (the first's first), its OS set before the images'."""
    name, _, arch = where.partition(" ")
    return arch, name != "os", name


def changes(old: OsLock | None, new: OsLock) -> list[Change]:
    """Every package version that ``new`` moves, adds or drops, by set and name."""
    found = []
    sets = _sets(new)
    before_sets = _sets(old)
    for where in sorted(set(sets) | set(before_sets), key=_order):
        after = sets[where].versions() if where in sets else {}
        before = before_sets[where].versions() if where in before_sets else {}
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                found.append(Change(name, before.get(name), after.get(name), where))
    return found


def _layers(lock: OsLock, image: str) -> tuple[str | None, ...]:
    sets = [
        packages
        for arch in lock.architectures
        for one in [lock.of(arch)]
        for packages in [one.os, *([one.extras[image]] if image in one.extras else [])]
    ]
    return tuple(s.layer.digest if s.layer else None for s in sets)


def moved_images(old: OsLock | None, new: OsLock, workspace: Workspace) -> list[str]:
    """The images on kiln's OS base whose OS layers differ between ``old`` and ``new``:
    their bytes move, so a version already pushed must be bumped (`kiln check` says so)."""
    return [
        i.name
        for i in workspace.images
        if i.base is None and (old is None or _layers(old, i.name) != _layers(new, i.name))
    ]


def lock_os(
    workspace: Workspace,
    *,
    indexes: Indexes,
    layers: LayerBuilder,
    previous: OsLock | None,
    upgrade: bool,
    log: Callable[[str], None] = lambda _line: None,
) -> OsLock:
    """The OS lock of ``workspace``, resolved and with its layers built (see module)."""
    config = workspace.os
    where = f"{config.path or 'pyproject.toml'}: [{SECTION}]"
    python = python_of(config.packages)
    if python is None:
        raise ConfigError(
            f"{where} packages install no Python: add python3.X-minimal and libpython3.X-stdlib "
            "(e.g. python3.11-minimal, libpython3.11-stdlib)"
        )
    suites = indexes.load()
    keep = previous is not None and not upgrade
    sets = {}
    for arch in config.architectures:
        candidates = by_name(suites if arch == config.architecture else indexes.load(arch))
        prefer = _preferred(previous, arch) if keep else {}
        sets[arch] = _closures(workspace, candidates, arch, prefer, where)
    for arch, (closure, _extras) in sets.items():
        which = "" if arch == config.architecture else f" {arch}"
        omitted = len(closure.omitted)
        log(
            f"    OS closure{which}: {len(closure.packages)} packages, {omitted} relations left out"
        )
    # The point release the lock says (os-release, /etc/debian_version) moves with its
    # packages: kept when they are, for the same suite and architecture.
    same = previous is not None and (previous.suite, previous.architecture) == (
        config.suite, config.architecture,
    )  # fmt: skip
    release = previous.release if keep and same and previous is not None else suites[0].version
    first, first_extras = sets[config.architecture]
    lock = OsLock(
        path=workspace.root / OS_LOCK,
        inputs=os_inputs(workspace),
        writer=WRITER,
        suite=config.suite,
        release=release,
        architecture=config.architecture,
        python=python,
        os=PackageSet.of(first),
        extras=first_extras,
        more={
            arch: ArchSets(PackageSet.of(closure), extras)
            for arch, (closure, extras) in sets.items()
            if arch != config.architecture
        },
    )
    # This machine's architecture first: its Python compiles the others' bytecode.
    order = sorted(lock.architectures, key=lambda a: a != host_architecture())
    for arch in order:
        lock = _built(lock, arch, layers, log)
    return lock


def _with(lock: OsLock, arch: str, sets: ArchSets) -> OsLock:
    """``lock`` with ``sets`` as the sets of ``arch``."""
    if arch == lock.architecture:
        return dataclasses.replace(lock, os=sets.os, extras=sets.extras)
    return dataclasses.replace(lock, more={**lock.more, arch: sets})


def _preferred(previous: OsLock | None, arch: str) -> dict[str, str]:
    """The versions a lock made again keeps for ``arch``: every one the previous lock
    holds, its extras' too (a package moving from an image's os-packages into the OS keeps
    its version); for an architecture it did not lock, the first architecture's, so both
    images carry the same versions where the suites offer them."""
    if previous is None:
        return {}
    prefer: dict[str, str] = {}
    for one in dict.fromkeys((previous.architecture, arch)):
        if one in previous.architectures:
            sets = previous.of(one)
            for packages in (*sets.extras.values(), sets.os):
                prefer.update(packages.versions())
    return prefer


def _closures(
    workspace: Workspace,
    candidates: Mapping[str, list[Candidate]],
    arch: str,
    prefer: dict[str, str],
    where: str,
) -> tuple[Closure, dict[str, PackageSet]]:
    """The OS closure for ``arch``, and each image's os-packages over it."""
    config = workspace.os
    closure = Resolver(
        candidates, architecture=arch, exclude=config.exclude, prefer=prefer, where=where,
    ).resolve(config.packages)  # fmt: skip
    extras: dict[str, PackageSet] = {}
    for image in workspace.images:
        if not image.os_packages:
            continue
        found = extra_closure(
            candidates, closure, image.os_packages, architecture=arch,
            exclude=config.exclude, prefer=prefer,
            where=f"{image.path / 'image.toml'}: os-packages",
        )  # fmt: skip
        extras[image.name] = PackageSet.of(found, image.os_packages)
    return closure, extras


def _built(lock: OsLock, arch: str, layers: LayerBuilder, log: Callable[[str], None]) -> OsLock:
    """``lock`` with the layers of ``arch``'s sets built and recorded (its OS layer first:
    each extras layer is built over it)."""
    which = f" ({arch})" if len(lock.architectures) > 1 else ""
    one = lock.of(arch)
    blob = layers.build(lock, one.os, architecture=arch)
    os_set = dataclasses.replace(one.os, layer=LayerPin(blob.diff_id, blob.digest, blob.size))
    lock = _with(lock, arch, ArchSets(os_set, one.extras))
    log(f"    OS layer{which} {blob.digest[:19]}: {blob.size} bytes")
    for name, extra in sorted(one.extras.items()):
        blob = layers.build(lock, extra, below=name, architecture=arch)
        pinned = dataclasses.replace(extra, layer=LayerPin(blob.diff_id, blob.digest, blob.size))
        one = lock.of(arch)
        lock = _with(lock, arch, ArchSets(one.os, {**one.extras, name: pinned}))
        log(f"    {name}'s os-packages layer{which} {blob.digest[:19]}: {blob.size} bytes")
    return lock
