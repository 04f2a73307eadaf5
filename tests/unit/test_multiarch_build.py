"""An image built for each of its platforms by KilnBuilder: that architecture's OS base,
that platform's third-party wheels, the very helper layer of the first platform (its
bytecode compiled by this machine's Python of the same OS lock), a config that says the
architecture; and the OCI image index over them, its digest known before any push."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import docker
import pytest

from kiln._debian.lock import ArchSets, DebPin, LayerPin, OsLock, PackageSet
from kiln._errors import ConfigError
from kiln._images.inputs import OsBase, image_inputs
from kiln._images.oci.base_image import BaseImage
from kiln._images.oci.builder import KilnBuilder
from kiln._images.oci.cache import Blob, LayerCache
from kiln._images.oci.index import Platform
from kiln._images.oci.multiarch import build_index, platform_wheelhouses
from kiln._images.os_tree import host_architecture
from kiln._util.files import sha256_file
from kiln._wheels.build import BuiltWheel
from kiln._wheels.wheelhouse import WheelFile, Wheelhouse
from kiln._workspace.discovery import discover
from kiln._workspace.model import Image
from tests import factory
from tests.debian_sample import bookworm_lock
from tests.unit.test_oci_install import HOST, HOST_PYTHON, TAG, make_wheel
from tests.unit.test_oci_push import FakeRegistry

pytestmark = pytest.mark.skipif(host_architecture() != "amd64", reason="arm64 is foreign here")
PLATFORMS = ("linux/amd64", "linux/arm64")
ROOT = "/cache/rootfs/x"


def _layer(arch: str) -> LayerPin:
    return LayerPin(
        "sha256:" + hashlib.sha256(f"{arch} tar".encode()).hexdigest(),
        "sha256:" + hashlib.sha256(f"{arch} gz".encode()).hexdigest(),
        1000,
    )


def _pin(arch: str) -> DebPin:
    return DebPin(
        "libc6", "2.36-9+deb12u9", arch, "glibc", "debian",
        f"pool/main/g/glibc/libc6_2.36-9+deb12u9_{arch}.deb", 100, "a" * 64,
    )  # fmt: skip


def two_arch_lock(tmp_path: Path) -> OsLock:
    lock = bookworm_lock(
        tmp_path / "os.lock", PackageSet((_pin("amd64"),), (), _layer("amd64")), {}
    )
    arm = ArchSets(PackageSet((_pin("arm64"),), (), _layer("arm64")))
    return dataclasses.replace(lock, more={"arm64": arm})


class FakeOsLayers:
    """kiln's OS base of each architecture: its layer as the lock pins it, its config."""

    def __init__(self) -> None:
        self.asked: list[str | None] = []

    def read_ahead(
        self, lock: OsLock, extras: str | None = None, *, architecture: str | None = None
    ) -> None:
        self.asked.append(f"ahead {architecture}")

    def base_image(
        self, lock: OsLock, extras: str | None = None, *, architecture: str | None = None
    ) -> BaseImage:
        self.asked.append(architecture)
        one = lock.of(architecture or lock.architecture)
        pin = one.os.layer
        assert pin is not None
        blob = Blob("application/vnd.oci.image.layer.v1.tar+gzip", pin.digest, pin.size,
                    pin.diff_id, Path("/nonexistent"))  # fmt: skip
        config: dict[str, Any] = {
            "architecture": one.architecture, "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"]}, "rootfs": {"diff_ids": [pin.diff_id]},
        }  # fmt: skip
        if one.architecture == "arm64":
            config["variant"] = "v8"
        image_id = "sha256:" + hashlib.sha256(json.dumps(config).encode()).hexdigest()
        return BaseImage(lock.name, image_id, config, (blob,))


class FakePython:
    """A base's python3 as kiln runs it: answers the probe with Debian's layout, compiles
    with kiln's own interpreter; its identity is its base's."""

    image_python = "/usr/bin/python3"
    root = Path(ROOT)

    def __init__(self, base: BaseImage) -> None:
        self.identity = f"fake python {base.image_id}"

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        if "sysconfig" in script:  # the probe
            site = f"{ROOT}/usr/local/lib/python3.11/dist-packages"
            paths = {"purelib": site, "platlib": site, "scripts": f"{ROOT}/usr/local/bin",
                     "data": f"{ROOT}/usr/local",
                     "include": f"{ROOT}/usr/include/python3.11"}  # fmt: skip
            return json.dumps({"python": HOST, "cache_tag": TAG, "paths": paths})
        return HOST_PYTHON.run(script, args, stdin=stdin, env=env)

    def image_path(self, path: str) -> str:
        return path[len(ROOT) :]


