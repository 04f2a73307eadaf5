"""Packages mode: what a component's pod installs when it starts, pinned and hash-checked.

KFP's ``packages_to_install`` passes each item to ``pip install`` on its own, after
``--index-url <pip_index_urls[0]>``. kiln gives it ``--no-deps``, ``--require-hashes``
and one ``name @ <file URL>#sha256=<hash>`` item per distribution of the closure: the
component's helpers (with their sibling pins), the third-party wheels they need from
packages mode's lock (followed through each wheel's ``Requires-Dist``, markers
evaluated for the pod's Python and machine), and kfp itself (``--no-deps``, as KFP's
runtime installs it; ``install_kfp_package=False`` drops KFP's own unpinned line). pip
then downloads exactly those files and refuses one whose bytes differ from the hash.

Packages mode's base is made for each of its platforms, so a pod may start on an amd64
or an arm64 node. A distribution whose wheel is the same file on every platform (a pure
wheel) is one item; one whose files differ (numpy's x86_64 and aarch64 wheels) is one
item per platform, each gated by a PEP 508 marker (``numpy @ <URL>#sha256=<hash> ;
platform_machine == "aarch64"``) that pip evaluates in the pod and skips where false.

Nothing in an item carries a credential: the file URLs are made from the index URL,
which kiln refuses with credentials in it. A pod authenticates to a private index from
its own environment (a netrc or pip configuration the cluster provides).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from kiln._errors import ConfigError
from kiln._util.kept import Kept, code_digest
from kiln._wheels import metadata as _metadata
from kiln._wheels.metadata import WheelMetadata, import_packages, wheel_metadata
from kiln._wheels.wheelhouse import Wheelhouse
from kiln._workspace.model import Component, Workspace

# The file URL of a wheel on the private index; pypiserver's layout by default.
DEFAULT_FILE_URL = "{index}/packages/{filename}"
# Imports every pod has without installing anything for them.
ALWAYS = frozenset({"kfp", "__future__"})


@dataclass(frozen=True)
class Installed:
    """One distribution a pod installs: its wheel's name on the index and its hash."""

    name: str  # canonical
    version: str
    filename: str
    sha256: str
    path: Path  # the local copy (its metadata and import packages are read from it)


def _requires(wheel: Path, python: str, machine: str) -> list[str]:
    """The canonical names a wheel requires for a CPython ``python`` pod on Linux whose
    ``platform_machine`` is ``machine`` ("x86_64", "aarch64"); read once per file."""
    stat = wheel.stat()
    return list(_requires_of(str(wheel), stat.st_size, stat.st_mtime_ns, python, machine))


@functools.lru_cache(maxsize=8192)
def _requires_of(
    wheel: str, _size: int, _mtime_ns: int, python: str, machine: str
) -> tuple[str, ...]:
    return _applying(wheel_metadata(Path(wheel)).requires, python, machine)


def _applying(requires: Iterable[str], python: str, machine: str) -> tuple[str, ...]:
    """The canonical names of ``requires`` (Requires-Dist lines) whose markers hold for a
    CPython ``python`` pod on Linux whose ``platform_machine`` is ``machine``."""
    env = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_system": "Linux",
        "platform_machine": machine,
        "extra": "",
    }
    found = []
    for raw in requires:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate(env):
            found.append(str(canonicalize_name(req.name)))
    return tuple(found)


class Hashed(Protocol):
    """A wheel and the sha256 of its bytes (``WheelFile``, ``BuiltWheel``, ``Installed``)."""

    @property
    def path(self) -> Path: ...

    @property
    def sha256(self) -> str: ...


# What a wheel says of itself is worked out by kiln._wheels.metadata: its code is named.
WHEEL_FORMAT = f"kiln wheel metadata 1 code {code_digest(_metadata.__file__)} sha256:".encode()


