"""End-to-end fixtures: a copy of this monorepo, its own local stack on free ports,
the real Docker Engine, and an index and registry that require credentials (``servers``).
In CI (CI=true) a missing engine fails the run instead of skipping it.

The copies build on kiln's OS base from the committed ``images/os.lock``. Debian drops
superseded packages from its mirrors, so ``os_pins`` first fetches every pinned .deb:
when some are gone, the copies are made from a copy relocked with ``kiln lock
--upgrade-os`` (and it says so), instead of failing the day Debian moves a package.

Run on several workers (pytest-xdist), what is slow to make is made once for the whole
run, whichever worker asks first (``once``): the OS pins, and ``kiln_cache``, the kiln
cache every copy of this repo shares (as `kiln release --dev` shares its checkout's),
warmed by one dry run. Every test on the session repo stays on one worker (its tests
edit it in turn), and so does each module (its module-scoped stack): see
``pytest_collection_modifyitems``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import bcrypt
import docker
import docker.errors
import pytest
import requests

from kiln._debian.archive import Mirrors
from kiln._debian.lock import read_os_lock
from kiln._images.oci.cache import LayerCache
from kiln._images.os_layers import OsLayers, fetch_debs
from kiln._workspace.discovery import discover
from tests.e2e.runwide import once, run_folder, stop_at_the_end, untag, write_groups
from tests.e2e.tools import Repo, free_port, kiln_here, kiln_process

PROJECT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# What this monorepo releases: helper and image versions, as in their config files.
_WORKSPACE = discover(PROJECT)
HELPERS = {h.name: h.version for h in _WORKSPACE.helpers}
IMAGES = {i.name: i.version for i in _WORKSPACE.images}
# The tests that `kiln run` a pipeline of ``repo``: one at a time, on one worker (they
# share its .kiln/runs and .kiln/logs/run.log), with those that use their module's venv.
KILN_RUN = pytest.mark.xdist_group("kiln-run")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """pytest-xdist groups (``--dist loadgroup``, see tests/xdist_groups.py) of the
    end-to-end tests, written for xdist's scheduler; on a worker, the longest first."""
    groups = _groups(items)
    factory = config._tmp_path_factory  # type: ignore[attr-defined]  # pytest's own
    write_groups(run_folder(factory), groups)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # workers are handed groups in this order
        items.sort(key=lambda item: _rank(groups.get(item.nodeid, item.nodeid)))


def _groups(items: list[pytest.Item]) -> dict[str, str]:
    """Node id -> group: every test on ``scratch`` in one (they change it in turn); in a
    module, tests that share a fixture of module scope (a stack, servers, a venv: made
    once) in one; a test with an ``xdist_group`` mark in that group. The rest run on any
    worker."""
    here = Path(__file__).parent
    groups: dict[str, str] = {}
    shared: dict[str, list[pytest.Item]] = {}  # "module::fixture" -> the tests using it
    for item in items:
        if here not in item.path.parents:
            continue
        mark = item.get_closest_marker("xdist_group")
        if mark is not None:
            groups[item.nodeid] = str(mark.args[0])
        elif "scratch" in getattr(item, "fixturenames", ()):
            groups[item.nodeid] = "scratch"
        else:
            # what pytest resolved for the test: each fixture it uses, with its scope
            defs = item._fixtureinfo.name2fixturedefs.items()  # type: ignore[attr-defined]
            for name, chain in defs:
                if chain[-1].scope in ("module", "class", "package"):
                    shared.setdefault(f"{item.path.stem}::{name}", []).append(item)
    # Tests linked through shared fixtures, however indirectly, form one group, named
    # after its first fixture.
    for key in sorted(shared):
        tests = shared[key]
        found = {groups[t.nodeid] for t in tests if t.nodeid in groups}
        name = min(found) if found else key
        for group in found - {name}:  # merge groups the fixture links
            for nodeid, other in list(groups.items()):
                if other == group:
                    groups[nodeid] = name
        for test in tests:
            groups[test.nodeid] = name
    return groups


