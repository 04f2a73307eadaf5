"""kiln's OS base end to end, without the live mirror: a local HTTP server serves a copy
of Debian's signed indexes and the pinned .debs, as a mirror does.

- A clean copy with an empty cache builds the OS layer from that mirror and pushes
  exactly the digests the committed YAMLs pin.
- `kiln lock` checks the copy's signatures (gpgv, Debian's keyring): an altered index is
  refused, and so is a mirror that is down.
- One .deb deleted from the mirror: a machine whose cache lacks it builds from the
  registry's copy of the layer; with no registry copy either, the error names the
  package and `kiln lock --upgrade-os`. A .deb with other bytes is refused by sha256."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest

from kiln._debian.archive import Indexes, Mirrors, by_name
from kiln._debian.lock import DebPin, LayerPin, read_os_lock
from kiln._debian.resolve import Resolver
from kiln._images.oci.cache import LayerCache
from kiln._images.os_layers import fetch_debs
from kiln._util.cmd import call
from kiln._workspace.discovery import discover
from tests.e2e.conftest import KilnCache, OsPins, copy_project, on_stack
from tests.e2e.tools import Repo

pytestmark = pytest.mark.e2e


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class LocalMirror:
    root: Path  # <root>/<archive>/{dists,pool}/...
    url: str

    def deb(self, archive: str, path: str) -> Path:
        return self.root / archive / path


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, os_pins: OsPins) -> Iterator[LocalMirror]:
    """Debian's current signed indexes of each architecture (fetched and checked once)
    and the .debs the OS lock pins, served on 127.0.0.1 in the archive's own layout."""
    root = tmp_path_factory.mktemp("mirror")
    cache = tmp_path_factory.mktemp("index-cache")
    config = discover(os_pins.source).os
    indexes = Indexes(config, Mirrors(config), call, cache)  # keeps what it checked
    pins = list(read_os_lock(os_pins.source).packages())
    for arch in config.architectures:
        # The pinned .debs, and those of today's closure (what a relock resolves to).
        today = Resolver(by_name(indexes.load(arch)), architecture=arch, exclude=config.exclude)
        pins += [DebPin.of(c) for c in today.resolve(config.packages).packages]
    shutil.copytree(cache / "mirror", root, dirs_exist_ok=True)
    fetched = fetch_debs(pins, Mirrors(config), os_pins.cache / "debian")
    assert not fetched.gone
    for pin, data in fetched.debs:
        target = root / pin.archive / pin.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalMirror(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def _mirrors_at(root: Path, url: str) -> None:
    """Point the copy's [tool.kiln.os.mirrors] at ``url`` (the lock stays fresh: mirrors
    are no input of it)."""
    pyproject = root / "pyproject.toml"
    text = re.sub(r"(?m)^debian = \[.*\]$", f'debian = ["{url}/debian"]', pyproject.read_text())
    text = re.sub(
        r"(?m)^debian-security = \[.*\]$", f'debian-security = ["{url}/debian-security"]', text
    )
    pyproject.write_text(text)


@pytest.fixture(scope="module")
def clean(
    tmp_path_factory: pytest.TempPathFactory,
    mirror: LocalMirror,
    docker_client: docker.DockerClient,
    os_pins: OsPins,
) -> Iterator[Repo]:
    """A copy of this repo with an empty kiln cache, on its own stack, whose OS mirrors
    are the local one."""
    root = tmp_path_factory.mktemp("clean")
    index_port, registry_port = copy_project(root, None if os_pins.fetchable else os_pins)
    if not os_pins.fetchable:
        shutil.copy(os_pins.source / "images" / "os.lock", root / "images" / "os.lock")
        shutil.rmtree(root / ".kiln")
    _mirrors_at(root, mirror.url)
    with on_stack(root, index_port, registry_port, docker_client) as repo:
        yield repo


def _pinned(root: Path) -> dict[str, str]:
    """image name -> the digest the committed YAMLs pin it to."""
    found: dict[str, str] = {}
    for path in (root / "pipelines" / "components" / "generated").glob("*.yaml"):
        for name, digest in re.findall(
            r"image: \S+/acme/(\w+)@(sha256:[0-9a-f]{64})", path.read_text()
        ):
            assert found.setdefault(name, digest) == digest
    return found


def _log(repo: Repo, command: str) -> str:
    return (repo.root / ".kiln" / "logs" / f"{command}.log").read_text()


def test_a_clean_copy_builds_from_the_mirror_and_pushes_the_committed_digests(
    clean: Repo, os_pins: OsPins
) -> None:
    assert not (clean.root / ".kiln").exists()  # no cache at all
    if not os_pins.fetchable:
        print("NOTE: the committed pins are gone from Debian: comparing with the relocked copy's")
        assert clean.kiln("components", "--local").returncode == 0
    committed = _pinned(clean.root)
    assert sorted(committed) == ["analytics", "base", "packages"]
    released = clean.kiln_json("release", "--local")
    pushed = {i["name"]: i["digest"] for i in released["manifest"]["images"]}
    assert pushed == committed
    log = _log(clean, "release")
    lock = read_os_lock(clean.root)
    assert all(f"fetched {p.filename}" in log for p in lock.packages())  # each architecture's
    assert "taken from the registry" not in log
    check = clean.kiln("check", "--local")
    assert check.returncode == 0, check.stdout + check.stderr
    print(f"clean copy, empty cache: pushed {pushed}")


def test_lock_checks_the_mirror_s_signatures_and_names_a_mirror_that_is_down(
    clean: Repo, mirror: LocalMirror
) -> None:
    # A root added: the lock is stale and resolved again, from the local mirror's copy.
    pyproject = clean.root / "pyproject.toml"
    original, lock = pyproject.read_text(), (clean.root / "images" / "os.lock").read_text()
    release = mirror.root / "debian" / "dists" / "bookworm" / "InRelease"
    signed = release.read_bytes()
    try:
        pyproject.write_text(
            original.replace('exclude = ["debconf",', 'exclude = ["nothing",\n  "debconf",')
        )
        release.write_bytes(signed.replace(b"Suite: oldstable", b"Suite: oldstablX", 1))
        altered = clean.kiln("lock")
        assert altered.returncode == 8, altered.stderr
        assert "debian bookworm (dists/bookworm/InRelease): its signature does not verify" in (
            altered.stderr
        )
        assert (clean.root / "images" / "os.lock").read_text() == lock  # nothing written

        release.write_bytes(signed)
        _mirrors_at(clean.root, "http://127.0.0.1:9")  # nothing listens on port 9
        down = clean.kiln("lock")
        assert down.returncode == 5, down.stderr
        assert "no mirror of the debian archive serves dists/bookworm/InRelease" in down.stderr
        assert "http://127.0.0.1:9/debian: ConnectionError" in down.stderr

        _mirrors_at(clean.root, mirror.url)
        relocked = clean.kiln_json("lock")
        assert relocked["os"]["written"] is True  # its inputs changed: written again
        log = _log(clean, "lock")
        assert "gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg" in log
    finally:
        release.write_bytes(signed)
        pyproject.write_text(original)
        (clean.root / "images" / "os.lock").write_text(lock)
    assert clean.kiln("lock", "--check").returncode == 0


def _forget_os(root: Path, layer: LayerPin) -> None:
    """Empty the OS part of the kiln cache of the workspace at ``root``: every .deb (and
    Debian's indexes) and the blob of the OS ``layer``. The wheels, wheelhouses and image
    layers stay: where the OS layer comes from does not depend on them, and making them
    again (from PyPI) was most of this test's time."""
    shutil.rmtree(root / ".kiln" / "cache" / "debian", ignore_errors=True)  # may be none
    LayerCache(root / ".kiln" / "cache" / "oci").blob_path(layer.digest).unlink()


def test_a_deb_gone_from_the_mirror_is_built_from_the_registry_s_layer_or_named(
    clean: Repo, mirror: LocalMirror, tmp_path: Path
) -> None:
    lock = read_os_lock(clean.root)
    assert lock.os.layer is not None
    gone = next(p for p in lock.os.packages if p.name == "libssl3")
    deb = mirror.deb(gone.archive, gone.path)
    kept = tmp_path / gone.filename
    shutil.move(deb, kept)
    try:
        # This machine's cache lacks the OS layer and its .debs: the .deb is on no mirror,
        # the registry has the layer.
        _forget_os(clean.root, lock.os.layer)
        again = clean.kiln_json("release", "--local")
        assert (again["uploaded"], again["pushed"]) == ([], [])
        log = _log(clean, "release")
        assert f"OS layer {lock.os.layer.digest[:19]}: taken from the registry" in log

        # A fresh registry (another machine's stack), no OS layer or .deb cached: no source
        # has it.
        assert clean.kiln("stack", "down").returncode == 0
        shutil.rmtree(clean.root / ".kiln" / "stack")
        _forget_os(clean.root, lock.os.layer)
        proc = clean.kiln("components", "--local")
        assert proc.returncode == 5, proc.stderr
        assert f"no mirror serves {gone.name} {gone.version} any more" in proc.stderr
        assert "`kiln lock --upgrade-os`, then commit images/os.lock" in proc.stderr
        sources = clean.kiln("lock", "--check", "--sources")
        assert sources.returncode == 5, sources.stderr
        assert f"{gone.name} {gone.version}" in sources.stderr

        # Other bytes under the pinned name: refused by sha256, naming the URL.
        deb.write_bytes(kept.read_bytes()[:-1] + b"x")
        proc = clean.kiln("components", "--local")
        assert proc.returncode == 8, proc.stderr
        assert f"{mirror.url}/{gone.archive}/{gone.path}: sha256 " in proc.stderr
        assert f"images/os.lock pins {gone.name} {gone.version} to {gone.sha256}" in proc.stderr
    finally:
        shutil.move(kept, deb)
    assert clean.kiln("lock", "--check", "--sources").returncode == 0
    assert json.loads(clean.kiln("components", "--local", "--json").stdout)["images"]


@pytest.fixture(scope="module")
def with_extras(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    os_pins: OsPins,
    kiln_cache: KilnCache,
) -> Iterator[Repo]:
    """A copy of this repo (Debian's own mirrors) whose base image lists an os-package."""
    root = tmp_path_factory.mktemp("extras")
    index_port, registry_port = copy_project(root, os_pins, kiln_cache)
    toml = root / "images" / "base" / "image.toml"
    toml.write_text(toml.read_text().replace("[image]\n", '[image]\nos-packages = ["libgomp1"]\n'))
    with on_stack(root, index_port, registry_port, docker_client) as repo:
        yield repo


def test_an_image_s_os_packages_are_a_layer_of_their_own_over_the_shared_one(
    with_extras: Repo, docker_client: docker.DockerClient
) -> None:
    repo = with_extras
    stale = repo.kiln("release", "--local")
    assert stale.returncode == 3, stale.stderr
    assert "images/os.lock: stale: [tool.kiln.os] or an image's os-packages changed" in (
        stale.stderr
    )
    locked = repo.kiln_json("lock")
    assert locked["os"]["written"] is True
    lock = read_os_lock(repo.root)
    for arch in ("amd64", "arm64"):  # locked for each architecture
        extra = lock.of(arch).extras["base"]
        assert extra.roots == ("libgomp1",)
        assert "libgomp1" in {p.name for p in extra.packages}
        assert not {p.name for p in extra.packages} & {p.name for p in lock.of(arch).os.packages}
    assert '[extras."base"]' in (repo.root / "images" / "os.lock").read_text()
    assert "+ libgomp1 (base) " in "\n".join(locked["os"]["changes"])

    released = repo.kiln_json("release", "--local")
    rows = {i["name"]: i for i in released["manifest"]["images"]}
    # Each image is an index of one image per platform: each platform's layers.
    layers = {
        (name, arch): _layers(f"{row['ref'].partition('@')[0]}@{digest}")
        for name, row in rows.items()
        for arch, digest in _platforms(row["ref"]).items()
    }
    assert set(layers) == {(n, a) for n in rows for a in ("amd64", "arm64")}
    for arch in ("amd64", "arm64"):
        one = lock.of(arch)
        extra = one.extras["base"]
        assert one.os.layer is not None
        assert extra.layer is not None
        # One OS layer for every image; base alone has its os-packages' layer next.
        assert {digests[0] for (_, a), digests in layers.items() if a == arch} == {
            one.os.layer.digest
        }
        assert layers["base", arch][1] == extra.layer.digest
        assert extra.layer.digest not in layers["analytics", arch]
    log = _log(repo, "release")
    for arch in ("amd64", "arm64"):
        os_layer = lock.of(arch).os.layer
        assert os_layer is not None
        assert f"{os_layer.digest[:19]} mounted from acme/" in log  # pushed once, then mounted
    found = docker_client.containers.run(
        rows["base"]["ref"],
        ["python3", "-c", "import ctypes.util; print(ctypes.util.find_library('gomp'))"],
        network_mode="none", remove=True,
    ).decode()  # fmt: skip
    assert found.strip() == "libgomp.so.1"  # the extras layer's ld.so.cache knows it
    for record in rows["base"]["platforms"]:  # each platform's SBOM lists its libgomp1
        arch = record["platform"].partition("/")[2]
        sbom = json.loads((repo.root / record["sbom"]["path"]).read_text())
        purls = [c.get("purl", "") for c in sbom["components"]]
        gomp = [p for p in purls if p.startswith("pkg:deb/debian/libgomp1@")]
        assert gomp, (arch, purls)
        assert all(f"arch={arch}" in p.partition("?")[2].split("&") for p in gomp), gomp


def _inspect(ref: str) -> dict[str, Any]:
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found: dict[str, Any] = json.loads(raw)
    return found


def _platforms(ref: str) -> dict[str, str]:
    """Architecture -> the digest of its image, in the index ``ref`` names."""
    index = _inspect(ref)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    return {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}


def _layers(ref: str) -> list[str]:
    return [layer["digest"] for layer in _inspect(ref)["layers"]]
