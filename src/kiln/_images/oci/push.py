"""Push a built image through the registry HTTP API, and check it landed as predicted.

Each blob is asked for first (HEAD) and, when missing, mounted from the repository
of the same registry that holds it (the base's, cross-repository mount: no bytes
sent) or uploaded. The manifest is
PUT by its predicted digest first, which the registry checks against the bytes it
receives; then the image is verified there (``verify``: the smoke check, run by
digest), and only then is the manifest PUT under its tag. A registry that would store
anything else, or an image that fails its check, moves no tag: the plan of the next
run finds no tag, and builds, pushes and checks the image again. Both answers'
``Docker-Content-Digest`` must equal the prediction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln._errors import CommandFailed, KilnError
from kiln._images.oci.image import BuiltImage, sha256_digest
from kiln._images.oci.index import OCI_INDEX, BuiltIndex, Platform


class BlobRegistry(Protocol):
    host: str

    def blob_exists(self, repository: str, digest: str) -> bool: ...

    def mount_blob(self, repository: str, digest: str, source: str) -> bool: ...

    def upload_blob(self, repository: str, digest: str, content: Path | bytes) -> None: ...

    def put_manifest(
        self, repository: str, reference: str, manifest: bytes, media_type: str
    ) -> str: ...

    def manifest(self, repository: str, reference: str) -> bytes: ...


@dataclass(frozen=True)
class Pushed:
    digest: str
    uploaded: tuple[str, ...]  # digests of the blobs sent
    uploaded_bytes: int
    present: tuple[str, ...]  # digests of the blobs the registry had already
    mounted: tuple[str, ...] = ()  # linked from another repository there (no bytes sent)


def _describe(part: object) -> str:
    if isinstance(part, dict):
        return f"{part.get('digest')} ({part.get('size')} bytes)"
    return str(part)


def _differences(image: BuiltImage, stored: bytes) -> str:
    """Which parts of the stored manifest differ from ``image``'s: config, layer N."""
    try:
        theirs = json.loads(stored)
        ours = json.loads(image.manifest)
        parts = [("config", ours["config"], theirs["config"])]
        parts += [
            (f"layer {i + 1}", mine, other)
            for i, (mine, other) in enumerate(zip(ours["layers"], theirs["layers"], strict=False))
        ]
        if len(ours["layers"]) != len(theirs["layers"]):
            parts.append(("the number of layers", len(ours["layers"]), len(theirs["layers"])))
    except (ValueError, KeyError, TypeError):
        return "its manifest could not be read back"
    differ = [
        f"{name}: kiln {_describe(mine)}, registry {_describe(other)}"
        for name, mine, other in parts
        if mine != other
    ]
    return "; ".join(differ) or "the same config and layers, other manifest bytes"


def _check(
    registry: BlobRegistry, image: BuiltImage, repository: str, reference: str, answered: str
) -> None:
    if answered == image.digest:
        return
    try:
        detail = _differences(image, registry.manifest(repository, answered))
    except KilnError as exc:
        detail = f"its manifest could not be read back ({exc})"
    raise CommandFailed(
        f"image {registry.host}/{repository}:{reference}: the registry answered digest "
        f"{answered}, kiln predicted {image.digest} ({detail}); the registry rewrote the "
        "manifest: push to a registry that stores OCI manifests as sent"
    )


def push_image(
    registry: BlobRegistry,
    repository: str,
    tag: str,
    image: BuiltImage,
    *,
    verify: Callable[[str], None] = lambda _digest: None,
    log: Callable[[str], None] = lambda _line: None,
) -> Pushed:
    """Push ``image`` by its digest (``image.digest``, checked), call ``verify`` with that
    digest, and only when it returns put the tag: ``repository:tag``. An exception from
    ``verify`` leaves the image in the registry by digest only, untagged."""
    pushed = push_untagged(registry, repository, image, log=log)
    verify(image.digest)
    _put(registry, image, repository, tag)
    log(f"      tagged {repository}:{tag}")
    return pushed


