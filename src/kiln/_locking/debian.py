"""`kiln lock` for the OS: resolve the closure, build its layer, write ``images/os.lock``.

A lock made again from the same inputs keeps every version it holds (nothing is
fetched); one whose inputs changed (a root added, an image's os-packages) keeps the
versions the suites still offer; ``--upgrade-os`` takes the newest of everything.
Either way the layer is built and its diff_id and digest are recorded, so every
later build checks it gives the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kiln._debian.archive import Indexes, by_name
from kiln._debian.config import SECTION, python_of
from kiln._debian.layer import WRITER
from kiln._debian.lock import OS_LOCK, LayerPin, OsLock, PackageSet, read_os_lock
from kiln._debian.resolve import Resolver, extra_closure
from kiln._errors import ConfigError
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
        self, lock: OsLock, packages: PackageSet, *, below: str | None = None
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


def changes(old: OsLock | None, new: OsLock) -> list[Change]:
    """Every package version that ``new`` moves, adds or drops, by set and name."""
    found = []
    sets = {"os": new.os, **new.extras}
    before_sets = {} if old is None else {"os": old.os, **old.extras}
    for where in sorted(set(sets) | set(before_sets), key=lambda w: (w != "os", w)):
        after = sets[where].versions() if where in sets else {}
        before = before_sets[where].versions() if where in before_sets else {}
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                found.append(Change(name, before.get(name), after.get(name), where))
    return found


def _layers(lock: OsLock, image: str) -> tuple[str | None, ...]:
    sets = [lock.os, *([lock.extras[image]] if image in lock.extras else [])]
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
    candidates = by_name(suites)
    keep = previous is not None and not upgrade
    # Every version the previous lock holds, the extras' too (a package moving from an
    # image's os-packages into the OS keeps its version), unless upgrading.
    prefer: dict[str, str] = {}
    if keep and previous is not None:
        for packages in (*previous.extras.values(), previous.os):
            prefer.update(packages.versions())
    closure = Resolver(
        candidates, architecture=config.architecture, exclude=config.exclude, prefer=prefer,
        where=where,
    ).resolve(config.packages)  # fmt: skip
    omitted = len(closure.omitted)
    log(f"    OS closure: {len(closure.packages)} packages, {omitted} relations left out")
    extras: dict[str, PackageSet] = {}
    for image in workspace.images:
        if not image.os_packages:
            continue
        found = extra_closure(
            candidates, closure, image.os_packages, architecture=config.architecture,
            exclude=config.exclude, prefer=prefer,
            where=f"{image.path / 'image.toml'}: os-packages",
        )  # fmt: skip
        extras[image.name] = PackageSet.of(found, image.os_packages)
    # The point release the lock says (os-release, /etc/debian_version) moves with its
    # packages: kept when they are, for the same suite and architecture.
    same = previous is not None and (previous.suite, previous.architecture) == (
        config.suite, config.architecture,
    )  # fmt: skip
    release = previous.release if keep and same and previous is not None else suites[0].version
    lock = OsLock(
        path=workspace.root / OS_LOCK,
        inputs=os_inputs(workspace),
        writer=WRITER,
        suite=config.suite,
        release=release,
        architecture=config.architecture,
        python=python,
        os=PackageSet.of(closure),
        extras=extras,
    )
    blob = layers.build(lock, lock.os)
    lock = dataclasses.replace(
        lock, os=dataclasses.replace(lock.os, layer=LayerPin(blob.diff_id, blob.digest, blob.size))
    )
    log(f"    OS layer {blob.digest[:19]}: {blob.size} bytes")
    for name, extra in sorted(extras.items()):
        blob = layers.build(lock, extra, below=name)
        pinned = dataclasses.replace(extra, layer=LayerPin(blob.diff_id, blob.digest, blob.size))
        lock = dataclasses.replace(lock, extras={**lock.extras, name: pinned})
        log(f"    {name}'s os-packages layer {blob.digest[:19]}: {blob.size} bytes")
    return lock
