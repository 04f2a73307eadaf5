"""This repo's ``base`` image (the imgproc helper, numpy) made ready to build for
linux/amd64 and linux/arm64 on this amd64 machine: a copy of the repo (made for both
platforms and architectures, as committed), each platform's wheelhouse resolved, a
builder over the two-architecture OS layers. Shared by the multi-arch build test and
the foreign smoke check's."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, cast

import docker

from kiln._debian.lock import read_os_lock
from kiln._images.inputs import ImageInputs, OsBase, image_inputs
from kiln._images.oci.builder import KilnBuilder
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.multiarch import platform_wheelhouses
from kiln._lock.format import read_lock
from kiln._wheels.build import build_wheel
from kiln._wheels.wheelhouse import PipDownload, SimplePages, Wheelhouse, resolve_wheelhouse
from kiln._workspace.discovery import discover
from tests.e2e.conftest import KilnCache, OsPins, copy_project

PLATFORMS = ("linux/amd64", "linux/arm64")


@dataclasses.dataclass(frozen=True)
class TwoPlatformBase:
    builder: KilnBuilder
    inputs: ImageInputs  # the first platform's
    wheelhouses: dict[str, Wheelhouse]  # per platform
    figures: str  # wheelhouse times

    def build(self, platform: str) -> BuiltImage:
        one = dataclasses.replace(self.inputs, wheelhouse=self.wheelhouses[platform])
        return self.builder.build(one, source=None, platform=platform)[0]


def two_platform_base(os_pins: OsPins, kiln_cache: KilnCache, tmp_path: Path) -> TwoPlatformBase:
    """The repo copied into ``tmp_path`` as committed (both platforms, the image lock
    for both), the helper built, each platform's wheelhouse resolved."""
    root = tmp_path / "repo"
    copy_project(root, os_pins, kiln_cache)
    ws = discover(root)
    image = ws.image("base")
    assert image.platforms == PLATFORMS
    lock = read_lock(image)
    assert lock.platforms == ("x86_64-manylinux_2_28", "aarch64-manylinux_2_28")
    helper = build_wheel(ws.helper("imgproc"), tmp_path / "helpers")
    pages = [(ws.upstream_index, SimplePages(ws.upstream_index))]
    seconds: dict[str, float] = {}

    def resolve(platform: str) -> Wheelhouse:
        started = time.monotonic()
        found = resolve_wheelhouse(
            ws, image, [helper], lock=lock, pages=pages, download=PipDownload(),
            platform=platform,
        )  # fmt: skip
        seconds[platform.partition("-")[0]] = time.monotonic() - started
        return found

    wheelhouses = platform_wheelhouses(image, resolve)
    for platform, arch in zip(PLATFORMS, ("x86_64", "aarch64"), strict=True):
        (numpy,) = (w for w in wheelhouses[platform].third_party if w.name == "numpy")
        assert numpy.filename.endswith(f"_{arch}.whl")

    def no_engine() -> docker.DockerClient:
        raise AssertionError("a build needs no engine")

    builder = KilnBuilder(no_engine, tmp_path / "oci", cast(Any, None), os_layers=os_pins.layers)
    inputs = image_inputs(
        image, registry="127.0.0.1:5000", org="acme", base=OsBase.of(read_os_lock(root), image),
        wheelhouse=wheelhouses["linux/amd64"],
    )  # fmt: skip
    figures = "wheelhouse " + ", ".join(f"{p} {s:.1f} s" for p, s in seconds.items())
    return TwoPlatformBase(builder, inputs, dict(wheelhouses), figures)
