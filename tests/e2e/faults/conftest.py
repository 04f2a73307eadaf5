"""The fault-injection harness: a copy of this monorepo released with `kiln release
--index URL --registry HOST` to the authenticated servers (``servers``: its password is
a canary), through a ``FaultProxy`` before each; helpers to release with faults, kill a
release at a stage line, read what the servers hold, and look for the canary."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from kiln._errors import EXIT_CODES
from tests.e2e.conftest import PASSWORD, KilnCache, OsPins, Servers, copy_project
from tests.e2e.faults.proxy import Fault, FaultProxy
from tests.e2e.one_machine import held
from tests.e2e.runwide import untag
from tests.e2e.tools import kiln_here

_LABELS = "|".join(re.escape(label) for label in EXIT_CODES)
CLEAN_FAILURE = re.compile(rf"^kiln: ({_LABELS}): \S", re.MULTILINE)


@dataclass
class Faulty:
    """The copy (``root``), its environment, the proxies, the servers behind them, and
    the tally of (fault, point) pairs injected and survived."""

    root: Path
    env: dict[str, str]
    index: FaultProxy
    registry: FaultProxy
    servers: Servers
    tmp: Path
    injected: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # what a clean release left
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> tuple[str, ...]:
        return ("--index", f"http://{self.index.address}", "--registry", self.registry.address)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "kiln", *args, "--repo", str(self.root)]

    def kiln(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=600, check=False
        )

    def release(self, *faults: Fault) -> subprocess.CompletedProcess[str]:
        """`kiln release` against the proxies with ``faults`` injected; each fault that
        fired is tallied once (a (fault, point) pair), with the requests it hit."""
        for proxy, wanted in ((self.index, "index"), (self.registry, "registry")):
            proxy.inject(*(f for f in faults if _side(f) == wanted))
        try:
            return self.kiln("release", *self.target)
        finally:
            for proxy in (self.index, self.registry):
                for fault in proxy.clear():  # one (fault, point) pair, however many hits
                    if fault.fired:
                        self.injected.append(f"{fault.point} ({len(fault.fired)} request(s))")

    def killed_at(self, stage: str, sig: signal.Signals) -> tuple[bool, str]:
        """`kiln release`, sent ``sig`` when its stage line ``==> STAGE`` (a regex) shows;
        whether it was, and what it printed. Its process group is gone on return."""
        with subprocess.Popen(
            self.argv("release", *self.target),
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            assert proc.stderr is not None
            killed, lines = False, []
            for line in proc.stderr:
                lines.append(line)
                if not killed and re.match(rf"==> {stage}", line):
                    proc.send_signal(sig)
                    killed = True
            proc.wait(timeout=120)
        _reap(proc.pid)
        if killed:
            self.injected.append(f"{sig.name} at {stage}")
        return killed, "".join(lines)

    def published(self) -> tuple[dict[str, str], dict[str, str]]:
        """What the servers hold, asked directly: index filename -> sha256 (a file listed
        twice fails), and registry repository:tag -> manifest digest."""
        return held(self.servers)

    def leaks(self) -> list[str]:
        """Files holding the canary password: the checkout (its .kiln too, not the run's
        shared cache it links to), the temporary folder kiln ran with, the servers'
        storage (wheels, blobs)."""
        return canary_files(
            self.root,
            self.tmp,
            self.servers.storage / "packages",
            self.servers.storage / "registry",
        )


def canary_files(*tops: Path) -> list[str]:
    """The files under ``tops`` holding the canary password (links not followed)."""
    canary = PASSWORD.encode()
    found = []
    for top in tops:
        for folder, _, names in os.walk(top):
            for name in names:
                path = Path(folder) / name
                if path.is_file() and not path.is_symlink() and canary in path.read_bytes():
                    found.append(str(path))
    return found


def _side(fault: Fault) -> str:
    return "registry" if fault.path.startswith("^/v2") else "index"


def _reap(pid: int) -> None:
    """Wait for what the killed kiln started (twine, pip) to end; kill it after 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)


def clean(proc: subprocess.CompletedProcess[str]) -> None:
    """A release that failed did so cleanly: an exit code of kiln's, its one-line
    error, no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode != 0:
        assert proc.returncode in EXIT_CODES.values(), proc.stderr
        assert CLEAN_FAILURE.search(proc.stderr), proc.stderr


def isolated_checkout(
    root: Path, folder: Path, servers: Servers, os_pins: OsPins, kiln_cache: KilnCache
) -> dict[str, str]:
    """This monorepo copied to ``root`` (a git repository of no commit), and the
    environment kiln runs in over it: its HOME and TMPDIR under ``folder``, no netrc or
    docker config, the servers' credentials and none inherited."""
    copy_project(root, os_pins, kiln_cache)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    home, tmp = folder / "home", folder / "tmp"
    home.mkdir()
    tmp.mkdir()
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("KILN_INDEX_", "KILN_REGISTRY_"))
    }
    return inherited | servers.env(
        HOME=str(home), NETRC=str(home / "no-netrc"), DOCKER_CONFIG=str(home / "no-docker"),
        TMPDIR=str(tmp),
    )  # fmt: skip


@pytest.fixture(scope="module")
def faulty(
    servers: Servers,
    docker_client: docker.DockerClient,
    os_pins: OsPins,
    kiln_cache: KilnCache,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Faulty]:
    """A copy of this monorepo released once, cleanly, through the proxies."""
    folder = tmp_path_factory.mktemp("faults")
    root = folder / "monorepo"
    env = isolated_checkout(root, folder, servers, os_pins, kiln_cache)
    tmp = Path(env["TMPDIR"])
    index = FaultProxy(servers.index_url.removeprefix("http://"))
    registry = FaultProxy(servers.registry)
    made = Faulty(root, env, index, registry, servers, tmp)
    try:
        first = made.release()
        assert first.returncode == 0, first.stderr
        made.files, made.tags = made.published()
        yield made
    finally:
        index.close()
        registry.close()
        untag(docker_client, registry.address)


def bump(faulty: Faulty, helper: str = "viz") -> None:
    proc = kiln_here(faulty.root, "bump", helper, "patch")
    assert proc.returncode == 0, proc.stderr
