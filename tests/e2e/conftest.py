"""End-to-end fixtures: a copy of this monorepo, its own local stack on free ports,
the real Docker Engine, and an index and registry that require credentials (``servers``).
In CI (CI=true) a missing engine fails the run instead of skipping it.

The copies build on kiln's OS base from the committed ``images/os.lock``. Debian drops
superseded packages from its mirrors, so ``os_pins`` first fetches every pinned .deb:
when some are gone, the copies are made from a copy relocked with ``kiln lock
--upgrade-os`` (and it says so), instead of failing the day Debian moves a package."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import docker
import docker.errors
import pytest
import requests
from packaging.utils import canonicalize_name

from kiln._debian.archive import Mirrors
from kiln._debian.lock import read_os_lock
from kiln._images.oci.cache import LayerCache
from kiln._images.os_layers import OsLayers, fetch_debs
from kiln._workspace.discovery import discover

PROJECT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# What this monorepo releases: helper and image versions, as in their config files.
_WORKSPACE = discover(PROJECT)
HELPERS = {h.name: h.version for h in _WORKSPACE.helpers}
IMAGES = {i.name: i.version for i in _WORKSPACE.images}
# pip in a test venv sees neither the machine's pip config nor its extra indexes.
PRIVATE_PIP_ENV = {"PIP_CONFIG_FILE": "/dev/null", "PATH": "/usr/bin:/bin"}


def patch(version: str) -> str:
    """``version`` with its last part raised: what `kiln bump NAME patch` gives."""
    head, _, last = version.rpartition(".")
    return f"{head}.{int(last) + 1}"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must run the end-to-end tests, not skip them)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        _unavailable(f"Docker Engine not reachable: {exc}")
    return client


@dataclass(frozen=True)
class OsPins:
    """Where the copies of this repo come from, and a warm cache to seed them with."""

    source: Path  # this repo, or a copy of it relocked with `kiln lock --upgrade-os`
    fetchable: bool  # whether the committed images/os.lock can be built on this machine
    cache: Path  # .kiln/cache of a workspace that fetched the pins and built the layer


@pytest.fixture(scope="session")
def os_pins(tmp_path_factory: pytest.TempPathFactory) -> OsPins:
    """Fetch every .deb the committed OS lock pins (checked by sha256) and build its layer
    once; when a pin is gone from the mirrors, relock a copy of this repo instead."""
    root = tmp_path_factory.mktemp("os-pins")
    lock = read_os_lock(PROJECT)
    cache = root / "cache"
    mirrors = Mirrors(_WORKSPACE.os)
    fetched = fetch_debs(lock.os.packages, mirrors, cache / "debian")
    source = PROJECT
    if fetched.gone:
        gone = ", ".join(f"{p.name} {p.version}" for p in fetched.gone)
        source = root / "relocked"
        for name in ("helpers", "images", "pipelines"):
            shutil.copytree(PROJECT / name, source / name, ignore=_IGNORE)
        shutil.copy(PROJECT / "pyproject.toml", source / "pyproject.toml")
        proc = subprocess.run(
            [sys.executable, "-m", "kiln", "lock", "--upgrade-os", "--repo", str(source)],
            capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        print(
            f"\nNOTE: the committed images/os.lock pins packages no mirror serves any more "
            f"({gone}); the end-to-end tests use a copy relocked with `kiln lock --upgrade-os`:"
            f"\n{proc.stdout}"
        )
        lock = read_os_lock(source)
        fetched = fetch_debs(lock.os.packages, mirrors, cache / "debian")
    layers = OsLayers(LayerCache(cache / "oci"), cache / "debian", mirrors)
    layers.layer(lock)
    return OsPins(source, not fetched.gone and source == PROJECT, cache)


def by(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Manifest rows by one of their fields (``name``, ``filename``)."""
    return {item[key]: item for item in items}


def private_venv(directory: Path, index_url: str, *requirements: str) -> str:
    """A fresh venv with ``requirements`` installed from the private index alone
    (no machine pip config, no other index); returns its python."""
    venv.create(directory, with_pip=True)
    python = str(directory / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--isolated", "--quiet", "--no-input",
         "--index-url", f"{index_url}/simple/", *requirements],
        env=PRIVATE_PIP_ENV, check=True,
    )  # fmt: skip
    return python


_DISTRIBUTIONS = (
    "import json, importlib.metadata as m; "
    "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))"
)