@dataclasses.dataclass
class Setup:
    image: Image
    lock: OsLock
    helper: BuiltWheel
    numpy: dict[str, WheelFile]

    def wheelhouse(self, platform: str) -> Wheelhouse:
        arch = platform.partition("-")[0]
        return Wheelhouse("base", ("numpy==1.0",), (self.numpy[arch],), (self.helper,))

    def builder(
        self, cache: Path, pythons: list[str] | None = None
    ) -> tuple[KilnBuilder, FakeOsLayers]:
        layers = FakeOsLayers()

        def python_of(base: BaseImage, _cache: LayerCache) -> Any:
            if pythons is not None:
                pythons.append(base.config["architecture"])
            return FakePython(base)

        def no_engine() -> docker.DockerClient:
            raise AssertionError("a build needs no engine")

        builder = KilnBuilder(
            no_engine, cache, cast(Any, FakeRegistry()), os_layers=lambda: cast(Any, layers),
            python_of=python_of,
        )  # fmt: skip
        return builder, layers

    def inputs(self) -> Any:
        base = OsBase(self.lock)
        return image_inputs(self.image, registry="r.invalid", org="acme", base=base,
                            wheelhouse=self.wheelhouse("x86_64"))  # fmt: skip


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    ws = discover(factory.sample(tmp_path / "repo"))
    image = dataclasses.replace(ws.image("base"), platforms=PLATFORMS)
    wheels = tmp_path / "wheels"
    helper_path = make_wheel(wheels, "acme-imgproc", "0.1.0",
                             {"imgproc/__init__.py": b"SIZES = {1, 2, 3}\n"})  # fmt: skip
    helper = BuiltWheel("imgproc", "acme-imgproc", "0.1.0", helper_path, sha256_file(helper_path))
    numpy = {}
    for arch in ("x86_64", "aarch64"):
        path = make_wheel(wheels / arch, "numpy", "1.0",
                          {"numpy/__init__.py": f"ARCH = {arch!r}\n".encode(),
                           f"numpy/_core.{arch}.so": arch.encode()},
                          tag=f"py3-none-manylinux_2_28_{arch}")  # fmt: skip
        numpy[arch] = WheelFile("numpy", "1.0", path, sha256_file(path))
    return Setup(image, two_arch_lock(tmp_path), helper, numpy)


def _manifest(image: Any) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(image.manifest))


def test_each_platform_has_its_os_and_third_party_layers_and_the_same_helper_layer(
    setup: Setup, tmp_path: Path
) -> None:
    # Each platform built with a cache of its own: the same helper bytes are made again,
    # not found in a cache.
    pythons: list[str] = []
    amd_builder, _ = setup.builder(tmp_path / "amd-cache", pythons)
    arm_builder, arm_layers = setup.builder(tmp_path / "arm-cache", pythons)
    inputs = setup.inputs()
    amd, _base = amd_builder.build(inputs, source=None)
    arm_inputs = dataclasses.replace(inputs, wheelhouse=setup.wheelhouse("aarch64"))
    arm, arm_base = arm_builder.build(arm_inputs, source=None, platform="linux/arm64")

    amd_layers = [d["digest"] for d in _manifest(amd)["layers"]]
    arm_layers_ = [d["digest"] for d in _manifest(arm)["layers"]]
    assert len(amd_layers) == len(arm_layers_) == 3  # OS, third-party, helpers
    assert amd_layers[0] == _layer("amd64").digest
    assert arm_layers_[0] == _layer("arm64").digest
    assert amd_layers[1] != arm_layers_[1]  # numpy's x86_64 and aarch64 wheels
    assert amd_layers[2] == arm_layers_[2]  # the helper layer: the same bytes
    helpers = next(b for b in arm.layers if b.digest == arm_layers_[2])
    amd_helpers = next(b for b in amd.layers if b.digest == amd_layers[2])
    assert helpers.path.read_bytes() == amd_helpers.path.read_bytes()
    # The arm64 image is arm64's base, its bytecode compiled by the amd64 base's Python.
    assert arm_layers.asked == ["arm64", "amd64"]
    assert pythons == ["amd64", "amd64"]
    config = json.loads(arm.config)
    assert (config["architecture"], config["variant"], config["os"]) == ("arm64", "v8", "linux")
    assert "variant" not in json.loads(amd.config)
    labels = config["config"]["Labels"]
    assert labels["org.kiln.os"] == "debian bookworm 12.8 arm64"
    assert labels["org.kiln.os-layers"] == _layer("arm64").digest
    assert (
        json.loads(amd.config)["config"]["Labels"]["org.kiln.os-layers"] == _layer("amd64").digest
    )
    assert arm_base.config["architecture"] == "arm64"


