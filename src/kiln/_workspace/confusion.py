"""Dependency confusion: a name that could come from the wrong index, refused.

Helpers are published as ``<org>-<folder>`` to the private index; everything else comes
from the upstream index, where anyone can publish any free name. So a requirement in the
organisation's namespace that no helper folder publishes (a typo, a deleted helper, a
hostile pull request), and a lock pinning such a name, would install whatever the
upstream index holds under it. A helper shipping an import package named like a
third-party project the workspace installs (``numpy``) would overwrite it, or be
overwritten, in an image. A direct reference (``name @ https://...``) would be fetched
from wherever it points, past both indexes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kiln._errors import ConfigError
from kiln._workspace.model import Helper, Image

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.MULTILINE)


def _requirements(
    helpers: Sequence[Helper], images: Sequence[Image]
) -> Iterator[tuple[str, Path, str]]:
    """(requirement, file, setting) for every requirement a helper or an image names."""
    for helper in helpers:
        for raw in helper.dependencies:
            yield raw, helper.path / "pyproject.toml", "[project] dependencies"
    for image in images:
        for raw in image.requirements:
            yield raw, image.path / "image.toml", "requirements"


def _locked(root: Path, images: Sequence[Image]) -> Iterator[tuple[str, Path, int]]:
    """(name, lock, line) for every pin of the workspace's locks."""
    locks = [i.path / "requirements.lock" for i in images]
    for lock in [*locks, root / "pipelines" / "requirements.lock"]:
        if not lock.is_file():
            continue
        text = lock.read_text(encoding="utf-8", errors="replace")
        for match in _PIN.finditer(text):
            yield match.group(1), lock, text.count("\n", 0, match.start()) + 1


def _image_of(root: Path, lock: Path) -> str:
    """The name `kiln lock` takes for ``lock``: its image, or packages mode's."""
    return "packages" if lock.parent == root / "pipelines" else lock.parent.name


def check_confusion(
    root: Path, org: str, helpers: Sequence[Helper], images: Sequence[Image], upstream: str
) -> None:
    """Refuse names that could be taken from the wrong index (see the module)."""
    ours = {canonicalize_name(h.distribution) for h in helpers}
    namespace = f"{org}-"
    third_party: dict[str, str] = {}
    for raw, path, setting in _requirements(helpers, images):
        requirement = Requirement(raw)
        if requirement.url is not None:
            raise ConfigError(
                f"{path}: {setting} names {raw!r}, a direct reference: it would be "
                "fetched from that address, past the index and the lock's hashes; name the "
                f"project alone (e.g. {requirement.name!r}) so it comes from {upstream}"
            )
        name = canonicalize_name(requirement.name)
        if name.startswith(namespace) and name not in ours:
            raise ConfigError(
                f"{path}: {setting} names {raw!r}, in this organisation's namespace "
                f"({namespace}*), but no folder under helpers/ publishes {name}: it would be "
                f"fetched from the upstream index {upstream}, where anyone can publish that "
                "name (dependency confusion); fix the name, or add the helper"
            )
        if name not in ours:
            third_party.setdefault(name, f"{path} {setting}")
    for pinned, lock, line in _locked(root, images):
        canonical = canonicalize_name(pinned)
        if canonical.startswith(namespace) or canonical in ours:
            raise ConfigError(
                f"{lock}:{line}: pins {pinned}, a name in this organisation's namespace "
                f"({namespace}*): helpers come from helpers/, never from a lock, and the "
                f"upstream index {upstream} may hold anyone's {pinned}; rewrite the lock with "
                f"`kiln lock {shlex.quote(_image_of(root, lock))}`"
            )
        third_party.setdefault(canonical, str(lock))
    for helper in helpers:
        for package in helper.packages:
            clash = third_party.get(canonicalize_name(package))
            if clash is not None:
                raise ConfigError(
                    f"{helper.path / 'pyproject.toml'}: helper {helper.name} ships the import "
                    f"package {package!r}, named like the third-party project "
                    f"{canonicalize_name(package)} ({clash}): in an image one would overwrite "
                    f"the other; rename the package (e.g. {org}_{package})"
                )
