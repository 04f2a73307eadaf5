"""The smoke check of this repo's ``base`` image built for linux/arm64 on this amd64
machine (no binfmt handler, no engine): under ``qemu-aarch64-static`` its own python3
imports kfp and imgproc (and reports aarch64), a module the image lacks fails naming it;
with qemu "absent" the static check passes on the image and fails on a copy whose
numpy has lost a library it links, as the real run does."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from kiln._errors import CommandFailed
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.smoke import ContainerRunner, Run, smoke_check
from kiln._images.oci.smoke_foreign import (
    QemuContainers,
    StaticContainers,
    runner_for,
    unpacked,
)
from tests.e2e.conftest import KilnCache, OsPins, _unavailable
from tests.e2e.multiarch import two_platform_base
from tests.oci_layers import F, layer

pytestmark = pytest.mark.e2e

ARM = "linux/arm64"
REF = "127.0.0.1:5000/acme/base@sha256:" + "0" * 64
MODULES = ("kfp", "imgproc")
SITE = "usr/local/lib/python3.11/dist-packages"


@pytest.fixture(scope="module")
def arm64(
    os_pins: OsPins, kiln_cache: KilnCache, tmp_path_factory: pytest.TempPathFactory
) -> BuiltImage:
    """The base image built for linux/arm64 alone (one cold build)."""
    base = two_platform_base(os_pins, kiln_cache, tmp_path_factory.mktemp("smoke"))
    started = time.monotonic()
    image = base.build(ARM)
    print(f"\narm64 base: {base.figures}; cold build {time.monotonic() - started:.1f} s")
    return image


class Recording:
    def __init__(self, runner: ContainerRunner) -> None:
        self.runner = runner
        self.runs: list[Run] = []

    def __call__(self, image: str, command: Sequence[str]) -> Run:
        run = self.runner(image, command)
        self.runs.append(run)
        return run


def _without(image: BuiltImage, path: str, tmp_path: Path) -> BuiltImage:
    """``image`` with one more layer whiting out the file at ``path``."""
    folder, _, name = path.lstrip("/").rpartition("/")
    whiteout = layer(tmp_path, "damage", (f"{folder}/.wh.{name}", F, b"", ""))
    return dataclasses.replace(image, layers=(*image.layers, whiteout))


def _timed(runner: ContainerRunner, modules: Sequence[str]) -> float:
    started = time.monotonic()
    smoke_check(runner, REF, modules)
    return time.monotonic() - started


def test_arm64_image_smoke_checked_under_qemu_and_statically(
    arm64: BuiltImage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if (qemu_path := shutil.which("qemu-aarch64-static")) is None:
        _unavailable("needs qemu-aarch64-static (Debian's qemu-user-static)")
    unpack = tmp_path / "unpack"
    unpack.mkdir()
    started = time.monotonic()
    with unpacked(arm64, REF, unpack) as root:
        unpacking = time.monotonic() - started
        (gfortran,) = root.glob(f"{SITE}/numpy.libs/libgfortran*")  # numpy's openblas needs it
        # the same image but for numpy's grafted libgfortran
        damaged = _without(arm64, gfortran.relative_to(root).as_posix(), tmp_path)
    notes: list[str] = []
    qemu = runner_for(ARM, arm64, note=notes.append, tmp=unpack)
    assert isinstance(qemu, QemuContainers)
    assert notes == []
    recording = Recording(qemu)
    emulated = _timed(recording, MODULES)
    (run,) = recording.runs
    result = json.loads(run.output.splitlines()[-1])
    assert result["environment"]["platform_machine"] == "aarch64"
    assert result["failed"] == {}
    assert {"kfp", "numpy", "acme-imgproc"} <= set(result["distributions"])
    with pytest.raises(CommandFailed) as failed:
        smoke_check(QemuContainers(damaged, ARM, qemu_path, tmp=unpack), REF, (*MODULES, "scipy"))
    assert re.match(
        rf"(?s)smoke check of {re.escape(REF)} failed: import imgproc failed:.*libgfortran.*"
        r"import scipy failed:.*No module named 'scipy'",
        str(failed.value),
    )
    assert list(unpack.iterdir()) == []  # each run's rootfs removed

    static = runner_for(ARM, arm64, note=notes.append, search_path="", tmp=unpack)
    assert isinstance(static, StaticContainers)
    (note,) = notes
    assert "qemu-aarch64-static is not installed" in note
    assert "`sudo apt-get install qemu-user-static`" in note
    recording = Recording(static)
    checked = _timed(recording, MODULES)
    (run,) = recording.runs
    result = json.loads(run.output.splitlines()[-1])
    assert result["failed"] == {}
    assert result["environment"]["platform_machine"] == "aarch64"
    assert result["environment"]["python_full_version"].startswith("3.11.")
    assert set(result["distributions"]) == {"kfp", "numpy", "acme-imgproc"}
    assert "ELF files under /usr/local/lib/python3.11/dist-packages" in run.output
    with pytest.raises(CommandFailed) as failed:
        smoke_check(StaticContainers(damaged, ARM, tmp=unpack), REF, (*MODULES, "scipy"))
    assert re.match(
        rf"(?s)smoke check of {re.escape(REF)} failed: import numpy failed:.*"
        rf"numpy.libs/libscipy_openblas.* needs {gfortran.name}, which is in none of.*"
        r"import scipy failed:.*no package or module scipy",
        str(failed.value),
    )
    assert list(unpack.iterdir()) == []
    with capsys.disabled():
        print(
            f"\narm64 base smoke check: under qemu {emulated:.1f} s, static {checked:.1f} s "
            f"(each unpacks the image: {unpacking:.1f} s)"
        )
