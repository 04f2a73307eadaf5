"""``kiln lock`` as library calls: ``lock`` writes the OS lock (when stale, or moving
it) and the image locks; ``check`` says which are stale, writing nothing; ``relock``
writes the locks of given images (a bump needs that too).

Each takes the workspace, typed arguments and the tools it needs (``LockTools``,
``OsSources``), reports progress to a ``Reporter``, and returns what it found or wrote
as data (``Fresh``, ``LockResult``, ``Written``), which the CLI prints as text or JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln._debian.archive import Indexes, Mirrors
from kiln._debian.lock import OS_LOCK, OsLock, parse_os_lock, render
from kiln._errors import ConfigError, ServiceUnavailable
from kiln._images.os_layers import OsLayers, unavailable
from kiln._lock.format import BasePin, lock_path, read_lock
from kiln._lock.inputs import OS_BASE, check_fresh
from kiln._lock.make import Uv, make_lock
from kiln._lock.sources import Pages, SdistBuilds
from kiln._locking.bases import BasePinner
from kiln._locking.debian import changes, fresh_os_lock, lock_os, moved_images, stale_reason
from kiln._report import Reporter
from kiln._util.files import write_text_atomic
from kiln._workspace.model import Image, Workspace


# ------------------------------------------------------------------ results
@dataclass(frozen=True)
class Written:
    """A lock file: written anew (``written``), or already what it would be."""

    path: Path
    written: bool

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "written": self.written}

    @property
    def line(self) -> str:
        return f"{self.path}: {'written' if self.written else 'unchanged'}"


@dataclass(frozen=True)
class OsWritten(Written):
    """images/os.lock, with every package version that moved and the images whose OS
    layers moved (a version of them already pushed must be bumped)."""

    changes: tuple[str, ...] = ()
    images: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "changes": list(self.changes), "images": list(self.images)}


@dataclass(frozen=True)
class LockResult:
    os: OsWritten | None  # None: no image is on kiln's OS base
    images: Mapping[str, Written]  # image name -> its lock, in the order written

    def to_dict(self) -> dict[str, dict[str, Any]]:
        rows = {"os": self.os.to_dict()} if self.os is not None else {}
        return rows | {name: row.to_dict() for name, row in self.images.items()}

    @property
    def text(self) -> str:
        rows = [*([self.os] if self.os is not None else []), *self.images.values()]
        moved = self.os.changes if self.os is not None else ()
        return "\n".join([*(r.line for r in rows), *(f"  {line}" for line in moved)])


@dataclass(frozen=True)
class Fresh:
    """What ``check`` found fresh: the locks of ``images``, and the OS lock (``os``)."""

    images: tuple[str, ...]
    os: bool

    def to_dict(self) -> dict[str, str]:
        return dict.fromkeys(self.images, "fresh") | ({"os": "fresh"} if self.os else {})

    @property
    def text(self) -> str:
        return f"{len(self.images) + (1 if self.os else 0)} lock(s) up to date"


# ------------------------------------------------------------------ tools
@dataclass(frozen=True)
class OsSources:
    """Where the OS lock's .debs come from: the Debian mirrors and kiln's .deb cache."""

    mirrors: Mirrors
    cache: Path


@dataclass(frozen=True)
class LockTools:
    """What writing locks asks: uv, the upstream index's pages, the sdist builder and the
    base pinner (image locks); the suites' indexes and the OS layers (the OS lock)."""

    uv: Uv
    pages: Pages
    sdists: SdistBuilds
    bases: BasePinner
    indexes: Indexes
    layers: OsLayers


# ------------------------------------------------------------------ the flows
def select_images(ws: Workspace, names: Sequence[str]) -> list[Image]:
    """The images named (all of them when none is), sorted; an unknown name is an error."""
    known = {i.name: i for i in ws.locked}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(
            f"no image {', '.join(unknown)} under images/ (known: {', '.join(known) or 'none'})"
        )
    return [known[n] for n in sorted(set(names))] or list(ws.locked)


def is_fresh(ws: Workspace, image: Image, kfp: str) -> bool:
    """``image``'s lock is there and was made from what it would be made from now."""
    try:
        check_fresh(read_lock(image), ws, image, kfp)
    except ConfigError:
        return False
    return True


def check(
    ws: Workspace,
    images: Sequence[Image],
    *,
    kfp: str,
    sources: OsSources | None = None,
    report: Reporter | None = None,
) -> Fresh:
    """Each of ``images``' locks and the OS lock, when all are fresh; a ConfigError naming
    every stale lock otherwise. ``sources``: also require each .deb the OS lock pins to be in
    kiln's cache or on a mirror (else ServiceUnavailable)."""
    stale = []
    if ws.on_os:
        try:
            os_lock = fresh_os_lock(ws)
        except ConfigError as exc:
            stale.append(str(exc))
        else:
            if sources is not None:
                check_sources(os_lock, sources, report or Reporter.null())
    for image in images:
        try:
            check_fresh(read_lock(image), ws, image, kfp)
        except ConfigError as exc:
            stale.append(str(exc))
    if stale:
        raise ConfigError("\n".join(stale))
    return Fresh(tuple(i.name for i in images), os=bool(ws.on_os))