def test_the_first_platform_builds_as_an_image_of_one_platform_does(
    setup: Setup, tmp_path: Path
) -> None:
    single = dataclasses.replace(
        setup.inputs(), image=dataclasses.replace(setup.image, platforms=PLATFORMS[:1])
    )
    alone, _ = setup.builder(tmp_path / "one")[0].build(single, source="https://x")
    first, _ = setup.builder(tmp_path / "two")[0].build(
        setup.inputs(), source="https://x", platform="linux/amd64"
    )
    assert first.manifest == alone.manifest
    assert first.config == alone.config


def test_the_index_lists_each_platform_s_manifest_its_digest_known_before_any_push(
    setup: Setup, tmp_path: Path
) -> None:
    builder, layers = setup.builder(tmp_path / "cache")
    wheelhouses = platform_wheelhouses(setup.image, setup.wheelhouse)
    assert {p: w.third_party[0].filename for p, w in wheelhouses.items()} == {
        "linux/amd64": setup.numpy["x86_64"].filename,
        "linux/arm64": setup.numpy["aarch64"].filename,
    }
    index = build_index(builder, setup.inputs(), wheelhouses, source=None)
    # arm64's .debs are read ahead, before amd64 is built; then each base in turn.
    assert layers.asked == ["ahead arm64", None, "arm64", "amd64"]
    doc = json.loads(index.index)
    assert [m["platform"] for m in doc["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    ]
    amd, _ = setup.builder(tmp_path / "again")[0].build(setup.inputs(), source=None)
    assert index.image(Platform.parse("linux/amd64")).digest == amd.digest
    assert doc["manifests"][0]["digest"] == amd.digest
    again = build_index(builder, setup.inputs(), wheelhouses, source=None)
    assert again.digest == index.digest == "sha256:" + hashlib.sha256(index.index).hexdigest()
    with pytest.raises(ValueError, match=r"base: no wheelhouse for linux/arm64"):
        build_index(
            builder, setup.inputs(), {"linux/amd64": wheelhouses["linux/amd64"]}, source=None
        )


def test_a_platform_the_image_is_not_made_for_or_on_a_registry_base_is_refused(
    setup: Setup, tmp_path: Path
) -> None:
    builder, _ = setup.builder(tmp_path / "cache")
    single = dataclasses.replace(
        setup.inputs(), image=dataclasses.replace(setup.image, platforms=PLATFORMS[:1])
    )
    with pytest.raises(
        ConfigError, match=r"made for linux/amd64, not linux/arm64; add it to platforms"
    ):
        builder.build(single, source=None, platform="linux/arm64")
    on_registry = dataclasses.replace(setup.inputs(), base="python@sha256:" + "b" * 64)
    with pytest.raises(
        ConfigError, match=r"builds linux/arm64 on its OS base only, not yet on a registry base"
    ):
        builder.build(on_registry, source=None, platform="linux/arm64")


def test_the_layer_keys_name_the_wheelhouse_s_hashes_without_reading_a_wheel_again(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wheelhouse hashed each wheel when it was read (1085 wheels over 11 images at
    # N=500, hashed a second time for the layer keys).
    builder = setup.builder(tmp_path / "cache")[0]
    first, _ = builder.build(setup.inputs(), source=None)

    def no_hash(path: Path) -> str:
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr("kiln._images.oci.assemble.sha256_file", no_hash)
    again, _ = builder.build(setup.inputs(), source=None)
    assert (again.manifest, again.config) == (first.manifest, first.config)
    fresh, _ = setup.builder(tmp_path / "fresh")[0].build(setup.inputs(), source=None)
    assert fresh.manifest == first.manifest  # built afresh: the same bytes
