"""A registry base: read by digest from its registry (blobs as published, checked, kept in
the cache), mounted on push; never from a local engine, never by a tag alone."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any, cast

import docker
import pytest
import requests

from kiln._errors import CommandFailed, ConfigError
from kiln._images.oci.base_image import pull_base
from kiln._images.oci.builder import KilnBuilder
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.loader import host_machine
from kiln._images.oci.push import push_image
from kiln._servers.registry import RegistryClient
from tests.unit.test_credentials import FakeTransport, session_with
from tests.unit.test_oci_build import a_layer_tar
from tests.unit.test_oci_push import FakeRegistry, an_image

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(host_machine(), host_machine())
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class SourceRegistry:
    """A registry holding one base: a tag naming a two-platform list, as Docker Hub's
    python images are published."""

    def __init__(self, tmp_path: Path, *, platforms: tuple[str, ...] = ("amd64", "arm64")) -> None:
        tar = a_layer_tar(tmp_path)
        self.layer = gzip.compress(tar, mtime=0)
        self.config = json.dumps(
            {"architecture": ARCH, "os": "linux", "config": {"Env": ["PATH=/usr/bin"]},
             "rootfs": {"type": "layers", "diff_ids": [sha(tar)]}}
        ).encode()  # fmt: skip
        self.manifest = json.dumps(
            {"schemaVersion": 2,
             "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                        "digest": sha(self.config), "size": len(self.config)},
             "layers": [{"mediaType": DOCKER_GZIP, "digest": sha(self.layer),
                         "size": len(self.layer)}]}
        ).encode()  # fmt: skip
        other = b'{"schemaVersion":2,"layers":[]}'
        entries = [
            {"digest": sha(self.manifest if p == ARCH else other), "size": 1,
             "platform": {"os": "linux", "architecture": p}}
            for p in platforms
        ]  # fmt: skip
        self.index = json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
        self.blobs = {sha(self.config): self.config, sha(self.layer): self.layer}
        self.tampered = False

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        path = str(request.url).split("/v2/library/python/", 1)[1]
        if path == "manifests/3.11-slim":
            return 200, {"Docker-Content-Digest": sha(self.index)}, self.index
        if path == f"manifests/{sha(self.index)}":
            return 200, {}, self.index
        if path == f"manifests/{sha(self.manifest)}":
            return 200, {}, self.manifest
        if path.startswith("blobs/") and path[6:] in self.blobs:
            data = self.blobs[path[6:]]
            return 200, {}, (data[:-1] + b"x" if self.tampered else data)
        return 404, {}, b""


def registry_of(source: SourceRegistry) -> tuple[RegistryClient, FakeTransport]:
    transport = FakeTransport(source)
    return RegistryClient("docker.test", session=session_with(transport)), transport


def test_a_base_is_pulled_for_this_machine_once_then_read_from_the_cache(tmp_path: Path) -> None:
    source = SourceRegistry(tmp_path)
    client, transport = registry_of(source)
    cache = LayerCache(tmp_path / "cache")

    base = pull_base(client, "docker.test/library/python:3.11-slim", cache)
    assert base.image_id == sha(source.config)
    assert base.digest == sha(source.manifest)  # this platform's manifest, not the list's
    assert base.origin == ("docker.test", "library/python")
    (layer,) = base.layers
    assert (layer.digest, layer.size) == (sha(source.layer), len(source.layer))
    assert layer.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"  # same bytes
    assert layer.path.read_bytes() == source.layer
    assert base.config["config"] == {"Env": ["PATH=/usr/bin"]}

    transport.seen.clear()
    assert pull_base(client, "docker.test/library/python:3.11-slim", cache) == base
    # Only the tag is asked again; the list, the manifest and the blobs come from the cache.
    assert [r.method for r in transport.seen] == ["HEAD"]


def test_a_blob_that_arrives_altered_is_refused_and_not_kept(tmp_path: Path) -> None:
    source = SourceRegistry(tmp_path)
    source.tampered = True
    client, _ = registry_of(source)
    cache = LayerCache(tmp_path / "cache")
    with pytest.raises(CommandFailed, match=r"arrived with sha256"):
        pull_base(client, "docker.test/library/python:3.11-slim", cache)
    assert not any(p.is_file() for p in (cache.root / "blobs").rglob("*"))


def test_a_base_without_this_machine_s_platform_is_named(tmp_path: Path) -> None:
    source = SourceRegistry(tmp_path, platforms=("s390x",))
    client, _ = registry_of(source)
    with pytest.raises(ConfigError) as err:
        pull_base(client, "docker.test/library/python:3.11-slim", LayerCache(tmp_path / "c"))
    assert f"has no linux/{ARCH} image (it offers linux/s390x)" in str(err.value)


def test_base_blobs_in_the_push_registry_are_mounted_not_uploaded(tmp_path: Path) -> None:
    image = an_image(tmp_path)
    base_layer = image.layers[0].digest
    registry = FakeRegistry()
    registry.mountable = {base_layer}
    transport = FakeTransport(registry)
    client = RegistryClient("reg.test", session=session_with(transport))
    mounted = type(image)(image.config, image.manifest, image.layers, mounts={
        base_layer: "kiln/python"})  # fmt: skip

    pushed = push_image(client, "acme/base", "0.2.1", mounted)
    assert pushed.mounted == (base_layer,)
    assert base_layer not in pushed.uploaded
    query = f"mount={base_layer.replace(':', '%3A')}&from=kiln%2Fpython"
    assert f"POST https://reg.test/v2/acme/base/blobs/uploads/?{query}" in transport.lines()


def _no_engine() -> docker.DockerClient:
    raise AssertionError("a build asks no engine")


def test_a_registry_base_is_read_by_digest_and_a_tag_alone_is_refused(tmp_path: Path) -> None:
    source = SourceRegistry(tmp_path)
    client, _ = registry_of(source)
    builder = KilnBuilder(
        _no_engine, tmp_path / "cache", cast(Any, None), base_registry=lambda host: client
    )
    pinned = f"docker.test/library/python@{sha(source.index)}"
    assert builder.base(pinned).image_id == sha(source.config)
    with pytest.raises(ConfigError) as err:
        builder.base("docker.test/library/python:3.11-slim")
    assert "is not pinned by digest; run `kiln lock` to pin it" in str(err.value)