def installed(docker_client: docker.DockerClient, image: str) -> set[tuple[str, str]]:
    """(canonical name, version) of every distribution ``image``'s python3 finds (what
    ``pip list`` would show; the image needs no pip), run with no network."""
    out = docker_client.containers.run(
        image, ["-c", _DISTRIBUTIONS], entrypoint=["python3"],
        network_mode="none", remove=True, stdout=True, stderr=False,
    )  # fmt: skip
    return {(canonicalize_name(name), version) for name, version in json.loads(out)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Repo:
    root: Path
    index_url: str
    registry: str

    def kiln(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kiln", *args, "--repo", str(self.root)],
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )

    def kiln_json(self, *args: str) -> Any:
        proc = self.kiln(*args, "--json")
        assert proc.returncode == 0, f"kiln {' '.join(args)} failed:\n{proc.stderr}"
        return json.loads(proc.stdout)


_IGNORE = shutil.ignore_patterns(
    ".kiln", "dist", ".nox", ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis"
)


def seed_os(root: Path, pins: OsPins) -> None:
    """Give the workspace at ``root`` the OS lock of ``pins`` (a repo written by
    ``tests.factory`` has this repo's [tool.kiln.os], so the same lock is fresh there)
    and a cache holding its .debs and OS layer (hard links: kiln checks them again)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy(pins.source / "images" / "os.lock", root / "images" / "os.lock")
    shutil.copytree(pins.cache, root / ".kiln" / "cache", copy_function=os.link, dirs_exist_ok=True)


def copy_project(root: Path, pins: OsPins | None = None) -> tuple[int, int]:
    """This monorepo's helpers, images and pipelines copied into ``root``, with its
    pyproject.toml putting the local stack on free loopback ports: (index, registry).
    ``pins``: copy from its source, and seed the copy's cache with its .debs and OS
    layer (content-addressed and checked again when used); None: a cold copy."""
    source = pins.source if pins is not None else PROJECT
    for name in ("helpers", "images", "pipelines"):
        shutil.copytree(source / name, root / name, ignore=_IGNORE)
    if pins is not None:
        seed_os(root, pins)
    index_port, registry_port = free_port(), free_port()
    text = (source / "pyproject.toml").read_text()
    text = re.sub(r"(?m)^index-port = \d+$", f"index-port = {index_port}", text)
    text = re.sub(r"(?m)^registry-port = \d+$", f"registry-port = {registry_port}", text)
    (root / "pyproject.toml").write_text(text)
    return index_port, registry_port


def untag(client: docker.DockerClient, registry: str) -> None:
    """Remove the local tags and digest references of images made for ``registry`` (a
    test's throwaway one), so repeated runs do not pile up images."""
    for image in client.images.list():
        for reference in [*image.tags, *image.attrs.get("RepoDigests", [])]:
            if reference.startswith(f"{registry}/"):
                # Untagging can drop the digest reference with it.
                with contextlib.suppress(docker.errors.ImageNotFound):
                    client.images.remove(reference)


@contextlib.contextmanager
def on_stack(
    root: Path, index_port: int, registry_port: int, client: docker.DockerClient
) -> Iterator[Repo]:
    """The workspace at ``root``, made a git repository, as a Repo on its own stack (the
    ports its pyproject.toml names); the stack stopped and its images untagged after."""
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    repo = Repo(root, f"http://127.0.0.1:{index_port}", f"127.0.0.1:{registry_port}")
    try:
        yield repo
    finally:
        repo.kiln("stack", "down")
        untag(client, repo.registry)


@pytest.fixture(scope="session")
def repo(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, os_pins: OsPins
) -> Iterator[Repo]:
    """A copy of this monorepo's helpers, images and pipelines with its own stack.

    Tests that edit files in it restore them before they return."""
    root = tmp_path_factory.mktemp("monorepo")
    index_port, registry_port = copy_project(root, os_pins)
    with on_stack(root, index_port, registry_port, docker_client) as repo:
        yield repo


@pytest.fixture(scope="session")
def released(repo: Repo) -> dict[str, Any]:
    """One full local release, shared by every end-to-end test (it is the slow part).

    ``on_disk`` is dist/manifest.json as that release left it (later tests release again)."""
    result: dict[str, Any] = repo.kiln_json("release", "--local")
    result["on_disk"] = json.loads((repo.root / "dist" / "manifest.json").read_text())
    return result


# ------------------------------------------------------------------ authenticated servers
USER = "kiln-e2e"
# The password is a canary: a test fails wherever it shows up.
PASSWORD = f"canary-{uuid.uuid4()}"


@dataclass(frozen=True)
class Servers:
    index_url: str
    registry: str

    def env(self, **extra: str) -> dict[str, str]:
        """Credentials the way a CI job passes them, plus ``extra``."""
        return {
            "KILN_INDEX_USERNAME": USER,
            "KILN_INDEX_PASSWORD": PASSWORD,
            "KILN_REGISTRY_USERNAME": USER,
            "KILN_REGISTRY_PASSWORD": PASSWORD,
            **extra,
        }


def _wait_for_401(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 401:
                return
        time.sleep(0.2)
    pytest.fail(f"{url} did not ask for credentials within 30 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    registry_binary = shutil.which("docker-registry") or shutil.which("registry")
    if registry_binary is None:
        reason = "no docker-registry/registry binary on PATH"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("auth-servers")
    # One user; bcrypt's lowest cost, because both servers check it on every request.
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"{USER}:{hashed}\n")
    index_port, registry_port = free_port(), free_port()
    (root / "packages").mkdir()
    (root / "registry").mkdir()
    config = root / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{registry_port}\n"
        f"auth:\n  htpasswd:\n    realm: kiln-e2e\n    path: {htpasswd}\n"
    )
    commands = {
        "index": [
            sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(index_port),
            "--disable-fallback", "-P", str(htpasswd), "-a", "update,download,list",
            str(root / "packages"),
        ],
        "registry": [registry_binary, "serve", str(config)],
    }  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, argv in commands.items():
            with (root / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=root))
        servers = Servers(f"http://127.0.0.1:{index_port}", f"127.0.0.1:{registry_port}")
        _wait_for_401(f"{servers.index_url}/simple/", procs[0], root / "index.log")
        _wait_for_401(f"http://{servers.registry}/v2/", procs[1], root / "registry.log")
        yield servers
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
