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

import pytest

from tests.e2e.conftest import IN_CI, copy_project
from tests.e2e.tools import kiln_here

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
