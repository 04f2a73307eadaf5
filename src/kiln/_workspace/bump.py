"""``kiln bump``: raise one version and every version that must follow it.

Planning is pure: ``plan_bump`` reads a ``Workspace`` and returns a frozen
``BumpPlan``, one ``FileChange`` per file. A bumped helper moves the exact pin
of every helper that pins it, and each of those gets a patch bump of its own,
transitively; every image whose helpers, with the siblings they pin
(``helper_closure``), include a changed helper gets one patch bump. Bumping an
image changes only that image. The cascade (``cascade``, ``helper_change``,
``containing``) is the dev channel's too (``kiln._release.dev.dev_plan``).

``render_bump`` edits each file's text with tomlkit (comments and layout kept)
and checks the result; ``apply_bump`` renders every file before it writes any,
then replaces each atomically. ``BumpPlan.images_to_relock`` names the images
whose version moved, for whatever regenerates per-image state (lock files).
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomlkit
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from tomlkit.exceptions import ParseError
from tomlkit.items import Array, String

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from kiln._errors import ConfigError
from kiln._workspace.discovery import check_no_sibling_cycle
from kiln._workspace.model import Helper, Image, Workspace, helper_closure

Kind = Literal["helper", "image"]
LEVELS = ("major", "minor", "patch")


# --------------------------------------------------------------------- versions
def next_version(current: str, level: str) -> str:
    """``current`` raised by ``level`` on its release segment (padded to X.Y.Z); the epoch
    is kept, pre-, post-, dev- and local segments are dropped: 0.2.0rc1 -> patch 0.2.1."""
    version = Version(current)
    major, minor, patch = (*version.release, 0, 0)[:3]
    if level == "major":
        major, minor, patch = major + 1, 0, 0
    elif level == "minor":
        minor, patch = minor + 1, 0
    elif level == "patch":
        patch += 1
    else:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    epoch = f"{version.epoch}!" if version.epoch else ""
    return f"{epoch}{major}.{minor}.{patch}"


def resolve_version(current: str, asked: str, path: str) -> str:
    """The version ``asked`` for (a level or an explicit version) given ``current``; an
    explicit one must be valid PEP 440 and strictly greater."""
    if asked in LEVELS:
        return next_version(current, asked)
    try:
        explicit = Version(asked)
    except InvalidVersion:
        raise ConfigError(
            f"{asked!r} is neither a level ({', '.join(LEVELS)}) nor a PEP 440 version; "
            f"give e.g. `patch` or `{next_version(current, 'minor')}`"
        ) from None
    if explicit <= Version(current):
        raise ConfigError(
            f"{path}: version {asked} is not greater than the current {current}: a version "
            f"only moves forward; give one above {current} (patch gives "
            f"{next_version(current, 'patch')})"
        )
    return str(explicit)


# --------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class PinChange:
    """An exact sibling pin to rewrite: ``acme-a==old`` becomes ``acme-a==new``."""

    distribution: str
    old_version: str
    new_version: str


@dataclass(frozen=True)
class FileChange:
    """One file whose version moves, and why."""

    path: str  # relative to the workspace root, POSIX
    kind: Kind
    name: str  # folder name
    distribution: str | None  # helpers only
    old_version: str
    new_version: str
    why: str  # "bumped", "pins acme-imgproc, now ==0.2.1", "contains imgproc"
    pins: tuple[PinChange, ...] = ()

    @property
    def line(self) -> str:
        """``helpers/viz/pyproject.toml: acme-viz 0.1.1 -> 0.1.2 (pins ...)``."""
        label = self.distribution or self.name
        return f"{self.path}: {label} {self.old_version} -> {self.new_version} ({self.why})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "name": self.name,
            "distribution": self.distribution,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "why": self.why,
            "pins": [p.__dict__ for p in self.pins],
        }


@dataclass(frozen=True)
class BumpPlan:
    root: Path
    changes: tuple[FileChange, ...]

    @property
    def images_to_relock(self) -> tuple[str, ...]:
        """The images whose version this plan moves: per-image state derived from an
        image's version (a committed lock) must be regenerated for each."""
        return tuple(c.name for c in self.changes if c.kind == "image")

    def to_dict(self) -> dict[str, Any]:
        return {
            "changes": [c.to_dict() for c in self.changes],
            "images_to_relock": list(self.images_to_relock),
        }


def _rel(ws: Workspace, path: Path) -> str:
    return path.relative_to(ws.root).as_posix()


