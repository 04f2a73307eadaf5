"""Races on one checkout, for real: kiln processes started at once, each a subprocess.

- four `kiln stack up` at once start one stack, which `stack status` owns and `stack
  down` stops entirely (no server of the checkout's data left running);
- four `kiln release --local` at once on one copy all succeed: every artifact once on
  the index and the registry, the YAMLs those of a serial release, `kiln check` clean;
- `kiln release` killed (SIGTERM, SIGKILL) while pip fetches the wheelhouse from an
  authenticated index leaves the password in no file of its temp folder or checkout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from kiln._servers.credentials import Credentials
from kiln._servers.index import IndexClient
from kiln._util.files import sha256_file
from kiln._wheels.build import build_wheel
from kiln._workspace.discovery import discover
from tests import factory
from tests.e2e.conftest import (
    IMAGES,
    IN_CI,
    PASSWORD,
    USER,
    KilnCache,
    OsPins,
    Servers,
    copy_project,
    on_stack,
)
from tests.e2e.tools import kiln_here, kiln_process

pytestmark = pytest.mark.e2e

RACERS = 4


def _kiln_popen(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kiln", *args, "--repo", str(root)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _listens(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _processes_on(folder: Path) -> dict[int, str]:
    """Every process whose command line names ``folder`` (a server on its data)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            line = " ".join(a.decode(errors="replace") for a in argv if a)
            if str(folder) in line and int(entry.name) != os.getpid():
                found[int(entry.name)] = line
    return found


@contextlib.contextmanager
def _killed_after(folder: Path) -> Iterator[None]:
    """Whatever still runs on ``folder`` after the block is killed (a failed test must not
    leak servers)."""
    try:
        yield
    finally:
        for pid in _processes_on(folder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_four_stack_ups_at_once_start_one_stack_that_down_stops(tmp_path: Path) -> None:
    if not (shutil.which("docker-registry") or shutil.which("registry")):
        reason = "no docker-registry/registry binary on PATH (the container has a fixed name)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    root = tmp_path / "repo"
    index_port, registry_port = copy_project(root)
    data = root / ".kiln" / "stack"
    with _killed_after(data):
        racers = [_kiln_popen(root, "stack", "up") for _ in range(RACERS)]
        done = [(p.wait(timeout=120), *p.communicate()) for p in racers]
        assert [code for code, _out, _err in done] == [0] * RACERS, done

        status = kiln_here(root, "stack", "status", "--json")
        assert status.returncode == 0, status.stderr
        servers = {s["name"]: s for s in json.loads(status.stdout)}
        assert sorted(servers) == ["index", "registry"]
        for server in servers.values():
            assert server["running"], server
            assert server["pid"] is not None, server  # recorded, and alive: ours
        assert len(_processes_on(data)) == 2, _processes_on(data)

        down = kiln_here(root, "stack", "down")
        assert down.returncode == 0, down.stderr
        deadline = time.monotonic() + 10
        while _processes_on(data) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_on(data) == {}
        assert not _listens(index_port)
        assert not _listens(registry_port)
    # They did race: the later ones said they waited for the first.
    assert any("another kiln run holds" in err for _code, _out, err in done), done


# ------------------------------------------------------------ concurrent releases
def _yamls(root: Path) -> dict[str, bytes]:
    """Every generated YAML (components, pipelines) of ``root``, by path."""
    found = [*(root / "pipelines").rglob("*.yaml"), *(root / "dist").rglob("*.yaml")]
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(found)}


def test_four_releases_at_once_end_as_one_release_would(
    tmp_path: Path, os_pins: OsPins, kiln_cache: KilnCache, docker_client: docker.DockerClient
) -> None:
    root = tmp_path / "repo"
    index_port, registry_port = copy_project(root, os_pins, kiln_cache)
    with on_stack(root, index_port, registry_port, docker_client) as repo:
        started = kiln_process(root, "stack", "up")
        assert started.returncode == 0, started.stderr
        racers = [_kiln_popen(root, "release", "--local", "--json") for _ in range(RACERS)]
        done = [(p.wait(timeout=600), *p.communicate()) for p in racers]
        assert [code for code, _out, _err in done] == [0] * RACERS, [e[-800:] for *_, e in done]
        results = [json.loads(out) for _code, out, _err in done]

        # Every file uploaded and every image pushed by exactly one of them.
        uploaded = [f for r in results for f in r["uploaded"]]
        pushed = [ref.split("@")[0] for r in results for ref in r["pushed"]]
        assert uploaded, "nothing was uploaded: the copy was not new"
        assert sorted(set(uploaded)) == sorted(uploaded)
        assert sorted(set(pushed)) == sorted(pushed)
        assert sorted(set(pushed)) == sorted(
            {f"{repo.registry}/acme/{name}:{version}" for name, version in IMAGES.items()}
            | {p for p in pushed if "/acme/packages:" in p}
        )
        on_index = sorted(p.name for p in (root / ".kiln" / "stack" / "index").iterdir())
        assert on_index == sorted(uploaded)
        # One manifest, whole, naming what the releases uploaded.
        manifest = json.loads((root / "dist" / "manifest.json").read_text())
        assert manifest in [r["manifest"] for r in results]

        # The YAMLs: valid, and what a release run alone now leaves as it finds them.
        yamls = _yamls(root)
        assert yamls
        for path, data in yamls.items():
            assert isinstance(yaml.safe_load(data), dict), path
        alone = repo.kiln_json("release", "--local")
        assert (alone["uploaded"], alone["pushed"]) == ([], [])
        assert _yamls(root) == yamls
        checked = repo.kiln("check", "--local")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "nothing to do: the repository matches what is published" in checked.stdout
    # They did race: the later ones said they waited for the first.
    assert sum("another kiln run holds" in err for _code, _out, err in done) >= 1


