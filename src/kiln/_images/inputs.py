"""Image inputs: what kiln's builder makes an image from, and the builder's interface.

An image's identity is its manifest digest, computed by kiln before any push from
the base (kiln's OS base from ``images/os.lock``, or a registry image by digest), the
exact wheels and image.toml's settings (``oci``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from kiln._debian.lock import DebPin, OsLock
from kiln._wheels.wheelhouse import Wheelhouse
from kiln._workspace.model import Image
from kiln._workspace.platforms import PLATFORMS

if TYPE_CHECKING:
    from kiln._images.oci.base_image import BaseImage
    from kiln._images.oci.image import BuiltImage
    from kiln._images.oci.index import BuiltIndex


@dataclass(frozen=True)
class OsBase:
    """kiln's OS base: the OS layer of ``lock`` and, for an image with os-packages, the
    layer of its extras (``extras``: that image's name)."""

    lock: OsLock
    extras: str | None = None

    @classmethod
    def of(cls, lock: OsLock, image: Image) -> OsBase:
        """``image``'s OS base: the OS layer, and its own extras layer when it lists
        os-packages."""
        return cls(lock, image.name if image.os_packages else None)

    @property
    def name(self) -> str:
        """What it is, for people: ``debian bookworm 12.8 (images/os.lock)``."""
        return self.lock.name

    @property
    def layers(self) -> tuple[str, ...]:
        """The digests of its layers, as the lock records them."""
        sets = [self.lock.os, *([self.lock.extras[self.extras]] if self.extras else [])]
        return tuple(s.layer.digest for s in sets if s.layer is not None)

    @property
    def packages(self) -> tuple[DebPin, ...]:
        extra = self.lock.extras[self.extras].packages if self.extras else ()
        return (*self.lock.os.packages, *extra)


class OciBuilder(Protocol):
    """kiln's own builder: an image's bytes (and digest) are computed locally, before any
    push."""

    def build(
        self, inputs: ImageInputs, *, source: str | None, platform: str | None = None
    ) -> tuple[BuiltImage, BaseImage]:
        """The image's bytes for ``platform`` (None: its first), and the base they were
        built on."""
        ...

    def read_ahead(self, inputs: ImageInputs, platform: str) -> None:
        """Start getting what ``build`` of ``platform`` reads first, in the background."""
        ...

    def preflight(self, index_repository: str | None = None) -> None:
        """Raise ServiceUnavailable unless a push can be smoke-checked (the engine runs),
        and CommandFailed when the registry refuses an OCI index in ``index_repository``."""
        ...

    def push(self, inputs: ImageInputs, image: BuiltImage | BuiltIndex) -> str:
        """Push ``image`` (or the index over its platforms' images) as ``inputs``'s tag;
        its digest, checked against the registry's."""
        ...


@dataclass(frozen=True)
class ImageInputs:
    image: Image
    repository: str  # "<registry>/<org>/<name>"
    tag: str
    base: str | OsBase  # a registry base's reference (repo@sha256:...), or kiln's OS base
    wheelhouse: Wheelhouse
    # What kiln built from these inputs (digest known): the image, or for more than one
    # platform the index over each one's image.
    built: BuiltImage | BuiltIndex | None = None
    # Each platform's (OCI) wheelhouse when the image is made for more than one;
    # ``wheelhouse`` is the first's.
    wheelhouses: tuple[tuple[str, Wheelhouse], ...] = ()
    # What the smoke check imports after the push (None: kfp and every helper's packages)
    smoke: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()  # set in the config beside the image's own env

    @property
    def base_name(self) -> str:
        return self.base.name if isinstance(self.base, OsBase) else self.base

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def path_in_registry(self) -> str:
        """``<org>/<name>``: the repository without the registry host."""
        return self.repository.split("/", 1)[1]

    def of_platform(self, platform: str) -> ImageInputs:
        """These inputs as one of the image's ``platforms`` (OCI) is built from: its
        wheelhouse and, on kiln's OS base, that architecture's OS layers."""
        if platform == self.image.platforms[0]:
            return self
        base = self.base
        if isinstance(base, OsBase):
            base = OsBase(base.lock.of(PLATFORMS[platform][0]), base.extras)
        return replace(self, wheelhouse=dict(self.wheelhouses)[platform], base=base)

    @property
    def digest(self) -> str:
        """The built image's manifest digest (its index's, for several platforms)."""
        if self.built is None:
            raise ValueError(f"{self.ref}: not built yet")
        return self.built.digest


def image_inputs(
    image: Image, *, registry: str, org: str, base: str | OsBase, wheelhouse: Wheelhouse
) -> ImageInputs:
    return ImageInputs(
        image=image,
        repository=f"{registry}/{org}/{image.name}",
        tag=image.version,
        base=base,
        wheelhouse=wheelhouse,
    )


# The label recording what an image was built on: its registry base's digest (the OCI
# annotation), or the layers of kiln's OS base. `kiln check` compares it with the locks.
BASE_DIGEST_LABEL = "org.opencontainers.image.base.digest"
OS_LAYERS_LABEL = "org.kiln.os-layers"


def base_label(base: str | OsBase) -> tuple[str, str]:
    """(label, value) naming exactly the bytes ``base`` puts under an image."""
    if isinstance(base, OsBase):
        return OS_LAYERS_LABEL, ",".join(base.layers)
    return BASE_DIGEST_LABEL, base.partition("@")[2]