def _target(ws: Workspace, name: str, kind: Kind | None) -> Helper | Image:
    helper = next((h for h in ws.helpers if h.name == name), None)
    image = next((i for i in ws.images if i.name == name), None)
    if kind is None and helper is not None and image is not None:
        raise ConfigError(
            f"{name!r} is both a helper ({_rel(ws, helper.path / 'pyproject.toml')}) and an "
            f"image ({_rel(ws, image.path / 'image.toml')}); say which with --helper or --image"
        )
    if kind == "helper" or (kind is None and helper is not None):
        if helper is None:
            known = ", ".join(h.name for h in ws.helpers) or "none"
            raise ConfigError(f"no helper {name!r} under helpers/ (helpers: {known})")
        return helper
    if kind == "image" or (kind is None and image is not None):
        if image is None:
            known = ", ".join(i.name for i in ws.images) or "none"
            raise ConfigError(f"no image {name!r} under images/ (images: {known})")
        return image
    helpers = ", ".join(h.name for h in ws.helpers) or "none"
    images = ", ".join(i.name for i in ws.images) or "none"
    raise ConfigError(
        f"no helper or image named {name!r} (helpers: {helpers}; images: {images}); "
        "give a folder name under helpers/ or images/"
    )


def image_change(ws: Workspace, image: Image, new: str, why: str) -> FileChange:
    return FileChange(
        path=_rel(ws, image.path / "image.toml"),
        kind="image",
        name=image.name,
        distribution=None,
        old_version=image.version,
        new_version=new,
        why=why,
    )


def cascade(ws: Workspace, changed: Iterable[str]) -> set[str]:
    """``changed`` and every helper that pins one of them, transitively: the helpers whose
    version must move with them (each one's pin of a moving sibling moves)."""
    seen: set[str] = set()
    todo = list(changed)
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(h.name for h in ws.helpers if current in h.siblings)
    return seen


def helper_change(
    ws: Workspace, name: str, versions: Mapping[str, str], *, why: str | None = None
) -> FileChange:
    """Helper ``name`` moving to ``versions[name]``, with its pin of every sibling in
    ``versions`` moved too; ``why`` (default: the pins it moves, else "bumped")."""
    helper = ws.helper(name)
    moved = [ws.helper(s) for s in helper.siblings if s in versions]
    pins = tuple(PinChange(s.distribution, s.version, versions[s.name]) for s in moved)
    pinned = "; ".join(f"pins {p.distribution}, now =={p.new_version}" for p in pins)
    return FileChange(
        path=_rel(ws, helper.path / "pyproject.toml"),
        kind="helper",
        name=name,
        distribution=helper.distribution,
        old_version=helper.version,
        new_version=versions[name],
        why=why or pinned or "bumped",
        pins=pins,
    )


def containing(ws: Workspace, moving: set[str]) -> tuple[tuple[Image, tuple[str, ...]], ...]:
    """Each image whose helpers, with the siblings they pin, include one of ``moving``,
    with those helpers, sorted: the images that move with them."""
    found = []
    for image in ws.images:
        contained = tuple(sorted(moving.intersection(helper_closure(ws, image.helpers))))
        if contained:
            found.append((image, contained))
    return tuple(found)


def _depths(ws: Workspace, changed: set[str]) -> dict[str, int]:
    """Each changed helper's place in the cascade: after every changed sibling it pins."""
    depths: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in depths:
            pinned = [s for s in ws.helper(name).siblings if s in changed]
            depths[name] = 1 + max((depth(s) for s in pinned), default=-1)
        return depths[name]

    for name in changed:
        depth(name)
    return depths


def plan_bump(ws: Workspace, name: str, level: str, *, kind: Kind | None = None) -> BumpPlan:
    """Every file ``kiln bump NAME LEVEL`` changes, in cascade order, images last."""
    target = _target(ws, name, kind)
    if isinstance(target, Image):
        path = _rel(ws, target.path / "image.toml")
        new = resolve_version(target.version, level, path)
        return BumpPlan(root=ws.root, changes=(image_change(ws, target, new, "bumped"),))

    check_no_sibling_cycle(ws.helpers)  # a cascade round a cycle would never settle
    path = _rel(ws, target.path / "pyproject.toml")
    changed = cascade(ws, [target.name])
    new_versions = {
        n: resolve_version(target.version, level, path)
        if n == target.name
        else next_version(ws.helper(n).version, "patch")
        for n in changed
    }
    depths = _depths(ws, changed)
    helper_changes = [
        helper_change(ws, n, new_versions) for n in sorted(changed, key=lambda n: (depths[n], n))
    ]
    image_changes = [
        image_change(ws, image, next_version(image.version, "patch"), f"contains {', '.join(c)}")
        for image, c in containing(ws, changed)
    ]
    return BumpPlan(root=ws.root, changes=(*helper_changes, *image_changes))