def push_untagged(
    registry: BlobRegistry,
    repository: str,
    image: BuiltImage,
    *,
    log: Callable[[str], None] = lambda _line: None,
) -> Pushed:
    """Push ``image``'s blobs (each asked for first, mounted where ``image.mounts`` says)
    and its manifest by digest, checked; no tag."""
    blobs: list[tuple[str, Path | bytes, int]] = [
        *((b.digest, b.path, b.size) for b in image.layers),
        (image.config_digest, image.config, len(image.config)),
    ]
    uploaded: list[str] = []
    present: list[str] = []
    mounted: list[str] = []
    sent = 0
    for digest, content, size in blobs:
        if digest in uploaded or digest in present or digest in mounted:
            continue
        if registry.blob_exists(repository, digest):
            present.append(digest)
            log(f"      {digest[:19]} already in {repository}")
            continue
        source = image.mounts.get(digest)
        if source and source != repository and registry.mount_blob(repository, digest, source):
            mounted.append(digest)
            log(f"      {digest[:19]} mounted from {source}")
            continue
        registry.upload_blob(repository, digest, content)
        uploaded.append(digest)
        sent += size
        log(f"      {digest[:19]} uploaded ({size} bytes)")
    _put(registry, image, repository, image.digest)
    return Pushed(image.digest, tuple(uploaded), sent, tuple(present), tuple(mounted))


# The empty OCI index: what a release puts (by its digest, 88 bytes, no tag) to learn
# whether the registry takes OCI indexes before it publishes anything.
EMPTY_INDEX = b'{"manifests":[],"mediaType":"%s","schemaVersion":2}' % OCI_INDEX.encode()


def probe_index(registry: BlobRegistry, repository: str) -> None:
    """Raise CommandFailed, naming the fix, unless the registry stores an OCI image index
    in ``repository`` as sent (the empty one, by its digest)."""
    digest = sha256_digest(EMPTY_INDEX)
    try:
        answered = registry.put_manifest(repository, digest, EMPTY_INDEX, OCI_INDEX)
    except CommandFailed as exc:
        raise CommandFailed(
            f"registry {registry.host} refuses OCI image indexes ({exc}), and the images "
            "of this release are made for several platforms; nothing was published. Push "
            "to a registry that stores OCI image indexes (Docker's distribution 2.7 or later "
            'does), or make the images for one platform (platforms = ["linux/amd64"])'
        ) from None
    if answered != digest:
        raise CommandFailed(
            f"registry {registry.host} stored an OCI image index as {answered}, not as sent "
            f"({digest}); nothing was published. Push to a registry that stores OCI image "
            "indexes as sent"
        )


def push_index(
    registry: BlobRegistry,
    repository: str,
    tag: str,
    index: BuiltIndex,
    *,
    verify: Callable[[Platform, BuiltImage], None] = lambda _platform, _image: None,
    log: Callable[[str], None] = lambda _line: None,
) -> Pushed:
    """Push each platform's image of ``index`` by digest and ``verify`` it, then the
    index by its digest (checked), and only when every one passed put the tag on the
    index. A registry that refuses the index stops here with nothing tagged.

    The platforms are verified at the same time (this machine's in the engine, another's
    under qemu-user: each mostly waits on a process of its own); when one fails, the
    first failing platform's error is raised, once every check has ended."""
    pushed = []
    for platform, image in index.images:
        log(f"    {platform}: {image.digest[:19]}")
        pushed.append(push_untagged(registry, repository, image, log=log))
    with ThreadPoolExecutor(len(index.images), thread_name_prefix="kiln-verify") as pool:
        checks = [pool.submit(verify, platform, image) for platform, image in index.images]
        wait(checks)
    for check in checks:
        check.result()
    for reference in (index.digest, tag):
        try:
            answered = registry.put_manifest(repository, reference, index.index, index.media_type)
        except CommandFailed as exc:
            raise CommandFailed(
                f"registry {registry.host} refused the OCI image index of "
                f"{repository}:{tag} ({exc}); nothing was tagged. Push to a registry that "
                "stores OCI image indexes (Docker's distribution 2.7 or later does), or make "
                'the image for one platform (platforms = ["linux/amd64"])'
            ) from None
        if answered != index.digest:
            raise CommandFailed(
                f"image index {registry.host}/{repository}:{reference}: the registry "
                f"answered digest {answered}, kiln predicted {index.digest}; the registry "
                "rewrote the index: push to a registry that stores OCI indexes as sent"
            )
    log(f"      tagged {repository}:{tag} (an index of {len(index.images)} platforms)")
    return Pushed(
        index.digest,
        tuple(d for p in pushed for d in p.uploaded),
        sum(p.uploaded_bytes for p in pushed),
        tuple(d for p in pushed for d in p.present),
        tuple(d for p in pushed for d in p.mounted),
    )


def _put(registry: BlobRegistry, image: BuiltImage, repository: str, reference: str) -> None:
    answered = registry.put_manifest(repository, reference, image.manifest, image.media_type)
    _check(registry, image, repository, reference, answered)
