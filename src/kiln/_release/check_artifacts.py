"""`kiln check`'s look at what the published artifacts contain, beyond their names.

- Each image's version tag must still point at the digest the last release recorded
  (``dist/manifest.json``), and the manifest at that digest, and at each digest the
  committed component YAMLs pin, must be whole: its config and every layer blob in
  the registry (HEAD requests; no layer is downloaded).
- Each helper wheel the last release recorded must be served by the index with the
  sha256 it recorded (the wheels built today are compared by ``check`` already).

A difference is an ALTERED finding (exit 8): the registry or the index changed under
kiln; bumping a version would hide it, not fix it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from kiln._errors import KilnError
from kiln._release.check import ALTERED, Finding
from kiln._servers.index import Index, files_for
from kiln._servers.registry import Registry
from kiln._workspace.model import Workspace

_PIN = re.compile(r"^\s*image:\s*(\S+?)@(sha256:[0-9a-f]{64})\s*$", re.MULTILINE)
_MANIFEST = "dist/manifest.json"


def recorded_images(path: Path, host: str) -> dict[tuple[str, str], str]:
    """(path in the registry, tag) -> digest of the images the manifest at ``path``
    records as pushed to ``host``; a missing, unreadable or foreign one records nothing."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("registry") != host:
        return {}
    found = {}
    for row in data.get("images") or []:
        if isinstance(row, dict) and {"repository", "tag", "digest"} <= row.keys():
            where = str(row["repository"]).removeprefix(f"{host}/")
            found[(where, str(row["tag"]))] = str(row["digest"])
    return found


def yaml_pins(folder: Path, host: str) -> dict[str, set[str]]:
    """Path in the registry -> the digests the component YAMLs in ``folder`` pin there."""
    pins: dict[str, set[str]] = {}
    for yaml in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
        for ref, digest in _PIN.findall(yaml.read_text(encoding="utf-8", errors="replace")):
            if ref.startswith(f"{host}/"):
                pins.setdefault(ref.removeprefix(f"{host}/"), set()).add(digest)
    return pins


def _missing_parts(registry: Registry, repository: str, digest: str) -> list[str] | None:
    """The blobs of ``repository@digest`` the registry lacks (config first; of an image
    index, each platform's manifest and its blobs); None when it has no such manifest."""
    try:
        manifest = json.loads(registry.manifest(repository, digest, lists=True))
    except KilnError:
        return None
    except ValueError:
        return ["its manifest (not JSON)"]
    if isinstance(manifest, dict) and "manifests" in manifest:  # an image index
        try:
            children = [str(m["digest"]) for m in manifest["manifests"]]
        except (KeyError, TypeError):
            return ["its platforms' manifests (the index names none)"]
        missing = []
        for child in children:
            lacks = _missing_parts(registry, repository, child)
            missing += [f"the manifest {child}"] if lacks is None else lacks
        return missing
    try:
        blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    except (KeyError, TypeError):
        return ["its config and layers (the manifest names none)"]
    return [blob for blob in blobs if not registry.blob_exists(repository, blob)]


def image_findings(
    workspace: Workspace,
    registry: Registry,
    recorded: Mapping[tuple[str, str], str],
    pins: Mapping[str, Iterable[str]],
) -> list[Finding]:
    """ALTERED findings for each image whose tag moved from the recorded digest, or
    whose tagged or pinned manifest lacks a blob (a pinned one never pushed is left to
    ``check``)."""
    found = []
    for image in workspace.images:
        repository = f"{workspace.org}/{image.name}"
        config = str((image.path / "image.toml").relative_to(workspace.root))
        ref = f"{registry.host}/{repository}"
        tagged = registry.digest(repository, image.version)
        was = recorded.get((repository, image.version))
        if tagged is not None and was is not None and tagged != was:
            found.append(
                Finding(
                    ALTERED,
                    image.name,
                    config,
                    f"{ref}:{image.version} points at {tagged}, but the last release pushed "
                    f"it as {was} ({_MANIFEST}): the tag was moved in the registry",
                    f"point the tag at {was} again (`docker buildx imagetools create --tag "
                    f"{ref}:{image.version} {ref}@{was}`), then `kiln check`; do not bump",
                )
            )
        tags = {tagged} if tagged is not None else set()
        for digest in sorted(tags | set(pins.get(repository, ()))):
            missing = _missing_parts(registry, repository, digest)
            if missing is None and digest not in tags:
                continue  # pinned, never pushed: `check`'s drift and to-do findings say so
            if missing is None or missing:
                lacks = ", ".join(missing) if missing else "the manifest itself"
                who = "its tag" if digest in tags else "a component YAML"
                found.append(
                    Finding(
                        ALTERED,
                        image.name,
                        config,
                        f"{ref}@{digest} ({who} points at it) cannot be pulled: the "
                        f"registry lacks {lacks}",
                        f"restore the registry's storage, or delete {ref}:{image.version} "
                        "from it and run `kiln release`, which pushes the image again; "
                        "do not bump",
                    )
                )
    return found


def wheel_findings(
    index: Index, recorded: Mapping[str, str], built: Sequence[str]
) -> list[Finding]:
    """ALTERED findings for each wheel the last release recorded (but today's build,
    ``built``, which ``check`` compares) that the index serves with other bytes."""
    found = []
    older: list[tuple[str, str, str]] = []  # (filename, sha256, project)
    for filename, sha256 in sorted(recorded.items()):
        if filename in built:
            continue
        try:
            older.append((filename, sha256, str(parse_wheel_filename(filename)[0])))
        except InvalidWheelFilename:
            continue
    listed = files_for(index, ((project, filename) for filename, _, project in older))
    for filename, sha256, project in older:
        there = listed[project].get(filename)
        if there is not None and there != sha256:
            found.append(
                Finding(
                    ALTERED,
                    project,
                    _MANIFEST,
                    f"the index serves {filename} with sha256 {there[:12]}..., but kiln "
                    f"published {sha256[:12]}... ({_MANIFEST}): the index was altered",
                    f"delete {filename} from the index and restore the published file; do not bump",
                )
            )
    return found