# The longest groups, measured, longest first: handed out first, so that none of them
# starts last (the rest follow in collection order; see tests/xdist_groups.py).
LONGEST = (
    "test_os_lock::clean",  # cold builds from an empty cache, on purpose
    "test_bench_run.py",
    "test_os_lock_workflow::origin",
    "test_faults::faulty",  # the fault-injection family (tests/e2e/faults): ~2.5 min
    "scratch",
    "test_release_train::train",
    "kiln-run",
    "test_oci_builder::base_wheels",
    "test_workflow_rehearsal::origin",
    "test_check_bump.py::test_a_second_clean_clone",
    "test_os_lock::with_extras",
)


def _rank(group: str) -> int:
    """Where a group (or an ungrouped test's node id) comes in ``LONGEST``; after it if
    it is not there (a stable sort keeps their order)."""
    return next((n for n, name in enumerate(LONGEST) if name in group), len(LONGEST))


def patch(version: str) -> str:
    """``version`` with its last part raised: what `kiln bump NAME patch` gives."""
    head, _, last = version.rpartition(".")
    return f"{head}.{int(last) + 1}"


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason} (CI must run the end-to-end tests, not skip them)")
    pytest.skip(reason)


def required_tool(name: str) -> str:
    """The path of Debian's ``name`` (skopeo, umoci, qemu-aarch64-static...): a test
    without it is skipped here, and fails in CI."""
    path = shutil.which(name)
    if path is None:
        _unavailable(f"{name} is not installed (sudo apt-get install {name})")
    return path


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
    cache: Path  # .kiln/cache of a workspace that fetched the pins and built the layers

    def layers(self) -> OsLayers:
        """The OS layers of every architecture the lock pins, from ``cache`` (shared: it
        is only added to) and no mirror."""
        return OsLayers(LayerCache(self.cache / "oci"), self.cache / "debian", None)


@pytest.fixture(scope="session")
def os_pins(tmp_path_factory: pytest.TempPathFactory) -> OsPins:
    """Fetch every .deb the committed OS lock pins, of each architecture (checked by
    sha256), and build each architecture's layer once; when a pin is gone from the
    mirrors, relock a copy of this repo instead."""
    made = once(tmp_path_factory, "os-pins", _fetch_os_pins)
    return OsPins(Path(made["source"]), made["fetchable"] == "yes", Path(made["cache"]))


def _fetch_os_pins(root: Path) -> dict[str, str]:
    root.mkdir(parents=True)
    lock = read_os_lock(PROJECT)
    cache = root / "cache"
    mirrors = Mirrors(_WORKSPACE.os)
    fetched = fetch_debs(lock.packages(), mirrors, cache / "debian")  # every architecture's
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
        fetched = fetch_debs(lock.packages(), mirrors, cache / "debian")
    layers = OsLayers(LayerCache(cache / "oci"), cache / "debian", mirrors)
    for architecture in lock.architectures:
        layers.layer(lock, architecture=architecture)
    fetchable = not fetched.gone and source == PROJECT
    return {"source": str(source), "fetchable": "yes" if fetchable else "no", "cache": str(cache)}


@dataclass(frozen=True)
class KilnCache:
    """The kiln cache of the whole run (``cache/`` and ``wheelhouse/`` of a ``.kiln``),
    which copies of this repo link to: every wheel, wheelhouse and layer is made once."""

    state: Path

    def link_into(self, root: Path) -> None:
        """``root``'s .kiln/cache and .kiln/wheelhouse: links to this one."""
        (root / ".kiln").mkdir(parents=True, exist_ok=True)
        for name in ("cache", "wheelhouse"):
            (root / ".kiln" / name).symlink_to(self.state / name)


