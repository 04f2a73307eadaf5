"""This repo's ``base`` image (the imgproc helper, numpy) built for linux/amd64 and
linux/arm64 on this amd64 machine, nothing run emulated, from a copy of the repo as
committed (``platforms = ["linux/amd64", "linux/arm64"]``, ``architectures = ["amd64",
"arm64"]``, its locks for both): the helper layer is the same bytes in both images, the OS and
third-party layers are each architecture's, the arm64 config says arm64, and the
index over both has a digest known before any push. Then the arm64 rootfs, unpacked,
runs its own python3 under ``qemu-aarch64-static`` (the rootfs as ELF prefix; no binfmt
handler) and computes with the helper what the amd64 rootfs's python3 computes."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from kiln._images.oci.image import BuiltImage
from kiln._images.oci.index import BuiltIndex
from kiln._images.oci.loader import loader_argv
from kiln._images.oci.multiarch import build_index
from tests.e2e.conftest import KilnCache, OsPins, _unavailable
from tests.e2e.multiarch import PLATFORMS, two_platform_base

pytestmark = pytest.mark.e2e

QEMU = shutil.which("qemu-aarch64-static")
# What each platform's python3 computes with the helper: the same numbers on both.
_COMPUTE = """\
import hashlib, platform, imgproc, kfp, numpy as np
image = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 37 % 4096).astype(np.uint16)
out = [imgproc.equalize_adaptive(image, tiles=(4, 3)), imgproc.stretch_contrast(image),
       imgproc.adjust_gamma(image.astype(np.float64) / 4095, 0.5)]
print(platform.machine(), np.__version__,
      hashlib.sha256(b"".join(a.tobytes() for a in out)).hexdigest())
"""
_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "_KFP_RUNTIME": "true",
        "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip


def _unpack(image: BuiltImage, root: Path) -> Path:
    for blob in image.layers:  # no whiteouts: kiln's layers only add
        with gzip.open(blob.path) as stream, tarfile.open(fileobj=stream) as tar:
            tar.extractall(root, filter="tar")
    return root


def _run(argv: list[str]) -> str:
    proc = subprocess.run(
        [*argv, "-c", _COMPUTE], capture_output=True, text=True, check=False, timeout=180, env=_ENV
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _digests(image: BuiltImage) -> list[str]:
    return [d["digest"] for d in json.loads(image.manifest)["layers"]]


@dataclasses.dataclass(frozen=True)
class Built:
    images: dict[str, BuiltImage]  # per platform, built cold
    index: BuiltIndex  # built again, warm
    figures: str


def _build_both(os_pins: OsPins, kiln_cache: KilnCache, tmp_path: Path) -> Built:
    """The repo copied; base built for each platform on a cold layer cache (arm64 after
    amd64, as a release would), then the index (warm)."""
    base = two_platform_base(os_pins, kiln_cache, tmp_path)
    cold: dict[str, float] = {}
    images: dict[str, BuiltImage] = {}
    for platform in PLATFORMS:
        started = time.monotonic()
        images[platform] = base.build(platform)
        cold[platform] = time.monotonic() - started
    started = time.monotonic()
    index = build_index(base.builder, base.inputs, base.wheelhouses, source=None)
    warm = time.monotonic() - started
    sizes = {p: sum(b.size for b in i.layers) for p, i in images.items()}
    figures = (
        base.figures
        + "; cold build " + ", ".join(f"{p} {s:.1f} s" for p, s in cold.items())
        + f"; warm index of both {warm:.2f} s; compressed bytes "
        + ", ".join(f"{p} {s}" for p, s in sizes.items())
    )  # fmt: skip
    return Built(images, index, figures)


def test_base_for_amd64_and_arm64_shares_the_helper_layer_and_computes_the_same(
    os_pins: OsPins, kiln_cache: KilnCache, tmp_path: Path
) -> None:
    if QEMU is None:
        _unavailable("needs qemu-aarch64-static (Debian's qemu-user-static)")
    built = _build_both(os_pins, kiln_cache, tmp_path)
    index = built.index
    amd, arm = built.images["linux/amd64"], built.images["linux/arm64"]
    assert [i.digest for _, i in index.images] == [amd.digest, arm.digest]
    assert [m["platform"] for m in json.loads(index.index)["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    ]
    amd_layers, arm_layers = _digests(amd), _digests(arm)
    assert len(amd_layers) == len(arm_layers) == 3  # OS, third-party, helpers
    assert amd_layers[2] == arm_layers[2]  # the helper layer: identical bytes
    assert amd_layers[0] != arm_layers[0]
    assert amd_layers[1] != arm_layers[1]
    config = json.loads(arm.config)
    assert (config["architecture"], config["variant"]) == ("arm64", "v8")
    assert json.loads(amd.config)["architecture"] == "amd64"

    amd_root = _unpack(amd, tmp_path / "amd64")
    arm_root = _unpack(arm, tmp_path / "arm64")
    assert (arm_root / "usr/bin/python3.11").read_bytes()[18] == 183  # EM_AARCH64
    amd_out = _run(loader_argv(amd_root, "/usr/bin/python3", "amd64 rootfs"))
    started = time.monotonic()
    assert QEMU is not None
    arm_out = _run([QEMU, "-L", str(arm_root), str(arm_root / "usr/bin/python3")])
    emulated = time.monotonic() - started
    assert amd_out.split()[0] == "x86_64"
    assert arm_out.split()[0] == "aarch64"
    assert arm_out.split()[1:] == amd_out.split()[1:]  # numpy's version, the helper's result
    helper_size = next(b.size for b in arm.layers if b.digest == arm_layers[2])
    print(
        f"\nbase for {', '.join(PLATFORMS)}: {built.figures} (helper layer {helper_size}); "
        f"arm64 python3 under qemu {emulated:.1f} s; index {index.digest}"
    )
