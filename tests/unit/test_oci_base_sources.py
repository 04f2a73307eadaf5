"""Where kiln's builder takes a base from: its registry (blobs as published, mounted on
push), or the local engine (and the copy read before, when the engine is away)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any, cast

import docker
import pytest
import requests

from kiln._errors import CommandFailed, ConfigError, ServiceUnavailable
from kiln._images.oci.base import from_registry, load_base, pull_base
from kiln._images.oci.builder import KilnBuilder
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.compress import GZIP
from kiln._images.oci.push import push_image
from kiln._images.oci.rootfs import host_machine
from kiln._servers.registry import RegistryClient
from tests.unit.test_credentials import FakeTransport, session_with
from tests.unit.test_oci_build import FakeEngine, FakeImage, a_layer_tar, docker_save
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


def test_which_references_are_read_from_a_registry() -> None:
    assert from_registry("docker.test/library/python:3.11-slim")
    assert from_registry("127.0.0.1:5000/kiln/python:3.11")
    assert from_registry("localhost/python:3.11")
    assert from_registry("python:3.11-slim@sha256:" + "a" * 64)
    assert not from_registry("python:3.11-slim")  # Docker Hub by name: the engine's copy
    assert not from_registry("kiln-local/python:3.11-bookworm")


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
    assert f"POST http://reg.test/v2/acme/base/blobs/uploads/?{query}" in transport.lines()


def _no_engine() -> docker.DockerClient:
    raise ServiceUnavailable("Docker Engine is not reachable at unix:///nowhere (no such socket)")


def test_without_the_engine_the_base_read_before_is_used_and_said(tmp_path: Path) -> None:
    saved, image_id = docker_save(a_layer_tar(tmp_path))
    cache_dir = tmp_path / "cache"
    engine = cast(docker.DockerClient, FakeEngine(FakeImage(saved, image_id)))
    read = load_base(engine, "kiln-local/python:3.11", LayerCache(cache_dir), GZIP)

    said: list[str] = []
    builder = KilnBuilder(_no_engine, cache_dir, cast(Any, None), log=said.append)
    assert builder.base("kiln-local/python:3.11") == read
    assert said == [
        (
            "    base kiln-local/python:3.11: the Docker Engine is not reachable; using the "
            f"copy read before ({image_id[:19]}...)"
        )
    ]
    with pytest.raises(ConfigError, match="but the lock pins sha256:other"):
        builder.base("kiln-local/python:3.11", pinned_id="sha256:other")


def test_without_the_engine_or_a_copy_the_error_says_what_to_do(tmp_path: Path) -> None:
    builder = KilnBuilder(_no_engine, tmp_path / "cache", cast(Any, None))
    with pytest.raises(ServiceUnavailable) as err:
        builder.base("kiln-local/python:3.11")
    assert "has no copy of it yet: start the engine once, or pin a base that lives in a" in str(
        err.value
    )
