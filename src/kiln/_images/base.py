"""The base image: how a lock pins it, and which one a release builds from.

``kiln lock`` pins an image's base by its registry's manifest digest when the
registry answers, else by the local engine's repo digest, else by its image ID
(an imported image has no repo digest); the lock records it beside the tag. A
release builds from exactly that, unless ``KILN_BASE_IMAGE`` names a local
stand-in for machines that cannot pull the real base.
"""

from __future__ import annotations

from collections.abc import Callable

from kiln._errors import ConfigError, KilnError
from kiln._wheels.lock import BasePin, Lock, untagged
from kiln._workspace.model import Image


def split_reference(ref: str) -> tuple[str, str, str]:
    """``(registry host, repository, tag)`` of a Docker reference, Docker Hub's rules."""
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    name = untagged(name)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, digest or tag
    repository = name if "/" in name else f"library/{name}"
    return "registry-1.docker.io", repository, digest or tag


def resolve_base(
    ref: str,
    *,
    registry_digest: Callable[[str, str, str], str | None],
    local: Callable[[str], tuple[tuple[str, ...], str] | None],
) -> tuple[BasePin, str]:
    """Pin ``ref``: its registry's manifest digest when the registry answers, else the
    local engine's repo digest, else the local image ID; with a sentence saying how.

    ``registry_digest(host, repository, tag)`` raises a KilnError when the registry
    cannot be asked; ``local(ref)`` gives (RepoDigests, ID), or None without that image."""
    if "@sha256:" in ref:
        return BasePin(ref, "digest", ref.split("@", 1)[1]), "pinned in image.toml"
    host, repository, tag = split_reference(ref)
    reason = ""
    try:
        digest = registry_digest(host, repository, tag)
    except KilnError as exc:  # unreachable, refused, no credentials: ask the engine
        reason = str(exc).split(";", 1)[0]  # what failed, without the server's own hint
    else:
        if digest:
            return BasePin(ref, "digest", digest), f"manifest digest from {host}"
        reason = f"{host} has no {repository}:{tag}"
    found = local(ref)
    if found is None:
        return BasePin(ref, "unpinned", reason or "not found"), (
            f"not pinned: {reason}, and the local engine has no {ref}"
        )
    repo_digests, image_id = found
    for entry in repo_digests:
        name, _, digest = entry.partition("@")
        if split_reference(name)[:2] == (host, repository):
            return BasePin(ref, "digest", digest), "repo digest from the local engine"
    return BasePin(ref, "id", image_id), "image ID from the local engine (no repo digest)"


def pinned_base(image: Image, lock: Lock) -> BasePin:
    """The lock's base pin; a ConfigError saying how to pin it when the lock could not."""
    base = lock.base
    if base.kind == "unpinned":
        raise ConfigError(
            f"{lock.path}: base {base.ref} is not pinned ({base.value}): run `kiln lock "
            f"{image.name}` where its registry or a local copy can be reached, or set "
            "KILN_BASE_IMAGE to a local base image"
        )
    return base


def kiln_base(image: Image, lock: Lock, *, override: str | None) -> tuple[str, str | None]:
    """The base kiln's own builder builds ``image`` on: (reference, the image ID the lock
    pins or None). No engine is asked here: a reference pinned by digest is read from
    its registry, one pinned by image ID from the engine, which must have that ID.

    ``override`` (KILN_BASE_IMAGE) replaces the upstream base; an OS base (built from
    the image's Dockerfile) was built on it at `kiln lock` already, so it stays."""
    if override and not lock.base.os_from:
        return override, None
    base = pinned_base(image, lock)
    if base.kind == "digest":
        return base.build_ref, None
    return base.ref, base.value
