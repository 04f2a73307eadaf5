"""Scenario 9: multi-arch. What adding linux/arm64 to an image costs kiln, against building
linux/amd64 alone and against installing the same lock under emulation.

Setup, untimed: a copy of this repository (``Bench.example``, its amd64 ``.debs`` seeded)
made for ``platforms = ["linux/amd64", "linux/arm64"]`` and ``architectures = ["amd64",
"arm64"]`` (this repository's own settings; set and relocked with ``kiln lock`` when
not), both architectures' ``.debs`` fetched into its ``.kiln/cache/debian``; a second
copy set to linux/amd64 and amd64 alone and relocked; then one build of each image for
both platforms, which fetches both platforms' wheels into the copy's wheelhouse cache
(and is kept: its layer cache is the warm one the layer build below starts from).

Timed, ``repeat`` times, for ``base``, ``analytics`` and packages mode's ``packages``
base, each build in a process of its own (``bench/multiarch_build.py``; only the build
is timed, the helpers' wheels and the wheelhouses are ready before the clock starts):

- cold: an empty layer cache, so the OS layers are written from the seeded ``.debs``,
  the host's base unpacked for its python3, the third-party and helper layers installed,
  compiled and compressed; linux/amd64 alone (``KilnBuilder.build``) against both
  platforms and the index (``multiarch.build_index``);
- warm: the same build again on the cache the cold one filled (nothing written);
- the emulated baseline (a stand-in for ``docker buildx`` with QEMU), for ``base`` and
  ``analytics``: kiln's arm64 OS layer unpacked into a folder, the aarch64 wheels, the
  image's lock and the locked pip wheel (Debian's python3 has no pip) put in its
  /opt/bench, then ``chroot <rootfs> /usr/bin/qemu-aarch64-static /usr/bin/python3
  /opt/bench/pip-<v>.whl/pip install --no-index --no-deps --require-hashes --find-links
  /opt/bench/wheels -r /opt/bench/requirements.lock --break-system-packages`` (as a
  ``RUN`` under binfmt's qemu would: the rootfs's own python3 emulated, installing into
  its own dist-packages and compiling the bytecode; root needed for chroot. ``-L
  <rootfs>`` without chroot did not do: qemu-user looks every path up in the prefix
  first, so ``pip install --root <rootfs>`` wrote into ``<rootfs>/<rootfs>``);
  against kiln writing the arm64 third-party layer from the same wheels (installed,
  compiled by the host's python3 of the same OS lock, compressed). The same pip install
  in the amd64 rootfs, natively, says what is emulation's.

Then a whole ``kiln release --local`` of each copy (amd64 alone; both, an index per
image), cold (a new stack, an empty layer cache; the .debs, wheelhouses and helper-wheel
cache kept) and again (asserted a no-op). Bytes per platform are read from the cold
builds (layer blobs, config and manifest as a registry would store them) with the
index's; the helper layer must be one digest.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import statistics
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.harness import Bench, BenchError, Measurement, Outcome, Repo, run
from kiln._debian.archive import Mirrors
from kiln._debian.lock import read_os_lock
from kiln._images.inputs import OsBase
from kiln._images.oci.cache import LayerCache
from kiln._images.os_layers import OsLayers, fetch_debs
from kiln._workspace.discovery import discover

PY = sys.executable
PLATFORMS = ("linux/amd64", "linux/arm64")
IMAGES = ("base", "analytics", "packages")
EMULATED = ("base", "analytics")  # packages' lock is pip alone
COLD_RATIO = 1.5  # both platforms' cold build over amd64's alone, at most
NOOP_S = 3.0  # a warm no-op, under
QEMU = "qemu-aarch64-static"
QEMU_PATH = shutil.which(QEMU) or f"/usr/bin/{QEMU}"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
_PIP_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C", "HOME": "/root"}


def _set(repo: Repo, platforms: tuple[str, ...], architectures: tuple[str, ...]) -> None:
    """[tool.kiln] platforms and [tool.kiln.os] architectures of ``repo``, relocked if
    that changed them (untimed)."""
    pyproject = repo.root / "pyproject.toml"
    text = pyproject.read_text()
    new, n = re.subn(r"(?m)^platforms = .*$", f"platforms = {json.dumps(list(platforms))}", text)
    new, m = re.subn(
        r"(?m)^architectures? = .*$", f"architectures = {json.dumps(list(architectures))}", new
    )
    if n == 0:  # an older example: amd64 alone, no platforms line
        new = new.replace(
            'org = "acme"\n', f'org = "acme"\nplatforms = {json.dumps(list(platforms))}\n', 1
        )
    if m != 1 or "platforms = " not in new:
        raise BenchError(f"{pyproject}: [tool.kiln] or [tool.kiln.os] not as expected")
    if new != text:
        pyproject.write_text(new)
        repo.kiln("lock")
        repo.commit(f"platforms {', '.join(platforms)}")
    repo.locked = True


def two_platforms(b: Bench) -> Repo:
    """The example copy made for both platforms and architectures (relocked if it was
    not), both architectures' .debs in its cache (fetched untimed)."""
    name = "example-multiarch"
    if name not in b.repos:
        repo = b.example(name)
        _set(repo, PLATFORMS, ("amd64", "arm64"))
        lock = read_os_lock(repo.root)
        mirrors = Mirrors(discover(repo.root).os)
        for arch in lock.architectures:
            fetched = fetch_debs(lock.of(arch).os.packages, mirrors, _debs(repo))
            if fetched.gone:
                raise BenchError(f"no mirror serves {', '.join(p.name for p in fetched.gone)}")
    return b.repos[name]


