"""The arm64 OS layer from Debian's real archive, written on this amd64 machine with
nothing run emulated, then checked against what arm64's own programs make.

The committed lock (amd64 and arm64) is locked again from its amd64 part alone for
``architectures = ["amd64", "arm64"]``: the amd64 part must not move, the arm64
closure must have the same versions, and the result, each layer built again from the
cached .debs, is the committed lock byte for byte (what `kiln lock` wrote when this
repo added arm64).
Then, under ``qemu-aarch64-static`` (the ELF prefix is the unpacked layer; no binfmt
handler is needed), the layer's own ``ldconfig`` must write the same
``/etc/ld.so.cache`` as kiln did, its own ``python3`` must compile the standard library
to the same ``.pyc`` as the amd64 Python kiln used, and it must import what a component
needs. Last, an OCI image index over the two OS base images is pushed to a
registry: its digest is the one known before the push, ``skopeo inspect --raw``
lists both platforms, and ``docker pull --platform linux/arm64`` of it gets arm64."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from kiln._debian.archive import Indexes, Mirrors
from kiln._debian.lock import OsLock, read_os_lock, render
from kiln._errors import ServiceUnavailable
from kiln._images.oci.assemble import assemble
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.index import image_index
from kiln._images.oci.push import push_image
from kiln._images.os_layers import OsLayers
from kiln._locking.debian import lock_os
from kiln._servers.registry import RegistryClient
from kiln._util.cmd import call
from kiln._workspace.discovery import discover
from tests.e2e.conftest import OsPins, _unavailable
from tests.e2e.runwide import untag
from tests.e2e.tools import free_port

pytestmark = pytest.mark.e2e

QEMU = shutil.which("qemu-aarch64-static")
# What qemu runs in the arm64 tree: compile the standard library as kiln does (checked
# hash, fixed hash seed), and say how many .pyc differ from the layer's.
_COMPARE = """\
import os, py_compile, sys
root, out = sys.argv[1], sys.argv[2]
same = differ = 0
for folder, _, names in sorted(os.walk(root + "/usr/lib/python3.11")):
    if "-packages" in folder or "__pycache__" in folder:
        continue
    for name in sorted(n for n in names if n.endswith(".py")):
        layer = f"{folder}/__pycache__/{name[:-3]}.cpython-311.pyc"
        if not os.path.exists(layer):
            continue
        mine = f"{out}/{same + differ}.pyc"
        dfile = f"{folder}/{name}".replace(root, "", 1)  # the source's path in the image
        py_compile.compile(f"{folder}/{name}", cfile=mine, dfile=dfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
        if open(mine, "rb").read() == open(layer, "rb").read():
            same += 1
        else:
            differ += 1
            print("differs:", dfile)
import ctypes.util, json, platform, sqlite3, ssl, zoneinfo
print(platform.machine(), same, differ, ctypes.util.find_library("stdc++"))
"""


def _arm64(args: list[str], root: Path) -> str:
    assert QEMU is not None
    proc = subprocess.run(
        [QEMU, "-L", str(root), *args],
        capture_output=True, text=True, check=False, timeout=120,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PYTHONHASHSEED": "0",
             "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _relocked(pins: OsPins, tmp: Path) -> tuple[OsLock, OsLock, OsLayers, float]:
    """The committed lock's amd64 part (a lock of amd64 alone, as this repo had before
    it added arm64), what `kiln lock` makes of it for both architectures (Debian's
    indexes fetched into ``tmp``; each layer built there, on a cold layer cache, from the
    shared cache's .debs), the layers, and the seconds taken."""
    committed = read_os_lock(pins.source)
    before = dataclasses.replace(committed.of("amd64"), inputs="sha256:amd64-alone")
    ws = discover(pins.source)
    assert ws.os.architectures == ("amd64", "arm64")
    started = time.monotonic()
    mirrors = Mirrors(ws.os)
    indexes = Indexes(ws.os, mirrors, call, tmp / "indexes")
    layers = OsLayers(LayerCache(tmp / "oci"), pins.cache / "debian", None)
    lock = lock_os(ws, indexes=indexes, layers=layers, previous=before, upgrade=False)
    return before, lock, layers, time.monotonic() - started


def test_the_arm64_os_layer_is_locked_and_built_here_as_arm64_itself_would(
    os_pins: OsPins, tmp_path: Path
) -> None:
    if QEMU is None:
        _unavailable("needs qemu-aarch64-static (Debian's qemu-user-static)")
    before, lock, layers, seconds = _relocked(os_pins, tmp_path)
    # amd64 moves not a byte; arm64 has the same packages at the same versions
    assert dataclasses.replace(lock, inputs=before.inputs, more={}) == before
    assert render(lock).startswith(render(before).replace(before.inputs, lock.inputs))
    assert render(lock) == render(read_os_lock(os_pins.source))  # as committed
    arm = lock.of("arm64")
    assert arm.os.versions() == before.os.versions()
    assert {p.architecture for p in arm.os.packages} <= {"arm64", "all"}
    assert arm.os.layer is not None
    assert before.os.layer is not None
    assert arm.os.layer.digest != before.os.layer.digest
    # lock_os built each layer again from the .debs (a cold layer cache): as committed
    blob = layers.layer(lock, architecture="arm64")
    assert (blob.digest, blob.size) == (arm.os.layer.digest, arm.os.layer.size)
    root = tmp_path / "rootfs"
    with tarfile.open(blob.path) as tar:
        tar.extractall(root, filter="tar")
    assert (root / "usr/bin/python3.11").read_bytes()[18] == 183  # e_machine: EM_AARCH64
    # arm64's own ldconfig writes the very ld.so.cache kiln wrote in code
    ours = (root / "etc/ld.so.cache").read_bytes()
    (root / "etc/ld.so.cache").unlink()
    _arm64([str(root / "sbin/ldconfig"), "-X", "-r", str(root)], root)
    assert (root / "etc/ld.so.cache").read_bytes() == ours
    # arm64's own Python compiles the standard library to the same bytes, and runs
    (root / "tmp/compare.py").write_text(_COMPARE, encoding="utf-8")
    (tmp_path / "pyc").mkdir()
    out = _arm64(
        [
            str(root / "usr/bin/python3.11"),
            str(root / "tmp/compare.py"),
            str(root),
            str(tmp_path / "pyc"),
        ],
        root,
    )
    machine, same, differ, stdcxx = out.split()[-4:]
    assert (machine, differ, stdcxx) == ("aarch64", "0", "libstdc++.so.6"), out
    assert int(same) > 500
    print(
        f"\narm64 OS layer: {len(arm.os.packages)} packages "
        f"({sum(p.size for p in arm.os.packages)} bytes of .debs), layer "
        f"{arm.os.layer.size} bytes (amd64: {before.os.layer.size}); "
        f"locked both (each layer built) in {seconds:.1f} s; {same} .pyc as "
        f"arm64's own Python writes them"
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry of its own on a free port (no credentials), stopped after."""
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None:
        _unavailable("no docker-registry/registry binary on PATH")
    root = tmp_path_factory.mktemp("index-registry")
    port = free_port()
    config = root / "registry.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "
        f"{root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    with (root / "registry.log").open("wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        client = RegistryClient(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except ServiceUnavailable:  # not up yet
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_index_of_both_os_bases_is_pushed_at_its_known_digest_and_pulled_per_platform(
    os_pins: OsPins, registry: str, docker_client: docker.DockerClient
) -> None:
    images = []
    lock, layers = read_os_lock(os_pins.source), os_pins.layers()
    for arch in ("amd64", "arm64"):
        base = layers.base_image(lock, architecture=arch)
        images.append(assemble(base, (), env={}, labels={}, annotations={}, what=arch))
    index = image_index(images)
    client = RegistryClient(registry)
    repository = "kiln-e2e/os"
    for image in images:
        push_image(client, repository, image.digest.replace(":", "-"), image)
    answered = client.put_manifest(repository, "multi", index.index, index.media_type)
    assert answered == index.digest  # known before the push
    ref = f"{registry}/{repository}@{index.digest}"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert raw == index.index
    assert [m["platform"] for m in json.loads(raw)["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    try:
        pulled = docker_client.images.pull(ref, platform="linux/arm64")
        assert pulled.attrs["Architecture"] == "arm64"
        assert (
            pulled.attrs["RootFS"]["Layers"] == json.loads(images[1].config)["rootfs"]["diff_ids"]
        )
    finally:
        untag(docker_client, registry)
