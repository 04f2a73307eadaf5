"""Packages mode on an arm64 node, without one: the released packages base's linux/arm64
image, copied out of the registry by skopeo and unpacked by umoci, runs its own pip
under ``qemu-aarch64-static`` with the arguments a released YAML gives a pod's ``pip
install``. pip evaluates each item's ``platform_machine`` marker there (aarch64), checks
every hash (``--require-hashes``) and installs numpy's and pandas' aarch64 wheels (the
x86_64 items ignored); numpy then imports and computes under qemu. A changed hash on
the aarch64 numpy item stops the install. (On amd64 the same YAML's pod installs the
x86_64 files for real: tests/e2e/test_examples.py's table_quality run.)"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import required_tool
from tests.e2e.tools import Repo

pytestmark = pytest.mark.e2e

COMPONENT = "make_sample_table"  # numpy and pandas: one file per machine; the rest pure
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}
# Run by the image's python3 after the install: the machine, the installed wheels' tags,
# and a result computed with them.
CHECK = """
import glob, json, platform, sys
sys.path.insert(0, sys.argv[1])
import numpy
tags = {}
for wheel in glob.glob(sys.argv[1] + "/*.dist-info/WHEEL"):
    name = wheel.split("/")[-2].split("-")[0]
    tags[name] = [x[5:] for x in open(wheel).read().splitlines() if x.startswith("Tag: ")]
print(json.dumps({
    "machine": platform.machine(), "tags": tags, "numpy": numpy.__file__,
    "sum": float((numpy.arange(10.0) ** 2).sum()),
}))
"""


def _pod_install(repo: Repo) -> tuple[str, list[str]]:
    """The component's image and what its pod's command gives ``python3 -m pip install``."""
    path = repo.root / "pipelines" / "components" / "generated" / f"{COMPONENT}.yaml"
    spec = yaml.safe_load(path.read_text())
    (executor,) = spec["deploymentSpec"]["executors"].values()
    container = executor["container"]
    script = container["command"][2]
    (line,) = [x for x in script.splitlines() if " -m pip install " in x]
    args = line.split(" -m pip install ", 1)[1].split(' && "$0"', 1)[0]
    return container["image"], shlex.split(args)


def _items(args: list[str], name: str) -> list[str]:
    return [a for a in args if a.startswith(f"{name} @ ")]


def _elf_machine(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[18:20], "little")


class Arm64:
    """``ref``'s linux/arm64 image unpacked under ``folder``: its python3 under qemu."""

    def __init__(self, ref: str, folder: Path) -> None:
        skopeo, umoci, qemu = (
            required_tool("skopeo"),
            required_tool("umoci"),
            required_tool("qemu-aarch64-static"),
        )
        layout, bundle = folder / "oci", folder / "bundle"
        subprocess.run(
            [skopeo, "copy", "--quiet", "--src-tls-verify=false", "--override-os=linux",
             "--override-arch=arm64", f"docker://{ref}", f"oci:{layout}:arm64"],
            check=True,
        )  # fmt: skip
        subprocess.run(
            [umoci, "unpack", "--image", f"{layout}:arm64", str(bundle)],
            check=True, capture_output=True,
        )  # fmt: skip
        root = bundle / "rootfs"
        config = json.loads((bundle / "config.json").read_text())
        self.env = dict(e.partition("=")[::2] for e in config["process"]["env"])
        self.python = [qemu, "-L", str(root), str(root / "usr" / "bin" / "python3.11")]
        self.folder = folder

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.python, *args],
            capture_output=True, text=True, env=self.env, cwd=self.folder, check=False,
        )  # fmt: skip

    def pip_install(self, target: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
        """The pod's install into ``target``, a folder outside the rootfs (qemu's -L
        would not redirect a path the rootfs lacks); --no-compile: compiling every .py
        under emulation is most of the time, and no part of what is checked."""
        return self.run("-m", "pip", "install", "--no-compile", "--target", str(target), *args)


def test_a_pods_pip_installs_the_aarch64_files_on_arm64_and_checks_their_hashes(
    repo: Repo, released: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, args = _pod_install(repo)
    assert "--require-hashes" in args
    assert "--no-deps" in args
    numpy_items = _items(args, "numpy")
    assert [i.rpartition(" ; ")[2] for i in numpy_items] == [
        'platform_machine == "x86_64"',
        'platform_machine == "aarch64"',
    ]
    assert len(_items(args, "pandas")) == 2
    assert [";" in i for i in _items(args, "kfp")] == [False]  # pure: one item

    started = time.monotonic()
    arm64 = Arm64(ref, tmp_path)
    target = tmp_path / "site"
    pip = arm64.pip_install(target, args)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    check = arm64.run("-c", CHECK, str(target))
    assert check.returncode == 0, check.stderr
    seconds = time.monotonic() - started
    found = json.loads(check.stdout)
    assert found["machine"] == "aarch64"
    assert found["tags"]["numpy"] == [
        "cp311-cp311-manylinux_2_27_aarch64",
        "cp311-cp311-manylinux_2_28_aarch64",
    ]
    assert found["tags"]["pandas"]
    assert all(t.endswith("_aarch64") for t in found["tags"]["pandas"])
    assert found["tags"]["kfp"] == ["py3-none-any"]
    for lib in ("numpy/_core/_multiarray_umath.*.so", "pandas/_libs/lib.*.so"):
        (path,) = target.glob(lib)
        assert _elf_machine(path) == ELF_MACHINE["aarch64"], lib
    assert found["numpy"].startswith(str(target))
    assert found["sum"] == 285.0

    # The aarch64 numpy item with another hash: pip refuses the file, naming its hash.
    item = numpy_items[1]
    url, _, sha = item.partition(" ; ")[0].rpartition("#sha256=")
    bad = f'{url}#sha256={"0" * 64} ; platform_machine == "aarch64"'
    refused = arm64.pip_install(tmp_path / "refused", [bad if a == item else a for a in args])
    assert refused.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in refused.stderr, refused.stderr
    assert sha in refused.stderr
    assert not (tmp_path / "refused" / "numpy").exists()
    with capsys.disabled():
        print(f"\npackages mode, {COMPONENT} on arm64 under qemu: installed in {seconds:.1f} s")