# --------------------------------------------------------------------- applying
@dataclass(frozen=True)
class RenderedFile:
    path: Path
    text: str


def _like(old: object, value: str) -> String:
    """``value`` as a TOML string quoted the way ``old`` was (basic or literal)."""
    literal = isinstance(old, String) and old.type.is_literal()
    return tomlkit.string(value, literal=literal)


def _repin(raw: str, pin: PinChange, where: str) -> str:
    """``raw`` (as written in the file) with its ``==old`` pin moved to ``==new``;
    name, extras, spacing and markers stay as they were."""
    head, sep, marker = raw.partition(";")
    new_head, count = re.subn(
        rf"(?<![=!<>~])(==\s*){re.escape(pin.old_version)}(?![\w.!+-])",
        lambda m: m.group(1) + pin.new_version,
        head,
    )
    new_raw = new_head + sep + marker
    before = Requirement(raw)
    try:
        after = Requirement(new_raw) if count == 1 else None
    except InvalidRequirement:
        after = None
    if after is None or (after.name, after.extras, after.marker, str(after.specifier)) != (
        before.name,
        before.extras,
        before.marker,
        f"=={pin.new_version}",
    ):
        raise ConfigError(
            f"{where}: cannot rewrite the dependency {raw!r} to pin {pin.new_version}; "
            f'set it by hand to "{pin.distribution}=={pin.new_version}"'
        )
    return new_raw


def _rewrite_pins(deps: object, pins: Sequence[PinChange], where: str) -> None:
    if not isinstance(deps, Array):
        raise ConfigError(f"{where}: [project] dependencies must be a list of strings")
    for pin in pins:
        found = 0
        for i, item in enumerate(deps):
            try:
                name = Requirement(str(item)).name
            except InvalidRequirement:
                continue  # not ours to judge here: discovery reports it
            if canonicalize_name(name) == canonicalize_name(pin.distribution):
                deps[i] = _like(item, _repin(str(item), pin, where))
                found += 1
        if not found:
            raise ConfigError(
                f"{where}: no dependency on {pin.distribution} to move to {pin.new_version}; "
                "the file changed since kiln read it: run kiln bump again"
            )


def _render(root: Path, change: FileChange) -> RenderedFile:
    path, where = root / change.path, change.path
    text = path.read_bytes().decode("utf-8")  # bytes: line endings stay as they are
    try:
        doc = tomlkit.parse(text)
    except ParseError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc}); fix the syntax") from None
    table: Any = doc.get("project") if change.kind == "helper" else doc.get("image", doc)
    current = table.get("version") if table is not None else None
    if current is None or str(current) != change.old_version:
        raise ConfigError(
            f"{where}: version is {current!r}, expected {change.old_version}: the file "
            "changed since kiln read it; run kiln bump again"
        )
    table["version"] = _like(current, change.new_version)
    if change.pins:
        _rewrite_pins(table.get("dependencies"), change.pins, where)
    rendered = tomlkit.dumps(doc)
    check = tomllib.loads(rendered)
    check_table = check["project"] if change.kind == "helper" else check.get("image", check)
    if check_table.get("version") != change.new_version:  # pragma: no cover - tomlkit bug
        raise ConfigError(f"{where}: rewriting the version failed; set {change.new_version}")
    return RenderedFile(path=path, text=rendered)


def render_bump(plan: BumpPlan) -> tuple[RenderedFile, ...]:
    """Every file's new text; checks every edit, writes nothing."""
    return tuple(_render(plan.root, c) for c in plan.changes)


def write_files(files: Sequence[RenderedFile]) -> None:
    """Write every file through a temporary file beside it, then move each into place:
    a failure before the moves leaves every file as it was."""
    staged: list[tuple[str, Path]] = []
    try:
        for f in files:
            fd, tmp = tempfile.mkstemp(dir=f.path.parent, prefix=f".{f.path.name}.", suffix=".tmp")
            staged.append((tmp, f.path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(f.text.encode("utf-8"))
            Path(tmp).chmod(stat.S_IMODE(f.path.stat().st_mode))
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        Path(tmp).replace(path)


def apply_bump(plan: BumpPlan) -> tuple[Path, ...]:
    """Render every change, then write them all; returns the files written."""
    files = render_bump(plan)
    write_files(files)
    return tuple(f.path for f in files)