def amd64_alone(b: Bench) -> Repo:
    """The example copy made for linux/amd64 alone, relocked (untimed)."""
    name = "example-amd64"
    if name not in b.repos:
        _set(b.example(name), PLATFORMS[:1], ("amd64",))
    return b.repos[name]


def _build(repo: Repo, image: str, cache: Path, *, both: bool) -> dict[str, Any]:
    argv = [PY, "-m", "bench.multiarch_build", "build", "--repo", str(repo.root),
            "--image", image, "--cache", str(cache), "--debs", str(_debs(repo))]  # fmt: skip
    result: dict[str, Any] = json.loads(run([*argv, *(["--both"] if both else [])]).stdout)
    return result


def _debs(repo: Repo) -> Path:
    return repo.root / ".kiln" / "cache" / "debian"


def _unpack(repo: Repo, warm: Path, architecture: str, root: Path) -> Path:
    """The OS layers of kiln's base for ``architecture`` (from the warm cache) in ``root``."""
    shutil.rmtree(root, ignore_errors=True)
    lock = read_os_lock(repo.root)
    layers = OsLayers(LayerCache(warm), _debs(repo), None)
    base = OsBase.of(lock, discover(repo.root).image("base"))
    for blob in layers.base_image(base.lock, base.extras, architecture=architecture).layers:
        with gzip.open(blob.path) as stream, tarfile.open(fileobj=stream) as tar:
            tar.extractall(root, filter="tar")  # kiln's layers only add: no whiteouts
    return root


def _bytes(built: Mapping[str, Any]) -> int:
    """What a registry stores for one image: its layer blobs, config and manifest."""
    layers = sum(int(x["size"]) for x in built["layers"])
    return int(built["manifest_bytes"]) + int(built["config_bytes"]) + layers


def _check(image: str, alone: Mapping[str, Any], both: Mapping[str, Any]) -> None:
    amd = both["images"]["linux/amd64"]["digest"]
    if alone["images"]["linux/amd64"]["digest"] != amd:
        raise BenchError(f"{image}: amd64 alone {alone['images']} is not the index's {amd}")


