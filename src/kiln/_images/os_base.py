"""An image's OS base: ``images/<i>/Dockerfile`` built by Docker on the upstream base.

Some helpers need OS packages (``libgl1`` for OpenCV, fonts for plots). Those go in
an optional Dockerfile (``ARG BASE_IMAGE`` / ``FROM ${BASE_IMAGE}`` / ``RUN apt-get
...``). Docker builds are not reproducible, so the OS base is built once, at `kiln
lock`, pushed to the release's registry under a tag named by a hash of its inputs
(the Dockerfile's folder and the base it is built from), and the lock pins its
registry digest. Every later build, on any machine, layers the Python layers on
exactly those bytes, read from the registry; a lock made again from the same inputs
finds the tag and rebuilds nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from kiln._errors import CommandFailed, ConfigError
from kiln._wheels.lock import BasePin, os_context, os_inputs_hash
from kiln._workspace.model import Image


class Digests(Protocol):
    host: str

    def digest(self, repository: str, tag: str) -> str | None: ...


class Engine(Protocol):
    def build(
        self, context: Path, tag: str, *, buildargs: dict[str, str], labels: dict[str, str]
    ) -> str: ...

    def push(self, repository: str, tag: str) -> str: ...


def os_base_ref(image: Image, *, registry: str, org: str, built_from: str) -> str:
    """``<registry>/<org>/<image>-os:<hash>``: the tag names the OS base's inputs."""
    doc = {"from": built_from, "files": os_inputs_hash(image)}
    tag = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    return f"{registry}/{org}/{image.name}-os:{tag}"


def built_from(image: Image, upstream: BasePin, override: str | None) -> str:
    """What the OS base is built FROM: KILN_BASE_IMAGE, else the lock's upstream pin."""
    if override:
        return override
    if upstream.kind == "unpinned":
        raise ConfigError(
            f"{image.os_dockerfile}: its FROM, {upstream.ref}, could not be pinned "
            f"({upstream.value}); let kiln reach its registry or the local engine's copy, "
            "or set KILN_BASE_IMAGE to a local base image"
        )
    return upstream.build_ref


def lock_os_base(
    image: Image,
    *,
    org: str,
    upstream: BasePin,
    override: str | None,
    registry: Digests,
    engine: Callable[[], Engine],
    work: Path,
    log: Callable[[str], None] = lambda _line: None,
) -> tuple[BasePin, str]:
    """The lock's pin of ``image``'s OS base, and how it was found. Built with ``engine()``
    and pushed only when the registry has no OS base for these inputs yet."""
    source = built_from(image, upstream, override)
    ref = os_base_ref(image, registry=registry.host, org=org, built_from=source)
    repository, tag = ref.split("/", 1)[1].rsplit(":", 1)
    digest = registry.digest(repository, tag)
    if digest is not None:
        return BasePin(ref, "digest", digest, source), f"OS base {ref} is in the registry"
    context = work / image.name
    shutil.rmtree(context, ignore_errors=True)
    for path in os_context(image):
        target = context / path.relative_to(image.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    log(f"    docker build {image.os_dockerfile} FROM {source}")
    docker = engine()
    docker.build(
        context, ref, buildargs={"BASE_IMAGE": source}, labels={"org.kiln.os-base": image.name}
    )
    pushed = docker.push(ref.rsplit(":", 1)[0], tag)
    there = registry.digest(repository, tag)
    if there != pushed:
        raise CommandFailed(f"pushed {ref} as {pushed}, but the registry answers {there}")
    return BasePin(ref, "digest", pushed, source), f"OS base built from {source}, pushed {ref}"
