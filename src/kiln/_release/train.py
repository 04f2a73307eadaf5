"""The release train: `kiln release --tag vX.Y.Z` for a pushed tag.

Before anything is published the tagged tree must be exactly what is released: the
working tree clean, the tag on HEAD, the tag a PEP 440 version above the last
released one (the same version again is a re-run, and a no-op when nothing
changed), and the committed locks and component YAMLs fresh. The release notes
compare the tagged commit with the previous release tag, from git alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.utils import parse_wheel_filename
from packaging.version import InvalidVersion, Version

from kiln._components.catalog import SAFE_LOADER
from kiln._errors import ConfigError, PublishedConflict
from kiln._util.git import git_checked, git_output

TAG_PREFIX = "v"


def tag_version(tag: str) -> Version:
    """``v1.2.0`` -> 1.2.0; a ConfigError when the tag is no PEP 440 release version."""
    try:
        version = Version(tag.removeprefix(TAG_PREFIX))
    except InvalidVersion:
        raise ConfigError(
            f"tag {tag!r} is not a PEP 440 version: tag releases as vX.Y.Z, e.g. v0.3.0"
        ) from None
    if not tag.startswith(TAG_PREFIX) or version.is_devrelease or version.local:
        raise ConfigError(
            f"tag {tag!r}: a release tag is v<version> with no .dev or +local part, e.g. "
            "v0.3.0 (dev versions come from `kiln release --dev`)"
        )
    return version


def check_tree(root: Path, tag: str) -> str:
    """The commit ``tag`` names, after checking it is HEAD and the tree is clean."""
    dirty = git_checked(root, "status", "--porcelain", "--untracked-files=normal").splitlines()
    if dirty:
        shown = "\n".join(f"  {line}" for line in dirty[:10])
        raise ConfigError(
            f"{root}: the working tree has changes, so it is not what {tag} names:\n{shown}\n"
            "commit or stash them, then tag again"
        )
    tagged = (
        git_output(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}") or ""
    ).strip()
    if not tagged:
        raise ConfigError(f"no tag {tag} in {root}: create it with `git tag {tag}` on HEAD")
    head = git_checked(root, "rev-parse", "HEAD").strip()
    if tagged != head:
        raise ConfigError(
            f"tag {tag} points at {tagged[:12]}, not HEAD ({head[:12]}): check out "
            f"the tag (`git checkout {tag}`) and run the release there"
        )
    return head


def released_versions(files: Iterable[str]) -> list[Version]:
    """The versions of the components bundle on the index (its wheel filenames)."""
    found = set()
    for name in files:
        if name.endswith(".whl"):
            found.add(parse_wheel_filename(name)[1])
    return sorted(found)


def check_train(version: Version, released: Sequence[Version], bundle: str) -> bool:
    """True when ``version`` is already released (a re-run); a PublishedConflict when it is
    below the last stable release. Dev versions on the index do not count."""
    stable = [v for v in released if not v.is_devrelease]
    if version in stable:
        return True
    if stable and version < stable[-1]:
        raise PublishedConflict(
            f"release {version} is below the last released version {stable[-1]} of {bundle}: "
            f"tag a version above it (e.g. v{_next(stable[-1])})"
        )
    return False


def check_history(version: Version, released: Sequence[Version], previous: str | None) -> None:
    """The release notes compare the tagged commit with the previous release tag: a
    ConfigError when the index holds a stable release below ``version`` but this checkout
    has no release tag below it (a clone of the tag alone, e.g. actions/checkout's
    default), whose notes would call this the first release."""
    below = [v for v in released if not v.is_devrelease and v < version]
    if below and previous is None:
        raise ConfigError(
            f"release {below[-1]} is on the index, but this checkout has no release tag below "
            f"{TAG_PREFIX}{version} (a clone of the tag alone?), so the release notes cannot say "
            "what changed since it: fetch the history and the tags (`git fetch --tags "
            "--unshallow`; in GitHub Actions, actions/checkout with `fetch-depth: 0`)"
        )


def _next(version: Version) -> str:
    major, minor = (*version.release, 0, 0)[:2]
    return f"{major}.{minor + 1}.0"


def previous_tag(root: Path, version: Version) -> str | None:
    """The highest release tag below ``version`` (None: this is the first release)."""
    below = []
    for tag in git_checked(root, "tag", "--list", f"{TAG_PREFIX}*").split():
        try:
            found = tag_version(tag)
        except ConfigError:
            continue
        if found < version:
            below.append((found, tag))
    return max(below)[1] if below else None


# ------------------------------------------------------------------ release notes
@dataclass(frozen=True)
class Snapshot:
    """What a commit releases: helper and image versions, component YAML pins."""

    helpers: Mapping[str, str]  # distribution -> version
    images: Mapping[str, str]  # image name -> version
    components: Mapping[str, tuple[str, ...]]  # component -> its pins (image ref or packages)


def _read_at(root: Path, rev: str | None, path: str) -> str | None:
    if rev is None:
        full = root / path
        return full.read_text(encoding="utf-8") if full.is_file() else None
    return git_output(root, "show", f"{rev}:{path}")


def _listed(root: Path, rev: str | None, folder: str) -> list[str]:
    if rev is None:
        base = root / folder
        return sorted(p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file())
    return git_checked(root, "ls-tree", "-r", "--name-only", rev, "--", folder).split()


def component_pins(text: str) -> tuple[str, ...]:
    """A generated YAML's pins: its image, and each hash-pinned package it installs."""
    spec = yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader (libyaml's)
    pins: list[str] = []
    for executor in spec.get("deploymentSpec", {}).get("executors", {}).values():
        container = executor.get("container", {})
        pins.append(str(container.get("image")))
        for part in " ".join(str(c) for c in container.get("command", [])).split("'"):
            match = re.fullmatch(r"(\S+) @ \S+/([^/\s]+\.whl)#sha256=[0-9a-f]{64}", part)
            if match:
                name, version = parse_wheel_filename(match.group(2))[:2]
                pins.append(f"{name}=={version}")
    return tuple(pins)


def _project(text: str) -> tuple[str, str] | None:
    """(name, version) of a helper's pyproject.toml text."""
    name = re.search(r'(?m)^name\s*=\s*"([^"]+)"', text)
    version = re.search(r'(?m)^version\s*=\s*"([^"]+)"', text)
    return (name.group(1), version.group(1)) if name and version else None


def snapshot(root: Path, rev: str | None, component_dir: str) -> Snapshot:
    """The releasable state at ``rev`` (None: the working tree)."""
    helpers = {}
    for path in _listed(root, rev, "helpers"):
        if path.count("/") == 2 and path.endswith("/pyproject.toml"):
            text = _read_at(root, rev, path) or ""
            found = _project(text)
            if found:
                helpers[found[0]] = found[1]
    images: dict[str, str] = {}
    for path in _listed(root, rev, "images"):
        if path.count("/") == 2 and path.endswith("/image.toml"):
            line = re.search(r'(?m)^version\s*=\s*"([^"]+)"', _read_at(root, rev, path) or "")
            if line:
                images[path.split("/")[1]] = line.group(1)
    components = {}
    for path in _listed(root, rev, component_dir):
        if path.endswith(".yaml") and path.count("/") == component_dir.count("/") + 1:
            components[Path(path).stem] = component_pins(_read_at(root, rev, path) or "{}")
    for name, shown in list(images.items()):  # the digest its components pin, if any
        refs = {p for pins in components.values() for p in pins if f"/{name}@sha256:" in p}
        if len(refs) == 1:
            images[name] = f"{shown} ({refs.pop().split('@', 1)[1][:19]}...)"
    return Snapshot(helpers, images, components)


def _changes(old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            lines.append(f"- `{name}`: new, {_shown(after)}")
        elif after is None:
            lines.append(f"- `{name}`: removed (was {_shown(before)})")
        else:
            lines.append(f"- `{name}`: {_shown(before)} -> {_shown(after)}")
    return lines


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def release_notes(
    version: Version, tag: str, previous: str | None, old: Snapshot, new: Snapshot
) -> str:
    """Markdown: what changed since ``previous`` (helpers, images, components)."""
    since = f"since {previous}" if previous else "(the first release)"
    parts = [f"# Release {version} ({tag})", "", f"Changes {since}:", ""]
    for title, before, after in (
        ("Helpers", old.helpers, new.helpers),
        ("Images", old.images, new.images),
        ("Components", old.components, new.components),
    ):
        lines = _changes(before, after)
        parts += [f"## {title}", "", *(lines or ["- no change"]), ""]
    return "\n".join(parts)
