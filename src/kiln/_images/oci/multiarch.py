"""An image built for each of its platforms, and the OCI image index over them.

Each platform's image is built from that platform's wheelhouse (its wheels of the
image's lock) on that architecture's OS base; the helper layer is the same bytes in
every one. The index is canonical JSON over the manifests, so its digest is known
before anything is pushed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from kiln._images.oci.index import BuiltIndex, image_index
from kiln._workspace.platforms import python_platform

if TYPE_CHECKING:
    from kiln._images.inputs import ImageInputs
    from kiln._images.oci.base_image import BaseImage
    from kiln._images.oci.image import BuiltImage
    from kiln._wheels.wheelhouse import Wheelhouse
    from kiln._workspace.model import Image


class PlatformBuilder(Protocol):
    """kiln's builder (``KilnBuilder``), building for one platform at a time."""

    def read_ahead(self, inputs: ImageInputs, platform: str) -> None: ...

    def build(
        self, inputs: ImageInputs, *, source: str | None, platform: str | None = None
    ) -> tuple[BuiltImage, BaseImage]: ...


def platform_wheelhouses(
    image: Image, resolve: Callable[[str], Wheelhouse]
) -> dict[str, Wheelhouse]:
    """Each of ``image``'s platforms (OCI) -> its wheelhouse: ``resolve`` (e.g.
    ``resolve_wheelhouse`` of the image's lock) given uv's platform of it."""
    return {p: resolve(python_platform(image.platform, p)) for p in image.platforms}


def build_index(
    builder: PlatformBuilder,
    inputs: ImageInputs,
    wheelhouses: Mapping[str, Wheelhouse],
    *,
    source: str | None,
) -> BuiltIndex:
    """The image of ``inputs`` for each of its platforms (``wheelhouses``: each one's, as
    ``platform_wheelhouses`` gives them), in the image's order, and the index over them:
    the first platform's image is the one a build for that platform alone gives."""
    platforms = inputs.image.platforms
    missing = [p for p in platforms if p not in wheelhouses]
    if missing:
        raise ValueError(f"{inputs.image.name}: no wheelhouse for {', '.join(missing)}")
    for platform in platforms[1:]:  # their OS layers' .debs read while the first builds
        builder.read_ahead(inputs, platform)
    images = [
        builder.build(
            dataclasses.replace(inputs, wheelhouse=wheelhouses[p]), source=source, platform=p
        )[0]
        for p in platforms
    ]
    return image_index(images)
