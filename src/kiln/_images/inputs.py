"""Image inputs: what kiln's builder makes an image from, and the builder's interface.

An image's identity is its manifest digest, computed by kiln before any push from
the base image, the exact wheels and image.toml's settings (``oci``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kiln._wheels.wheelhouse import Wheelhouse
from kiln._workspace.model import Image

if TYPE_CHECKING:
    from kiln._images.oci.base import BaseImage
    from kiln._images.oci.image import BuiltImage


class OciBuilder(Protocol):
    """kiln's own builder: an image's bytes (and digest) are computed locally, before any
    push."""

    def build(
        self, inputs: ImageInputs, *, source: str | None, pinned_id: str | None = None
    ) -> tuple[BuiltImage, BaseImage]:
        """The image's bytes and the base they were built on (``pinned_id``: the image ID
        the lock pins for an engine base, checked)."""
        ...

    def preflight(self) -> None:
        """Raise ServiceUnavailable unless a push can be smoke-checked (the engine runs)."""
        ...

    def push(self, inputs: ImageInputs, image: BuiltImage) -> str:
        """Push ``image`` as ``inputs``'s tag; its digest, checked against the registry's."""
        ...


@dataclass(frozen=True)
class ImageInputs:
    image: Image
    repository: str  # "<registry>/<org>/<name>"
    tag: str
    base: str  # the base's reference (by digest once built on a registry base)
    wheelhouse: Wheelhouse
    base_id: str = ""  # the base's image ID, once built
    built: BuiltImage | None = None  # the image kiln built from these inputs (digest known)

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def path_in_registry(self) -> str:
        """``<org>/<name>``: the repository without the registry host."""
        return self.repository.split("/", 1)[1]

    @property
    def digest(self) -> str:
        """The built image's manifest digest."""
        if self.built is None:
            raise ValueError(f"{self.ref}: not built yet")
        return self.built.digest


def image_inputs(
    image: Image, *, registry: str, org: str, base: str, wheelhouse: Wheelhouse
) -> ImageInputs:
    return ImageInputs(
        image=image,
        repository=f"{registry}/{org}/{image.name}",
        tag=image.version,
        base=base,
        wheelhouse=wheelhouse,
    )
