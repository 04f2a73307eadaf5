"""Image inputs: build context, labels and the input fingerprint.

Docker's legacy builder (what the SDK drives) does not give bit-reproducible
digests, so an image's identity is its *input fingerprint*: a hash of the
Dockerfile and other context files (image.toml and the committed
requirements.lock among them), the base image's digest when the lock pins it and
its ID (not its name: two names for one image are the same input), and the exact
wheels. It is recorded as a label; the registry is asked for it before pushing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kiln._util.files import sha256_file
from kiln._wheels.wheelhouse import Wheelhouse
from kiln._workspace.model import Image

if TYPE_CHECKING:
    from kiln._images.oci.base import BaseImage
    from kiln._images.oci.image import BuiltImage

LABEL_PREFIX = "org.kiln"
FINGERPRINT_LABEL = f"{LABEL_PREFIX}.fingerprint"


class ImageBuilder(Protocol):
    """Builds and pushes images. Docker Engine today; a daemonless builder is planned."""

    def image_id(self, ref: str) -> str | None: ...

    def ensure_image(self, ref: str, *, source: str) -> str:
        """The ID of ``ref``, pulled if it is not local; a ConfigError naming ``source``
        (where the reference was configured) when it cannot be found."""
        ...

    def build(
        self, context: Path, tag: str, *, buildargs: dict[str, str], labels: dict[str, str]
    ) -> str: ...

    def push(self, repository: str, tag: str) -> str: ...


class OciBuilder(Protocol):
    """kiln's own builder, for images whose image.toml says ``builder = "kiln"``: the
    image's bytes (and digest) are computed locally, before any push."""

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
    base: str
    base_id: str
    wheelhouse: Wheelhouse
    fingerprint: str
    earlier_fingerprint: str
    built: BuiltImage | None = None  # a kiln-built image, ready to push (digest known)

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def path_in_registry(self) -> str:
        """``<org>/<name>``: the repository without the registry host."""
        return self.repository.split("/", 1)[1]


def _context_files(image: Image) -> list[Path]:
    return sorted(p for p in image.path.rglob("*") if p.is_file())


def _inputs_doc(
    image: Image, base_id: str, wheelhouse: Wheelhouse, base_digest: str | None = None
) -> dict[str, object]:
    doc: dict[str, object] = {"base_digest": base_digest} if base_digest else {}
    return {
        **doc,
        "files": {str(p.relative_to(image.path)): sha256_file(p) for p in _context_files(image)},
        "base_id": base_id,
        "third_party": sorted((w.filename, w.sha256) for w in wheelhouse.third_party),
        "helpers": sorted((w.filename, w.sha256) for w in wheelhouse.helpers),
    }


def _digest(doc: dict[str, object]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def fingerprint(
    image: Image, base_id: str, wheelhouse: Wheelhouse, base_digest: str | None = None
) -> str:
    return _digest(_inputs_doc(image, base_id, wheelhouse, base_digest))


def earlier_fingerprint(image: Image, base: str, base_id: str, wheelhouse: Wheelhouse) -> str:
    """The same inputs as kiln 0.1.0 fingerprinted them (with the base's name), so images
    it pushed are still recognised as identical instead of refused."""
    return _digest({**_inputs_doc(image, base_id, wheelhouse), "base": base})


def image_inputs(
    image: Image,
    *,
    registry: str,
    org: str,
    base: str,
    base_id: str,
    wheelhouse: Wheelhouse,
    base_digest: str | None = None,
) -> ImageInputs:
    return ImageInputs(
        image=image,
        repository=f"{registry}/{org}/{image.name}",
        tag=image.version,
        base=base,
        base_id=base_id,
        wheelhouse=wheelhouse,
        fingerprint=fingerprint(image, base_id, wheelhouse, base_digest),
        earlier_fingerprint=earlier_fingerprint(image, base, base_id, wheelhouse),
    )


def labels(inputs: ImageInputs, *, source: str | None, revision: str | None) -> dict[str, str]:
    """OCI + kiln labels. ``source`` must already be free of credentials."""
    wh = inputs.wheelhouse
    result = {
        "org.opencontainers.image.title": inputs.image.name,
        "org.opencontainers.image.version": inputs.image.version,
        "org.opencontainers.image.base.name": inputs.base,
        FINGERPRINT_LABEL: inputs.fingerprint,
        f"{LABEL_PREFIX}.helpers": ",".join(f"{w.distribution}=={w.version}" for w in wh.helpers),
        f"{LABEL_PREFIX}.third-party": ",".join(f"{w.name}=={w.version}" for w in wh.third_party),
    }
    if source:
        result["org.opencontainers.image.source"] = source
    if revision:
        result["org.opencontainers.image.revision"] = revision
    return result


def write_context(inputs: ImageInputs, directory: Path) -> Path:
    """Lay out the build context: the image folder plus ``wheelhouse/``."""
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(inputs.image.path, directory)
    third = directory / "wheelhouse" / "third-party"
    helpers = directory / "wheelhouse" / "helpers"
    third.mkdir(parents=True)
    helpers.mkdir(parents=True)
    for w in inputs.wheelhouse.third_party:
        shutil.copy2(w.path, third / w.filename)
    for h in inputs.wheelhouse.helpers:
        shutil.copy2(h.path, helpers / h.filename)
    (third / "requirements.txt").write_text(inputs.wheelhouse.requirements_txt())
    return directory