class WheelFacts:
    """What each wheel says of itself (``wheel_metadata``: its import packages and its
    Requires-Dist), by the sha256 of its bytes: read from its zip once, then kept under
    ``folder`` (None: kept in this object only). A no-op release at N=500 opened 540
    wheels (0.4 s) whose names and METADATA the last run had read; their sha256 is the
    one this release pins (each wheel is hashed as it is built or fetched)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.kept = Kept(folder, WHEEL_FORMAT) if folder is not None else None
        self.read = 0  # wheels whose zip this object opened (not kept, or kept damaged)
        self._known: dict[str, WheelMetadata] = {}
        self._requires: dict[tuple[str, str, str], tuple[str, ...]] = {}

    def metadata(self, wheel: Hashed) -> WheelMetadata:
        found = self._known.get(wheel.sha256)
        if found is None:
            found = self._from_kept(wheel.sha256)
        if found is None:
            self.read += 1
            found = wheel_metadata(wheel.path)
            if self.kept is not None:
                kept = {"packages": list(found.packages), "requires": list(found.requires)}
                self.kept.put(wheel.sha256, kept)
        self._known[wheel.sha256] = found
        return found

    def _from_kept(self, sha256: str) -> WheelMetadata | None:
        value = self.kept.get(sha256) if self.kept is not None else None
        if not isinstance(value, dict) or value.keys() != {"packages", "requires"}:
            return None
        packages, requires = value["packages"], value["requires"]
        for strings in (packages, requires):
            if not isinstance(strings, list) or not all(isinstance(i, str) for i in strings):
                return None
        return WheelMetadata(tuple(packages), tuple(requires))

    def import_names(self, wheels: Iterable[Hashed]) -> frozenset[str]:
        """The top-level modules ``wheels`` install (``import_names``)."""
        return frozenset(p for wheel in wheels for p in self.metadata(wheel).packages)

    def requires(self, wheel: Hashed, python: str, machine: str) -> tuple[str, ...]:
        """The canonical names ``wheel`` requires on a ``python`` pod of ``machine``."""
        key = (wheel.sha256, python, machine)
        found = self._requires.get(key)
        if found is None:
            found = self._requires[key] = _applying(self.metadata(wheel).requires, python, machine)
        return found


@dataclass(frozen=True)
class _Tables:
    """What a closure looks up in a wheelhouse, made once per wheelhouse: a release asks
    for the closure of every packages-mode component (202 of them at 500 helpers, each
    going over all 500 wheels: 1.6 s)."""

    wheelhouse: Wheelhouse  # held, so that its id is not reused while this is kept
    by_name: Mapping[str, Installed]
    provides: tuple[tuple[str, frozenset[str]], ...]  # third-party name -> its imports


_TABLES: dict[int, _Tables] = {}


def _tables(wheelhouse: Wheelhouse, facts: WheelFacts | None = None) -> _Tables:
    hit = _TABLES.get(id(wheelhouse))
    if hit is not None and hit.wheelhouse is wheelhouse:
        return hit
    by_name: dict[str, Installed] = {}
    for w in wheelhouse.third_party:
        by_name[w.name] = Installed(w.name, w.version, w.filename, w.sha256, w.path)
    for h in wheelhouse.helpers:
        name = str(canonicalize_name(h.distribution))
        by_name[name] = Installed(name, h.version, h.filename, h.sha256, h.path)
    provides = tuple(
        (w.name, frozenset(facts.metadata(w).packages if facts else import_packages(w.path)))
        for w in wheelhouse.third_party
    )
    if len(_TABLES) >= 32:  # a process reads a few wheelhouses (one per platform)
        _TABLES.clear()
    made = _TABLES[id(wheelhouse)] = _Tables(wheelhouse, by_name, provides)
    return made


def closure(
    workspace: Workspace,
    component: Component,
    wheelhouse: Wheelhouse,
    python: str,
    *,
    machine: str,
    facts: WheelFacts | None = None,
) -> tuple[Installed, ...]:
    """Every distribution ``component``'s pod installs on a ``machine`` node ("x86_64"),
    sorted by name: its helpers and their siblings, the locked wheels (``wheelhouse``:
    that machine's) that provide its other imports, what all of those require from the
    lock (transitively), and kfp. ``facts``: where the wheels' metadata is read from
    (else from each wheel's zip, once per process)."""
    tables = _tables(wheelhouse, facts)
    by_name = tables.by_name
    todo = [str(canonicalize_name(workspace.helper(h).distribution)) for h in component.helpers]
    todo.append("kfp")  # installed --no-deps: its own requirements are not followed
    direct = set(component.imports)
    for name, imports in tables.provides:  # a third-party module the function imports itself
        if direct & imports:
            todo.append(name)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in by_name:
            dists = {str(canonicalize_name(h.distribution)): h.name for h in workspace.helpers}
            what = f"helper {dists[name]}" if name in dists else name
            raise ConfigError(
                f"{component.path}: {component.name} needs {what}, which packages mode's lock "
                f"(pipelines/requirements.lock) does not hold: run `kiln lock packages`"
            )
        if name != "kfp":
            wheel = by_name[name]
            if facts is not None:
                todo.extend(facts.requires(wheel, python, machine))
            else:
                todo.extend(_requires(wheel.path, python, machine))
    built = [w for w in wheelhouse.third_party if w.built and w.name in seen]
    if built:
        raise ConfigError(
            f"{component.path}: {component.name} needs {built[0].name}, which has no wheel on "
            "the index (kiln builds it from its sdist, for images only); use image mode for "
            "this component (IMAGE = ...)"
        )
    return tuple(by_name[n] for n in sorted(seen))


def import_names(wheels: Iterable[Path]) -> frozenset[str]:
    """The top-level modules ``wheels`` install (what ``check_imports`` is given)."""
    return frozenset(p for wheel in wheels for p in import_packages(wheel))


def check_imports(component: Component, names: Collection[str], *, where: str) -> None:
    """Every module ``component`` imports comes from the standard library, kfp, or one of
    ``names`` (``import_names`` of the wheels it gets); else an error naming the import."""
    missing = [
        i
        for i in component.imports
        if i not in names and i not in ALWAYS and i not in sys.stdlib_module_names
    ]
    if missing:
        raise ConfigError(
            f"{component.path}: {component.name} imports {', '.join(missing)}, which nothing "
            f"in {where} provides: add the distribution to a helper's dependencies (or the "
            "image's `requirements`), then `kiln lock`"
        )


def install_items(
    closures: Mapping[str, Sequence[Installed]],
    *,
    index_url: str,
    file_url: str = DEFAULT_FILE_URL,
) -> list[str]:
    """``packages_to_install``: pip flags, then hash-pinned URL items, by name.
    ``closures``: each platform's closure, by its ``platform_machine`` ("x86_64").

    A distribution that is the same file in every closure is one item; else one item per
    closure that holds it, gated by ``platform_machine``: pip skips an item whose marker
    is false, so each node installs its own machine's files and nothing else."""
    index = index_url.rstrip("/")
    items = ["--no-deps", "--require-hashes"]
    files: dict[str, dict[str, Installed]] = {}
    for machine, installed in closures.items():
        for dist in installed:
            files.setdefault(dist.name, {})[machine] = dist
    for name in sorted(files):
        by_machine = files[name]
        same = {(d.filename, d.sha256) for d in by_machine.values()}
        if len(by_machine) == len(closures) and len(same) == 1:
            items.append(_item(next(iter(by_machine.values())), index, file_url))
            continue
        for machine, dist in by_machine.items():
            items.append(f'{_item(dist, index, file_url)} ; platform_machine == "{machine}"')
    return items


def _item(dist: Installed, index: str, file_url: str) -> str:
    url = file_url.format(index=index, filename=dist.filename)
    return f"{dist.name} @ {url}#sha256={dist.sha256}"


def pip_options(index_url: str) -> Mapping[str, list[str]]:
    """``pip_index_urls`` and ``pip_trusted_hosts`` for ``dsl.component``: the private index
    as the only index; ``host:port`` trusted only for a plain-HTTP loopback index (KFP
    would otherwise pass the full URL, which pip rejects when it has a port)."""
    parts = urlsplit(index_url)
    trusted = []
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost"):
        trusted = [parts.netloc]
    return {"pip_index_urls": [index_url.rstrip("/") + "/simple/"], "pip_trusted_hosts": trusted}
