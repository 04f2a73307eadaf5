"""The OCI image index over per-platform manifests: its exact bytes, its digest before any
push, the fields the OCI image spec requires, and platforms read from each config."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest

from kiln._errors import ConfigError
from kiln._images.oci.image import (
    OCI_MANIFEST,
    BuiltImage,
    canonical_json,
    image_manifest,
)
from kiln._images.oci.index import OCI_INDEX, Platform, image_index

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def built(architecture: str, *, variant: str | None = None, os: str = "linux") -> BuiltImage:
    """An image whose config says ``os``/``architecture`` (no layers: the index reads none)."""
    config_doc: dict[str, Any] = {
        "architecture": architecture,
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    if variant:
        config_doc["variant"] = variant
    config = canonical_json(config_doc)
    manifest = canonical_json(image_manifest(config, [], {}))
    return BuiltImage(config, manifest, ())


def check_spec(data: bytes) -> dict[str, Any]:
    """What the OCI image spec requires of an image index (image-index.md, descriptor.md):
    schemaVersion 2, its mediaType, and per manifest a descriptor (mediaType, digest,
    size) with a platform naming architecture and os."""
    doc = json.loads(data)
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == OCI_INDEX
    assert isinstance(doc["manifests"], list)
    assert doc["manifests"]
    for entry in doc["manifests"]:
        assert set(entry) <= {"mediaType", "digest", "size", "platform", "annotations"}
        assert entry["mediaType"] == OCI_MANIFEST
        assert _DIGEST.match(entry["digest"])
        assert isinstance(entry["size"], int)
        assert entry["size"] > 0
        assert set(entry["platform"]) <= {"architecture", "os", "variant"}
        assert entry["platform"]["architecture"]
        assert entry["platform"]["os"]
    assert set(doc) <= {"schemaVersion", "mediaType", "manifests", "annotations"}
    return doc  # type: ignore[no-any-return]  # json.loads


def test_the_index_names_each_platform_s_manifest_by_digest_and_size() -> None:
    amd, arm = built("amd64"), built("arm64", variant="v8")
    index = image_index([amd, arm])
    doc = check_spec(index.index)
    assert doc["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": amd.digest,
            "size": len(amd.manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        {
            "mediaType": OCI_MANIFEST,
            "digest": arm.digest,
            "size": len(arm.manifest),
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        },
    ]
    assert index.media_type == OCI_INDEX
    assert [str(p) for p, _ in index.images] == ["linux/amd64", "linux/arm64/v8"]
    assert index.image(Platform.parse("linux/arm64")) == arm


def test_the_index_bytes_are_canonical_and_its_digest_is_known_before_a_push() -> None:
    images = [built("amd64"), built("arm64")]
    index = image_index(images, {"org.opencontainers.image.version": "1.2.0"})
    assert index.index == canonical_json(json.loads(index.index))
    assert b" " not in index.index
    assert index.digest == "sha256:" + hashlib.sha256(index.index).hexdigest()
    assert image_index(images, {"org.opencontainers.image.version": "1.2.0"}) == index
    assert check_spec(index.index)["annotations"] == {"org.opencontainers.image.version": "1.2.0"}
    assert "annotations" not in check_spec(image_index(images).index)
    # the order is the caller's: another order, another index
    assert image_index(images[::-1]).digest != image_index(images).digest


def test_arm64_says_variant_v8_even_when_its_config_omits_it() -> None:
    index = image_index([built("arm64")])
    assert check_spec(index.index)["manifests"][0]["platform"] == {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
    }


def test_two_manifests_for_one_platform_or_a_config_without_one_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^two manifests for linux/arm64/v8 in one index: "):
        image_index([built("arm64"), built("arm64", variant="v8")])
    with pytest.raises(ValueError, match=r"its config names no os and architecture$"):
        image_index([built("", os="")])
    with pytest.raises(ValueError, match=r"^an image index needs one manifest at least$"):
        image_index([])
    with pytest.raises(ConfigError) as err:
        image_index([built("amd64")]).image(Platform.parse("linux/arm64"))
    assert str(err.value) == "the image index has no linux/arm64/v8 manifest (it has linux/amd64)"


@pytest.mark.parametrize(
    ("text", "platform"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64", Platform("linux", "arm64", "v8")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
    ],
)
def test_platforms_parse_as_docker_writes_them(text: str, platform: Platform) -> None:
    assert Platform.parse(text) == platform
    assert Platform.parse(str(platform)) == platform


@pytest.mark.parametrize("text", ["amd64", "linux/", "linux/amd64/v1/x", "Linux/AMD64", ""])
def test_a_platform_that_is_not_os_slash_architecture_is_named(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        Platform.parse(text)
    assert str(err.value) == (
        f"platform {text!r}: write os/architecture[/variant], e.g. 'linux/amd64' or 'linux/arm64'"
    )
