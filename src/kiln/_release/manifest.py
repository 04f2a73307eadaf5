"""The release manifest: every artifact a release produced, with its identity.

Typed records, written as ``dist/manifest.json`` and read back (the next
release uses the wheels it records to tell an altered index from a changed
source). The JSON shape is the contract consumers read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kiln._components.yamls import FileRecord
from kiln._util.files import write_atomic


@dataclass(frozen=True)
class WheelRecord:
    distribution: str
    version: str
    filename: str
    sha256: str
    status: str  # "published" by this release, or "unchanged"


@dataclass(frozen=True)
class SbomRecord:
    """An image's SBOM (CycloneDX JSON), relative to the repo."""

    path: str
    sha256: str


@dataclass(frozen=True)
class PlatformRecord:
    """One platform's image of an image made for several (its index pins them all)."""

    platform: str  # OCI: linux/arm64
    digest: str  # its manifest's
    sbom: SbomRecord


@dataclass(frozen=True)
class ImageRecord:
    name: str
    version: str
    repository: str  # <registry>/<org>/<name>
    tag: str
    digest: str
    ref: str  # repository@digest: what components pin
    helpers: tuple[str, ...]  # "<distribution>==<version>"
    status: str  # "pushed" by this release, or "unchanged"
    sbom: SbomRecord | None = None
    revision: str | None = None  # the git revision of the release that pushed it (if this one)
    # Made for several platforms: ``digest`` is the index's, each platform's image here.
    platforms: tuple[PlatformRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        found = {**asdict(self), "helpers": list(self.helpers)}
        if self.platforms:
            found["platforms"] = [asdict(p) for p in self.platforms]
        else:  # one platform: the shape it always had
            del found["platforms"]
        return found


@dataclass(frozen=True)
class Manifest:
    kiln: str
    release: str | None
    revision: str | None
    index: str
    registry: str
    kfp: str
    wheels: tuple[WheelRecord, ...]
    mirrored: tuple[str, ...]  # third-party filenames mirrored to the index
    images: tuple[ImageRecord, ...]
    components: tuple[FileRecord, ...]
    pipelines: tuple[FileRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kiln": self.kiln,
            "release": self.release,
            "revision": self.revision,
            "index": self.index,
            "registry": self.registry,
            "kfp": self.kfp,
            "wheels": [asdict(w) for w in self.wheels],
            "mirrored": list(self.mirrored),
            "images": [i.to_json() for i in self.images],
            "components": [c.to_json() for c in self.components],
            "pipelines": [p.to_json() for p in self.pipelines],
        }

    def write(self, path: Path) -> None:
        """All of it, or (a full disk, a kill) the manifest as it was: the next run reads
        it to tell a tampered file from a changed one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(self.to_json(), indent=2) + "\n").encode())


def recorded_wheels(path: Path, index_url: str) -> dict[str, str]:
    """filename -> sha256 of the wheels the manifest at ``path`` records as on ``index_url``.

    A missing, unreadable or foreign manifest records nothing: the caller then cannot
    tell an altered index from a changed source, and says so.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("index") != index_url:
        return {}
    rows = data.get("wheels")
    if not isinstance(rows, list):
        return {}
    return {
        str(r["filename"]): str(r["sha256"])
        for r in rows
        if isinstance(r, dict) and "filename" in r and "sha256" in r
    }
