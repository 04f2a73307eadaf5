"""A registry base: how ``kiln lock`` pins it, by its registry's manifest digest only.

An image builds on kiln's OS base (``images/os.lock``) unless its image.toml names a
registry ``base`` (``python:3.11-slim``, an organisation's own). Such a base is pinned
by the registry's manifest digest, asked of the registry, or read from the local
engine's repo digests (a copy pulled from that registry); a tag alone or a local
image ID never reaches a committed lock or YAML: kiln refuses and says how to pin.
"""

from __future__ import annotations

from collections.abc import Callable

from kiln._errors import ConfigError, KilnError
from kiln._lock.format import BasePin, Lock, untagged
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


def _refused(ref: str, where: str, why: str) -> ConfigError:
    return ConfigError(
        f"{where}: base {ref} could not be pinned by its registry digest ({why}). kiln never "
        "writes a lock from a base pinned only by a tag or a local image ID, whose bytes "
        f'differ from machine to machine. Pin it: base = "{untagged(ref)}@sha256:<digest>" '
        "(`docker buildx imagetools inspect` or `skopeo inspect` shows it), let kiln reach "
        "its registry, or delete `base` to build on kiln's OS base (images/os.lock)"
    )


def resolve_base(
    ref: str,
    *,
    where: str,
    registry_digest: Callable[[str, str, str], str | None],
    local: Callable[[str], tuple[str, ...] | None],
) -> tuple[BasePin, str]:
    """Pin ``ref``: its registry's manifest digest when the registry answers, else a repo
    digest of the local engine's copy from that registry; with a sentence saying how.
    Anything else is a ConfigError naming ``where`` (the image.toml) and the fix.

    ``registry_digest(host, repository, tag)`` raises a KilnError when the registry
    cannot be asked; ``local(ref)`` gives the engine's RepoDigests, or None."""
    if "@sha256:" in ref:
        return BasePin(ref, "digest", ref.split("@", 1)[1]), "pinned in image.toml"
    host, repository, tag = split_reference(ref)
    try:
        digest = registry_digest(host, repository, tag)
    except KilnError as exc:  # unreachable, refused, no credentials: ask the engine
        reason = str(exc).split(";", 1)[0]  # what failed, without the server's own hint
    else:
        if digest:
            return BasePin(ref, "digest", digest), f"manifest digest from {host}"
        reason = f"{host} has no {repository}:{tag}"
    for entry in local(ref) or ():
        name, _, digest = entry.partition("@")
        if split_reference(name)[:2] == (host, repository):
            return BasePin(ref, "digest", digest), "repo digest from the local engine"
    raise _refused(ref, where, reason)


def build_ref(image: Image, lock: Lock) -> str | None:
    """The registry reference ``image`` builds on (``repo@sha256:...``), or None when it
    builds on kiln's OS base; a lock that does not say the same as image.toml is stale."""
    if image.base is None:
        if lock.base.kind != "os":
            raise ConfigError(
                f"{lock.path}: stale: written for base {lock.base.ref}, and image.toml names "
                f"none (kiln's OS base); run `kiln lock {image.name}`"
            )
        return None
    if lock.base.kind != "digest":
        raise ConfigError(
            f"{lock.path}: stale: written for kiln's OS base, and image.toml names base "
            f"{image.base}; run `kiln lock {image.name}`"
        )
    return lock.base.build_ref
