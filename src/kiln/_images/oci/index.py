"""An OCI image index over an image's per-platform manifests, as the exact bytes pushed.

Like a manifest, the index is canonical JSON (sorted keys, no spaces, UTF-8), so its
digest, the sha256 of those bytes, is known before anything is pushed: a YAML can pin
``image@<index digest>`` and each node pulls its own platform's manifest. Each entry's
platform is read from that manifest's config, so an index cannot say arm64 for an amd64
image. Nothing pushes an index yet (issue 19 wires it into the release).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kiln._errors import ConfigError
from kiln._images.oci.image import BuiltImage, canonical_json, sha256_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# The variant a platform has when none is given (the OCI image spec's platform variants).
DEFAULT_VARIANTS = {"arm64": "v8"}
_PART = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True, order=True)
class Platform:
    """``os/architecture[/variant]`` as an OCI index and an image config say it."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/amd64``, ``linux/arm64`` (variant v8) or ``linux/arm64/v8``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(_PART.match(p) for p in parts):
            raise ConfigError(
                f"platform {text!r}: write os/architecture[/variant], e.g. 'linux/amd64' or "
                "'linux/arm64'"
            )
        os_name, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else DEFAULT_VARIANTS.get(arch)
        return cls(os_name, arch, variant)

    @classmethod
    def of_config(cls, config: Mapping[str, Any]) -> Platform:
        """The platform an image config says (its variant defaulted as ``parse`` does)."""
        arch = str(config.get("architecture", ""))
        variant = config.get("variant") or DEFAULT_VARIANTS.get(arch)
        return cls(str(config.get("os", "")), arch, str(variant) if variant else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def doc(self) -> dict[str, str]:
        found = {"os": self.os, "architecture": self.architecture}
        return found | ({"variant": self.variant} if self.variant else {})


@dataclass(frozen=True)
class BuiltIndex:
    """An index ready to push: its exact bytes, and each platform's image in its order."""

    index: bytes
    images: tuple[tuple[Platform, BuiltImage], ...]
    media_type: str = OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def digest(self) -> str:
        return sha256_digest(self.index)

    def image(self, platform: Platform) -> BuiltImage:
        for found, image in self.images:
            if found == platform:
                return image
        offered = ", ".join(str(p) for p, _ in self.images)
        raise ConfigError(f"the image index has no {platform} manifest (it has {offered})")


def image_index(
    images: Sequence[BuiltImage], annotations: Mapping[str, str] | None = None
) -> BuiltIndex:
    """The index over ``images``, one per platform, in the order given (the first is what
    a client without a platform of its own takes); each platform read from its config."""
    if not images:
        raise ValueError("an image index needs one manifest at least")
    entries = [(Platform.of_config(json.loads(i.config)), i) for i in images]
    seen: dict[Platform, str] = {}
    for platform, image in entries:
        if not platform.os or not platform.architecture:
            raise ValueError(f"{image.digest}: its config names no os and architecture")
        if platform in seen:
            raise ValueError(
                f"two manifests for {platform} in one index: {seen[platform]} and {image.digest}"
            )
        seen[platform] = image.digest
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.manifest),
                "platform": platform.doc(),
            }
            for platform, image in entries
        ],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return BuiltIndex(canonical_json(doc), tuple(entries), annotations=dict(annotations or {}))