# ------------------------------------------------------------ the index password, killed
def _tiny_wheel(folder: Path, name: str) -> Path:
    root = factory.workspace(folder / name)
    factory.helper(root, name, deps=())
    return build_wheel(discover(root).helper(name), folder / "wheels").path


_FETCH = """
import os, sys
from pathlib import Path
from kiln._lock.format import parse_lock
from kiln._wheels.wheelhouse import PipDownload

lock_file, index_url, dest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
lock = parse_lock(lock_file, lock_file.read_text())
basic = (os.environ["KILN_INDEX_USERNAME"], os.environ["KILN_INDEX_PASSWORD"])
PipDownload(credentials={index_url: basic})(lock, lock.pins, index_url=index_url, dest=dest)
"""


def _children(pid: int) -> dict[int, str]:
    """The running children of ``pid``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[
                1
            ] == str(pid):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
    return {p: line.decode(errors="replace") for p, line in found.items()}


def _files_holding(folder: Path, needle: bytes) -> list[str]:
    return [
        str(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink() and needle in p.read_bytes()
    ]


def _fetch_from(servers: Servers, work: Path, temp: Path, home: Path) -> dict[str, Any]:
    """Popen's arguments for the wheelhouse fetch of a lock pinning a wheel that only the
    authenticated index serves, into ``work``/dest, with TMPDIR ``temp``, HOME ``home``."""
    wheel = _tiny_wheel(work / "build", "probe")
    index = IndexClient(servers.index_url, credentials=Credentials(USER, PASSWORD, source="a test"))
    if not index.files("acme-probe"):
        index.upload([wheel])
    for folder in (work / "dest", temp, home):
        folder.mkdir(parents=True)
    lock = work / "requirements.lock"
    lock.write_text(
        "# [kiln]\n# format = 1\n"
        f'# inputs = "sha256:{"0" * 64}"\n# python = "3.11"\n'
        '# platform = "x86_64-manylinux_2_28"\n# kfp = "2.17.3"\n'
        '# base = "python:3.11-slim"\n'
        f'# base-digest = "sha256:{"b" * 64}"\n\n'
        f"acme-probe==0.1.0 --hash=sha256:{sha256_file(wheel)}\n"
    )
    argv = [sys.executable, "-c", _FETCH, str(lock), f"{servers.index_url}/simple/"]
    return {
        "args": [*argv, str(work / "dest")],
        "env": {**os.environ, **servers.env(TMPDIR=str(temp), HOME=str(home))},
        "cwd": work,
    }


def test_pip_fetches_from_an_authenticated_index_with_the_password_in_memory_only(
    servers: Servers, tmp_path: Path
) -> None:
    work, temp, home = tmp_path / "work", tmp_path / "tmp", tmp_path / "home"
    fetched = subprocess.run(**_fetch_from(servers, work, temp, home), check=False, timeout=120)
    assert fetched.returncode == 0
    assert [p.name for p in (work / "dest").iterdir()] == ["acme_probe-0.1.0-py3-none-any.whl"]
    for folder in (work, temp, home):
        assert _files_holding(folder, PASSWORD.encode()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_killed_while_pip_fetches_from_an_authenticated_index_the_password_stays_nowhere(
    servers: Servers, tmp_path: Path, sig: signal.Signals
) -> None:
    """The wheelhouse fetch of a release (kiln's PipDownload, run as its own process, pip
    a child of it) killed while pip runs: the canary password is in no file of the run's
    temp folder, home or work folder."""
    work, temp, home = tmp_path / "work", tmp_path / "tmp", tmp_path / "home"
    fetch = subprocess.Popen(**_fetch_from(servers, work, temp, home))
    pip: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 60
        while not pip and fetch.poll() is None and time.monotonic() < deadline:
            pip = {p: c for p, c in _children(fetch.pid).items() if " pip download " in c}
            time.sleep(0.01)
        assert pip, f"pip never ran (exit {fetch.poll()})"
        fetch.send_signal(sig)
        assert fetch.wait(timeout=30) == -sig
    finally:
        fetch.kill()
        for child in pip:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() for p in pip) and time.monotonic() < deadline:
        time.sleep(0.05)
    canary = PASSWORD.encode()
    assert _files_holding(temp, canary) == []
    assert _files_holding(home, canary) == []
    assert _files_holding(work, canary) == []