@pytest.fixture(scope="session")
def kiln_cache(tmp_path_factory: pytest.TempPathFactory, os_pins: OsPins) -> KilnCache:
    """The run's kiln cache, seeded with the OS pins' .debs and layer and warmed by `kiln
    release --local --dry-run` on a copy of this repo: this repo's wheels, image locks'
    wheelhouses and every image's layers are in it (a dry run computes each digest)."""

    def warm(folder: Path) -> dict[str, str]:
        state = folder / "state"
        shutil.copytree(
            os_pins.cache, state / "cache", symlinks=True, copy_function=os.link
        )  # fmt: skip
        (state / "wheelhouse").mkdir()
        cache = KilnCache(state)
        copy_project(folder / "warm", os_pins, cache)
        proc = kiln_here(folder / "warm", "release", "--local", "--dry-run")
        assert proc.returncode == 0, proc.stderr
        return {"state": str(state)}

    return KilnCache(Path(once(tmp_path_factory, "kiln-cache", warm)["state"]))


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


def copy_project(
    root: Path, pins: OsPins | None = None, cache: KilnCache | None = None
) -> tuple[int, int]:
    """This monorepo's helpers, images and pipelines copied into ``root``, with its
    pyproject.toml putting the local stack on free loopback ports: (index, registry).
    ``pins``: copy from its source, and (without ``cache``) seed the copy's cache with
    its .debs and OS layer (content-addressed and checked again when used); ``cache``:
    the copy's caches are that one; neither: a cold copy."""
    source = pins.source if pins is not None else PROJECT
    for name in ("helpers", "images", "pipelines"):
        shutil.copytree(source / name, root / name, ignore=_IGNORE)
    if cache is not None:
        shutil.copy(source / "images" / "os.lock", root / "images" / "os.lock")
        cache.link_into(root)
    elif pins is not None:
        seed_os(root, pins)
    index_port, registry_port = free_port(), free_port()
    text = (source / "pyproject.toml").read_text()
    text = re.sub(r"(?m)^index-port = \d+$", f"index-port = {index_port}", text)
    text = re.sub(r"(?m)^registry-port = \d+$", f"registry-port = {registry_port}", text)
    (root / "pyproject.toml").write_text(text)
    return index_port, registry_port


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