def check_sources(lock: OsLock, sources: OsSources, report: Reporter) -> None:
    """Every .deb ``lock`` pins is in kiln's cache or on a mirror, else ServiceUnavailable
    naming the packages gone and the fix."""
    pins = lock.packages()
    report.stage("os", f"OS lock: is each of its {len(pins)} packages still served?")
    gone = unavailable(pins, sources.mirrors, sources.cache)
    if gone:
        names = ", ".join(f"{p.name} {p.version}" for p in gone)
        raise ServiceUnavailable(
            f"{lock.path}: no mirror serves {names} any more, and kiln's cache lacks them "
            "(Debian drops superseded versions); a registry holding the OS layer still "
            "builds it (kiln release takes it from there), else move the lock: "
            "`kiln lock --upgrade-os`, then commit images/os.lock"
        )


def lock(
    ws: Workspace,
    images: Sequence[Image],
    *,
    kfp: str,
    tools: LockTools,
    report: Reporter,
    upgrade: Sequence[str] = (),
    upgrade_os: bool = False,
    all_images: bool = True,
) -> LockResult:
    """Write the OS lock (when stale, or ``upgrade_os``) and the lock of each of
    ``images``, keeping their versions unless ``upgrade`` names them ("" upgrades all).
    ``all_images``: none was named, so moving the OS alone writes only the stale ones."""
    os_row = write_os_lock(ws, tools, report, upgrade=upgrade_os) if ws.on_os else None
    if upgrade_os and all_images and not upgrade:
        # Moving the OS moves no wheel: only image locks that are stale are written
        # (which needs no upstream index when none is).
        images = [i for i in images if not is_fresh(ws, i, kfp)]
    rows = relock(ws, images, kfp=kfp, tools=tools, report=report, upgrade=upgrade)
    return LockResult(os=os_row, images=rows)


def write_os_lock(ws: Workspace, tools: LockTools, report: Reporter, *, upgrade: bool) -> OsWritten:
    """Write images/os.lock when it is stale or ``upgrade``; what moved."""
    path = ws.root / OS_LOCK
    previous = None
    if path.is_file():
        try:
            previous = parse_os_lock(path, path.read_text(encoding="utf-8"))
        except ConfigError as exc:
            report.step(f"{path}: unreadable, written anew ({exc})")
    if previous is not None and not upgrade and stale_reason(previous, ws) is None:
        report.stage("os", f"OS lock {OS_LOCK}: up to date")
        return OsWritten(path, written=False)
    how = "moving every package to the newest version" if upgrade else "resolving"
    report.stage(
        "os", f"OS lock {OS_LOCK}: {how} ({ws.os.suite}, {', '.join(ws.os.architectures)})"
    )
    new = lock_os(
        ws, indexes=tools.indexes, layers=tools.layers, previous=previous, upgrade=upgrade,
        log=report.detail,
    )  # fmt: skip
    text = render(new)
    same = path.is_file() and path.read_text(encoding="utf-8") == text
    if not same:
        write_text_atomic(path, text)
    moved = tuple(c.line for c in changes(previous, new))
    for line in moved:
        report.detail(f"    {line}")
    images = tuple(moved_images(previous, new, ws)) if not same else ()
    if images:
        report.step(
            f"the OS layers of {', '.join(images)} moved: a version of them already pushed "
            f"must be bumped before the next release (kiln bump NAME patch; kiln check says which)"
        )
    return OsWritten(path, written=not same, changes=moved, images=images)


def relock(
    ws: Workspace,
    images: Sequence[Image],
    *,
    kfp: str,
    tools: LockTools,
    report: Reporter,
    upgrade: Sequence[str] = (),
) -> dict[str, Written]:
    """Write the lock of each of ``images``; name -> its file (unchanged or written)."""
    bases: dict[str, BasePin] = {}
    rows: dict[str, Written] = {}
    for image in images:
        if image.base is None:
            base = BasePin(OS_BASE, "os", "images/os.lock")
        else:
            if image.base not in bases:
                bases[image.base], how = tools.bases.pin(image.base, ws.settings_of(image))
                report.stage("base", f"base {image.base}: {how}")
            base = bases[image.base]
        report.stage("lock", f"lock {image.name}: uv pip compile for Python {image.python} on "
                    f"{' and '.join(image.python_platforms)}")  # fmt: skip
        text = make_lock(
            ws, image, kfp_version=kfp, uv=tools.uv, base=base, pages=tools.pages,
            sdists=tools.sdists, upgrade=upgrade,
        )  # fmt: skip
        path = lock_path(image)
        same = path.is_file() and path.read_text(encoding="utf-8") == text
        if not same:
            write_text_atomic(path, text)
        rows[image.name] = Written(path, written=not same)
    return rows
