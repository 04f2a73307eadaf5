"""An image, or an index over each platform's, that kiln did not build in this process but
knows by its digest in a registry: what the matrix's finalize step records (its SBOMs and
YAMLs need the digests alone). It has no bytes to push."""

from __future__ import annotations

from dataclasses import dataclass

from kiln._images.oci.image import BuiltImage
from kiln._images.oci.index import BuiltIndex, Platform


@dataclass(frozen=True)
class PublishedImage(BuiltImage):
    """A registry's image at ``known`` (its manifest digest); no config, manifest or layer
    bytes are held."""

    known: str = ""

    @property
    def digest(self) -> str:
        return self.known


@dataclass(frozen=True)
class PublishedIndex(BuiltIndex):
    """A registry's index at ``known`` over each platform's :class:`PublishedImage`."""

    known: str = ""

    @property
    def digest(self) -> str:
        return self.known


def published_image(digest: str) -> PublishedImage:
    return PublishedImage(config=b"", manifest=b"", layers=(), known=digest)


def published_index(digest: str, images: tuple[tuple[str, str], ...]) -> PublishedIndex:
    """The index at ``digest`` over ``images`` ((OCI platform, its image's digest), in the
    image's order)."""
    pairs = tuple((Platform.parse(p), published_image(d)) for p, d in images)
    return PublishedIndex(index=b"", images=pairs, known=digest)