def _released_copy(
    folder: Path, pins: OsPins, cache: KilnCache, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """A copy of this monorepo, a git repository on its own stack, released: ``repo``.
    Its stack is stopped when the run ends (``pytest_sessionfinish``), not before: other
    workers may still read it."""
    root = folder / "monorepo"
    index_port, registry_port = copy_project(root, pins, cache)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    repo = Repo(root, f"http://127.0.0.1:{index_port}", f"127.0.0.1:{registry_port}")
    stop_at_the_end(tmp_path_factory, root, repo.registry)
    # Started by a kiln process of its own: its servers outlive this worker, and are no
    # children of it (the release finds them up).
    started = kiln_process(root, "stack", "up")
    assert started.returncode == 0, started.stderr
    result = repo.kiln_json("release", "--local")
    result["on_disk"] = json.loads((root / "dist" / "manifest.json").read_text())
    (folder / "released.json").write_text(json.dumps(result))
    return {"root": str(root), "index_url": repo.index_url, "registry": repo.registry}


@pytest.fixture(scope="session")
def repo(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    os_pins: OsPins,
    kiln_cache: KilnCache,
) -> Repo:
    """A copy of this monorepo's helpers, images and pipelines on its own stack, released
    once for the whole run and read by tests on every worker: they change nothing in it,
    neither its files nor its servers (tests that do take ``scratch``)."""
    made = once(
        tmp_path_factory,
        "released",
        lambda folder: _released_copy(folder, os_pins, kiln_cache, tmp_path_factory),
    )
    return Repo(Path(made["root"]), made["index_url"], made["registry"])


@pytest.fixture(scope="session")
def released(repo: Repo) -> dict[str, Any]:
    """``repo``'s release: its JSON result; ``on_disk`` is dist/manifest.json after it."""
    result: dict[str, Any] = json.loads((repo.root.parent / "released.json").read_text())
    return result


@pytest.fixture(scope="session")
def scratch(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    os_pins: OsPins,
    kiln_cache: KilnCache,
) -> Iterator[Repo]:
    """A copy of this monorepo's helpers, images and pipelines with its own stack, for the
    tests that change it (its files, or what its servers hold): all of them run on one
    worker (group ``scratch``), one after the other.

    Tests that edit files in it restore them before they return."""
    root = tmp_path_factory.mktemp("scratch")
    index_port, registry_port = copy_project(root, os_pins, kiln_cache)
    with on_stack(root, index_port, registry_port, docker_client) as repo:
        yield repo


@pytest.fixture(scope="session")
def scratch_released(scratch: Repo) -> dict[str, Any]:
    """``scratch``'s first release.

    ``on_disk`` is dist/manifest.json as that release left it (later tests release again)."""
    result: dict[str, Any] = scratch.kiln_json("release", "--local")
    result["on_disk"] = json.loads((scratch.root / "dist" / "manifest.json").read_text())
    return result


# ------------------------------------------------------------------ authenticated servers
USER = "kiln-e2e"
# The password is a canary: a test fails wherever it shows up.
PASSWORD = f"canary-{uuid.uuid4()}"


@dataclass(frozen=True)
class Servers:
    index_url: str
    registry: str
    storage: Path  # the index's packages/ and the registry's registry/ are in it
    # the processes serving them, to serve other storage at the same addresses (``fresh``)
    control: ServerProcesses | None = field(default=None, compare=False, repr=False)

    def env(self, **extra: str) -> dict[str, str]:
        """Credentials the way a CI job passes them, plus ``extra``."""
        return {
            "KILN_INDEX_USERNAME": USER,
            "KILN_INDEX_PASSWORD": PASSWORD,
            "KILN_REGISTRY_USERNAME": USER,
            "KILN_REGISTRY_PASSWORD": PASSWORD,
            **extra,
        }

    @contextlib.contextmanager
    def fresh(self, storage: Path) -> Iterator[Servers]:
        """The same index and registry (addresses, credentials) serving empty storage in
        ``storage`` (a folder of its own), then this storage again: what a release
        publishes to them is published to nothing else, and names the same URLs."""
        assert self.control is not None, "servers started by the ``servers`` fixture"
        self.control.stop()
        try:
            yield self.control.start(storage)
        finally:
            self.control.stop()
            self.control.start(self.storage)


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


@dataclass
class ServerProcesses:
    """pypiserver and a registry on two loopback ports, both asking for ``htpasswd``'s
    user; started on a storage folder (its packages/ and registry/), stopped, started
    again on the same ports."""

    registry_binary: str
    htpasswd: Path
    index_port: int = field(default_factory=free_port)
    registry_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, root: Path) -> Servers:
        (root / "packages").mkdir(parents=True, exist_ok=True)
        (root / "registry").mkdir(exist_ok=True)
        config = root / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'registry'}\n"
            f"http:\n  addr: 127.0.0.1:{self.registry_port}\n"
            f"auth:\n  htpasswd:\n    realm: kiln-e2e\n    path: {self.htpasswd}\n"
        )
        commands = {
            "index": [
                sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1",
                "-p", str(self.index_port), "--disable-fallback", "-P", str(self.htpasswd),
                "-a", "update,download,list", str(root / "packages"),
            ],
            "registry": [self.registry_binary, "serve", str(config)],
        }  # fmt: skip
        for name, argv in commands.items():
            with (root / f"{name}.log").open("ab") as log:
                self.procs.append(
                    subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=root)
                )
        servers = Servers(
            f"http://127.0.0.1:{self.index_port}", f"127.0.0.1:{self.registry_port}",
            storage=root, control=self,
        )  # fmt: skip
        _wait_for_401(f"{servers.index_url}/simple/", self.procs[0], root / "index.log")
        _wait_for_401(f"http://{servers.registry}/v2/", self.procs[1], root / "registry.log")
        return servers

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


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
    processes = ServerProcesses(registry_binary, htpasswd)
    try:
        yield processes.start(root)
    finally:
        processes.stop()