class _Runs:
    """Every sample of the run, by label, in the order first recorded."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def add(self, label: str, seconds: float) -> None:
        self.seconds.setdefault(label, []).append(seconds)

    def median(self, label: str) -> float:
        return statistics.median(self.seconds[label])


def _sizes(o: Outcome, image: str, both: Mapping[str, Any]) -> None:
    built = both["images"]
    amd, arm = built["linux/amd64"], built["linux/arm64"]
    for platform, one in built.items():
        label = f"{image} {platform}"
        o.sizes += [(label, x["kind"], x["size"]) for x in one["layers"]]
        o.sizes.append((label, "config + manifest", one["config_bytes"] + one["manifest_bytes"]))
        o.sizes.append((label, "total", _bytes(one)))
    o.sizes.append((f"{image} index", "index", both["index"]["bytes"]))
    shared = {x["digest"] for x in amd["layers"]} & {x["digest"] for x in arm["layers"]}
    kinds = [x["kind"] for x in amd["layers"] if x["digest"] in shared]
    o.figures[f"{image} MB amd64 / arm64"] = f"{_bytes(amd) / 1e6:.1f} / {_bytes(arm) / 1e6:.1f}"
    o.figures[f"{image} shared layers"] = ", ".join(kinds) or "none"
    helpers = [x["digest"] for x in amd["layers"] + arm["layers"] if x["kind"] == "helpers"]
    if helpers:
        if len(set(helpers)) != 1:
            raise BenchError(f"{image}: the helper layer differs between platforms: {helpers}")
        o.figures[f"{image} helper layer (both)"] = helpers[0]


def _figures(o: Outcome, runs: _Runs, first: Mapping[str, dict[str, Any]]) -> bool:
    """The figures of ``o`` from the medians of ``runs``; whether the targets are met."""
    releases = [runs.median(f"kiln release --local, cold: {w}") for w in RELEASES]
    release_noop = runs.median(f"kiln release --local, no-op: {RELEASES[1]}")
    # The issue's 1.5x is of the build; a cold release also pushes arm64's layers and
    # smoke-checks them under qemu-user: reported, not judged.
    o.figures["release cold both / amd64 (no target)"] = round(releases[1] / releases[0], 2)
    o.figures["release no-op both s"] = round(release_noop, 2)
    met = release_noop < NOOP_S
    totals = [0.0, 0.0]
    for image in IMAGES:
        alone = runs.median(f"{image}: cold, linux/amd64 alone")
        both = runs.median(f"{image}: cold, amd64 + arm64 + index")
        totals = [totals[0] + alone, totals[1] + both]
        ratio = both / alone
        noop = runs.median(f"{image}: warm (no-op), amd64 + arm64 + index")
        o.figures[f"{image} cold both / amd64"] = round(ratio, 2)
        o.figures[f"{image} warm both s"] = round(noop, 2)
        met = met and ratio <= COLD_RATIO and noop < NOOP_S
        _sizes(o, image, first[f"{image} True"])
        o.figures[f"{image} index bytes"] = first[f"{image} True"]["index"]["bytes"]
    o.figures["three images' cold builds, both / amd64"] = round(totals[1] / totals[0], 2)
    for image in EMULATED:
        kiln = runs.median(f"{image}: kiln writes the arm64 third-party layer")
        for how in ("under qemu-aarch64-static", "native (amd64 rootfs)"):
            pip_s = runs.median(f"{image}: pip install {how}")
            o.figures[f"{image} pip {how.split()[0]} / kiln arm64 layer"] = round(pip_s / kiln, 1)
    return met


def multiarch(b: Bench) -> Outcome:
    o = Outcome(
        9,
        "multi-arch: amd64 alone vs amd64 + arm64, emulated pip",
        f"both platforms' cold build <= {COLD_RATIO}x amd64's alone, each image; a warm "
        f"no-op < {NOOP_S:.0f} s",
    )
    if not Path(QEMU_PATH).is_file():
        raise BenchError(f"no {QEMU}: sudo apt-get install qemu-user-static")
    if os.geteuid() != 0:
        raise BenchError("the emulated baseline runs pip in a chroot: run as root")
    repo = two_platforms(b)
    load = os.getloadavg()[0]
    work = b.workdir / "multiarch"
    shutil.rmtree(work, ignore_errors=True)
    warm: dict[str, Path] = {}
    first: dict[str, dict[str, Any]] = {}
    for image in IMAGES:  # untimed: both platforms' wheels fetched, a warm cache kept
        warm[image] = work / f"warm-{image}"
        first[image] = _build(repo, image, warm[image], both=True)
    pip_dir = Path(first["packages"]["wheel_dirs"]["linux/amd64"])
    (pip,) = pip_dir.glob("pip-*.whl")
    runs = _Runs()
    for r in range(b.repeat):
        for image in IMAGES:
            for both, what in ((False, "linux/amd64 alone"), (True, "amd64 + arm64 + index")):
                cache = work / f"r{r}-{image}-{'both' if both else 'amd64'}"
                cold = _build(repo, image, cache, both=both)
                again = _build(repo, image, cache, both=both)
                if again["images"] != cold["images"]:
                    raise BenchError(f"{image}: the warm build gave other images than the cold")
                runs.add(f"{image}: cold, {what}", cold["seconds"])
                runs.add(f"{image}: cold, {what}: of which OS layers", cold["os_layers_seconds"])
                runs.add(f"{image}: warm (no-op), {what}", again["seconds"])
                shutil.rmtree(cache)
                first[f"{image} {both}"] = cold
            _check(image, first[f"{image} False"], first[f"{image} True"])
        for image in EMULATED:
            _emulated(repo, image, first[image], warm=warm[image], pip=pip, work=work, runs=runs)
        _releases(b, o, runs)
    o.rows = [Measurement(label, tuple(s)) for label, s in runs.seconds.items()]
    met = _figures(o, runs, first)
    o.figures["load average (1 min) at start / end"] = f"{load:.1f} / {os.getloadavg()[0]:.1f}"
    o.note = (
        "Seconds of the build alone, each in a fresh process (bench/multiarch_build.py): the "
        "helpers' wheels and every wheelhouse are ready before the clock starts. cold: an "
        "empty layer cache (OS layers from the seeded .debs); warm: the same build again. MB "
        "= 10^6 bytes: layer blobs + config + manifest of the cold build."
    )
    return o.judge(met)


RELEASES = ("linux/amd64 alone", "amd64 + arm64 (an index per image)")


def _releases(b: Bench, o: Outcome, runs: _Runs) -> None:
    """A whole ``kiln release --local`` of the example made for amd64 alone and of the
    one made for both: cold (a new stack: empty registry and index; an empty layer cache;
    the .debs, the wheelhouses and the helper wheel cache kept), then again (a no-op)."""
    for what, repo in zip(RELEASES, (amd64_alone(b), two_platforms(b)), strict=True):
        if repo.stack_started:
            repo.kiln("stack", "down")
        for folder in (".kiln/stack", ".kiln/cache/oci", "dist"):
            shutil.rmtree(repo.root / folder, ignore_errors=True)
        repo.kiln("stack", "up")
        repo.stack_started = True
        cold = repo.kiln("release", "--local", "--json")
        repo.commit("released")
        result = json.loads(cold.stdout)
        o.figures[f"release {what}: pushed"] = len(result["pushed"])
        runs.add(f"kiln release --local, cold: {what}", cold.seconds)
        noop = repo.kiln("release", "--local", "--json")
        again = json.loads(noop.stdout)
        if again["uploaded"] or again["pushed"]:
            raise BenchError(f"{repo.root}: not a no-op: {again['uploaded']}, {again['pushed']}")
        runs.add(f"kiln release --local, no-op: {what}", noop.seconds)


def _emulated(
    repo: Repo, image: str, built: Mapping[str, Any], *, warm: Path, pip: Path, work: Path,
    runs: _Runs,
) -> None:  # fmt: skip
    """pip install of the image's lock in each architecture's rootfs (arm64 under qemu,
    amd64 natively), and kiln's arm64 third-party layer from the same wheels."""
    wheels = built["wheel_dirs"]
    fresh = work / f"layer-{image}"
    argv = [PY, "-m", "bench.multiarch_build", "layer", "--repo", str(repo.root),
            "--image", image, "--cache", str(warm), "--debs", str(_debs(repo)),
            "--platform", "linux/arm64", "--fresh", str(fresh)]  # fmt: skip
    layer = json.loads(run(argv).stdout)
    shutil.rmtree(fresh)
    arm = built["images"]["linux/arm64"]["layers"]
    if layer["digest"] not in {x["digest"] for x in arm}:
        raise BenchError(f"{image}: the arm64 layer alone {layer['digest']} is not the image's")
    runs.add(f"{image}: kiln writes the arm64 third-party layer", layer["seconds"])
    for arch, how in (("arm64", "under qemu-aarch64-static"), ("amd64", "native (amd64 rootfs)")):
        root = _unpack(repo, warm, arch, work / f"rootfs-{arch}")
        python = ["/usr/bin/python3"]
        if arch == "arm64":
            shutil.copy(QEMU_PATH, root / "usr" / "bin" / QEMU)  # static: runs in the chroot
            python = [f"/usr/bin/{QEMU}", *python]
        pip_args = _stage(root, pip, Path(wheels[f"linux/{arch}"]), Path(built["lock"]))
        sample = run([CHROOT, str(root), *python, *pip_args], env=_PIP_ENV)
        if not any(root.glob("usr/local/lib/python3*/dist-packages/numpy/__init__.py")):
            raise BenchError(f"{root}: pip installed no numpy: {sample.stdout[-400:]}")
        runs.add(f"{image}: pip install {how}", sample.seconds)
        shutil.rmtree(root)


def _link(source: Path, target: Path) -> None:
    try:
        target.hardlink_to(source)
    except OSError:  # another file system
        shutil.copy2(source, target)


def _stage(root: Path, pip: Path, wheels: Path, lock: Path) -> list[str]:
    """The pip wheel, the wheels and the lock put in the rootfs's /opt/bench; pip's
    arguments there (untimed)."""
    inbox = root / "opt" / "bench"
    (inbox / "wheels").mkdir(parents=True)
    for wheel in wheels.glob("*.whl"):
        _link(wheel, inbox / "wheels" / wheel.name)
    _link(pip, inbox / pip.name)
    shutil.copy(lock, inbox / "requirements.lock")
    return [f"/opt/bench/{pip.name}/pip", "install", "--quiet", "--no-index", "--no-deps",
            "--require-hashes", "--find-links", "/opt/bench/wheels",
            "-r", "/opt/bench/requirements.lock", "--break-system-packages", "--no-cache-dir",
            "--disable-pip-version-check", "--no-warn-script-location",
            "--root-user-action=ignore"]  # fmt: skip
