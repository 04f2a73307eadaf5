"""The SBOM of a kiln-built image: CycloneDX JSON, written with ``cyclonedx-python-lib``.

One ``library`` component per distribution kiln installs (the third-party wheels of the
lock and the helper wheels): name, version, ``pkg:pypi/<name>@<version>`` and the
wheel's sha256. On kiln's OS base, the base is an ``operating-system`` component
(Debian and its point release) and every Debian package of the OS lock is a
``library`` with its ``pkg:deb/debian/<name>@<version>?arch=...&distro=...`` purl and
the ``.deb``'s sha256. A registry base is a ``container`` component by its digest; the
distributions it carries are inside its identity, not listed one by one. The image
itself is the metadata's component, by digest.

Same inputs, same bytes: the library's defaults are random (``serialNumber`` is a
uuid4, every ``bom-ref`` a random string) or the current time (``metadata.timestamp``),
so here the serial number is a uuid5 of the image digest, every ``bom-ref`` is the
component's purl, the timestamp is SOURCE_DATE_EPOCH (the images' fixed ``created``),
and the JSON is written with sorted keys. Nothing in it comes from the build machine:
no paths, no credentials (``inputs.repository`` is ``host/org/name``).
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import TYPE_CHECKING

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from kiln._util.epoch import MTIME

if TYPE_CHECKING:
    from kiln._images.inputs import ImageInputs, OsBase

# The namespace of the serial numbers: uuid5(this, image digest).
_SERIALS = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/kiln/sbom")
_PREFIX = "org.kiln"


def _oci_purl(repository: str, digest: str, tag: str | None = None) -> PackageURL:
    """``pkg:oci/<name>@<digest>?repository_url=<repository>`` (the purl spec's OCI type)."""
    qualifiers = {"repository_url": repository, **({"tag": tag} if tag else {})}
    return PackageURL(
        type="oci", name=repository.rsplit("/", 1)[-1], version=digest, qualifiers=qualifiers
    )


def _sha256(hex_or_digest: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=hex_or_digest.removeprefix("sha256:"))


def _distribution(name: str, version: str, sha256: str, layer: str) -> Component:
    purl = PackageURL(type="pypi", name=name, version=version)
    return Component(
        name=name,
        version=version,
        type=ComponentType.LIBRARY,
        purl=purl,
        bom_ref=purl.to_string(),
        hashes=[_sha256(sha256)],
        properties=[Property(name=f"{_PREFIX}:layer", value=layer)],
    )


def _base(ref: str) -> Component:
    """A registry base, by the digest its reference carries (``repo@sha256:...``)."""
    repository, _, digest = ref.partition("@")
    purl = _oci_purl(repository, digest)
    return Component(
        name=repository, version=digest, type=ComponentType.CONTAINER, purl=purl,
        bom_ref=purl.to_string(), hashes=[_sha256(digest)],
        properties=[Property(name=f"{_PREFIX}:base", value="registry digest")],
    )  # fmt: skip


def _os(base: OsBase) -> list[Component]:
    """kiln's OS base: Debian itself, and every package of the OS lock."""
    lock = base.lock
    system = Component(
        name="debian", version=lock.release or lock.suite, type=ComponentType.OPERATING_SYSTEM,
        bom_ref=f"os:debian:{lock.suite}:{lock.architecture}",
        properties=[Property(name=f"{_PREFIX}:base", value=f"images/{lock.path.name}")],
    )  # fmt: skip
    packages = []
    for pin in base.packages:
        purl = PackageURL(
            type="deb", namespace="debian", name=pin.name, version=pin.version,
            qualifiers={"arch": pin.architecture, "distro": f"debian-{lock.suite}"},
        )  # fmt: skip
        packages.append(
            Component(
                name=pin.name,
                version=pin.version,
                type=ComponentType.LIBRARY,
                purl=purl,
                bom_ref=purl.to_string(),
                hashes=[_sha256(pin.sha256)],
                properties=[
                    Property(name=f"{_PREFIX}:layer", value="os"),
                    Property(name=f"{_PREFIX}:source-package", value=pin.source),
                ],
            )
        )
    return [system, *packages]


def image_sbom(inputs: ImageInputs, digest: str) -> bytes:
    """The CycloneDX 1.6 JSON of the image built from ``inputs``, whose manifest digest
    is ``digest``: the same bytes for the same inputs, on any machine."""
    wh = inputs.wheelhouse
    image_purl = _oci_purl(inputs.repository, digest, inputs.tag)
    image = Component(
        name=inputs.image.name, version=inputs.image.version, type=ComponentType.CONTAINER,
        purl=image_purl, bom_ref=image_purl.to_string(), hashes=[_sha256(digest)],
    )  # fmt: skip
    base = [_base(inputs.base)] if isinstance(inputs.base, str) else _os(inputs.base)
    distributions = [
        *(_distribution(w.name, w.version, w.sha256, "third-party") for w in wh.third_party),
        *(_distribution(w.distribution, w.version, w.sha256, "helpers") for w in wh.helpers),
    ]
    moment = datetime.datetime.fromtimestamp(MTIME, tz=datetime.timezone.utc)
    bom = Bom(
        serial_number=uuid.uuid5(_SERIALS, digest),
        metadata=BomMetaData(component=image, timestamp=moment),
        components=[*base, *distributions],
    )
    bom.register_dependency(image, [*base, *distributions])
    text = JsonV1Dot6(bom).output_as_string()
    return (json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n").encode()
