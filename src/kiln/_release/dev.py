"""The dev channel: in-progress helper code through the same path, never touching stable.

`kiln release --dev` gives each helper whose wheel is not on the index (changed
since its version was published, or not published yet) the version
``X.Y.Z.devN``, and every helper that pins one of them too (its pin moves). ``N``
is the commit time (UTC, ``YYYYMMDDHHMMSS``) of a clean tree, so running it again
for the same commit publishes nothing new, or the current time for uncommitted
work: unique, increasing, index-legal, no ``+local``. ``X.Y.Z`` is the helper's
version when that is not published yet (``0.3.0.dev...`` sorts before the coming
0.3.0), else its next patch. pip never picks a dev version unless asked
(``--pre`` or an exact ``==...devN``).

Images that contain a dev helper are built and pushed as ``dev-<short sha>``
(``dev-<short sha>-<N>`` from an uncommitted tree); the others stay as they are.
Everything is done on a copy of the repository in a temporary folder (kiln's caches
and the local stack shared), so no committed file changes.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kiln._util.git import git_text
from kiln._workspace.bump import (
    BumpPlan,
    cascade,
    containing,
    helper_change,
    image_change,
    next_version,
)
from kiln._workspace.model import Workspace

# What the copy holds: everything discovery and the release read.
_COPIED = ("helpers", "images", "pipelines")


@dataclass(frozen=True)
class DevStamp:
    number: int  # N in X.Y.Z.devN
    sha: str  # short commit id
    dirty: bool  # uncommitted changes

    @property
    def image_tag(self) -> str:
        return f"dev-{self.sha}-{self.number}" if self.dirty else f"dev-{self.sha}"


def dev_stamp(root: Path, now: float | None = None) -> DevStamp:
    """N from the commit time of a clean tree, else from ``now``; outside git, ``now``."""
    sha = git_text(root, "rev-parse", "--short=12", "HEAD") or "nogit"
    dirty = (
        bool(git_text(root, "status", "--porcelain", "--untracked-files=normal")) or sha == "nogit"
    )
    moment = time.time() if now is None else now
    if not dirty:
        moment = float(git_text(root, "log", "-1", "--format=%ct") or moment)
    number = int(time.strftime("%Y%m%d%H%M%S", time.gmtime(moment)))
    return DevStamp(number, sha, dirty)


def dev_plan(
    ws: Workspace, changed: set[str], published: Mapping[str, set[str]], number: int
) -> BumpPlan:
    """The version edits of a dev release: each changed helper and every helper that pins
    one (transitively) to ``X.Y.Z.devN``, and each image containing one of them.
    ``published``: helper folder name -> the versions the index has of it."""
    moving = cascade(ws, changed)
    versions = {}
    for name in moving:
        base = ws.helper(name).version
        if base in published.get(name, set()):
            base = next_version(base, "patch")
        versions[name] = f"{base}.dev{number}"
    changes = [helper_change(ws, name, versions, why="dev") for name in sorted(moving)]
    changes += [
        image_change(ws, image, f"{image.version}.dev{number}", "contains a dev helper")
        for image, _ in containing(ws, moving)
    ]
    return BumpPlan(root=ws.root, changes=tuple(changes))


def copy_tree(ws: Workspace, target: Path) -> Path:
    """A copy of what a release reads, at ``target``, sharing kiln's caches and local stack.

    The repository's ignore file and an empty ``.git`` folder are copied too, so hatchling
    reads the same ignore rules and an unchanged helper's wheel comes from the cache."""
    for name in _COPIED:
        if (ws.root / name).is_dir():
            shutil.copytree(
                ws.root / name, target / name, symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info"),
            )  # fmt: skip
    shutil.copy2(ws.root / "pyproject.toml", target / "pyproject.toml")
    if (ws.root / ".gitignore").is_file():
        shutil.copy2(ws.root / ".gitignore", target / ".gitignore")
        (target / ".git").mkdir(exist_ok=True)
    state = target / ".kiln"
    state.mkdir(exist_ok=True)
    for shared in ("cache", "stack", "wheelhouse"):
        (ws.state_dir / shared).mkdir(parents=True, exist_ok=True)
        (state / shared).symlink_to(ws.state_dir / shared)
    return target
