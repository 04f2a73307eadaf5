"""A release matrix's faults, on the authenticated servers (``servers``: the password is
a canary) behind a ``FaultProxy`` each, which counts every upload the index answered:

- a matrix job SIGKILLed part-way through publishing (held by the proxy on its second
  upload, after its first was stored): `--finalize` refuses (exit 12) naming what is
  missing and "re-run job J"; the job run again completes the release, and each wheel
  was uploaded once, each image is at the plan's digest, no file holds the password;
- two runs of one job at once (the first held on its upload until the second has
  finished): both exit 0, and each wheel was stored once (the first run's upload is
  refused as already there, and counts as published: same sha256).

Each job runs as a `kiln` process in a copy of its own, as a matrix job on its runner.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from kiln._servers.credentials import Credentials
from kiln._servers.registry import RegistryClient
from tests.e2e.conftest import PASSWORD, USER, KilnCache, OsPins, Servers
from tests.e2e.faults.conftest import canary_files, clean, isolated_checkout
from tests.e2e.faults.proxy import Fault, FaultProxy
from tests.e2e.runwide import untag
from tests.e2e.tools import kiln_here

pytestmark = pytest.mark.e2e

UPLOAD = ("POST", r"^/")  # twine's upload to the index, one request per file
_IGNORE = shutil.ignore_patterns(".kiln", "dist", "__pycache__")


@dataclass
class Matrix:
    """The monorepo ``source`` and where its copies go (``folder``), the environment of
    every kiln process, the proxies and the servers behind them."""

    source: Path
    folder: Path
    env: dict[str, str]
    index: FaultProxy
    registry: FaultProxy
    servers: Servers
    cache: KilnCache
    copies: int = 0

    @property
    def target(self) -> tuple[str, ...]:
        return ("--index", f"http://{self.index.address}", "--registry", self.registry.address)

    def copy(self) -> Path:
        """A fresh copy of ``source``: a matrix job's checkout, with the run's kiln cache."""
        self.copies += 1
        root = self.folder / f"copy-{self.copies}"
        shutil.copytree(self.source, root, ignore=_IGNORE)
        self.cache.link_into(root)
        return root

    def argv(self, root: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "kiln", *args, *self.target, "--repo", str(root)]

    def kiln(self, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(root, *args), env=self.env, capture_output=True, text=True,
            timeout=900, check=False,
        )  # fmt: skip
        clean(proc)
        return proc

    def plan(self, jobs: int) -> tuple[Path, dict[str, Any]]:
        made = self.kiln(self.source, "plan", "--jobs", str(jobs), "--json")
        assert made.returncode == 0, made.stderr
        path = self.folder / f"plan-{self.copies}.json"
        path.write_text(made.stdout)
        plan: dict[str, Any] = json.loads(made.stdout)
        return path, plan

    def job(self, plan: Path, number: int, *extra: str) -> subprocess.Popen[str]:
        """`kiln release --job NUMBER` started in a copy of its own (its process group)."""
        args = ("release", "--job", str(number), "--plan", str(plan), "--json", *extra)
        return subprocess.Popen(
            self.argv(self.copy(), *args),
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip

    def run_job(self, plan: Path, number: int) -> dict[str, Any]:
        with self.job(plan, number) as proc:
            out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
        ran: dict[str, Any] = json.loads(out)
        return ran

    def finalize(self, plan: Path) -> subprocess.CompletedProcess[str]:
        return self.kiln(self.copy(), "release", "--finalize", "--plan", str(plan))

    def stored(self) -> Counter[str]:
        """How many times the index stored each file (answered 200) through the proxy."""
        return Counter(name for name, status in self.index.uploads if status == 200)

    def refused(self) -> Counter[str]:
        """Each file's uploads the index refused as already there: 409, which pypiserver
        answers twine with 400 (what PyPI answers; twine/issues/1265)."""
        return Counter(name for name, status in self.index.uploads if status in (400, 409))

    def leaks(self) -> list[str]:
        """Files holding the canary: the copies (their .kiln, not the run's cache they
        link to), kiln's temporary folder, the servers' storage."""
        return canary_files(
            self.folder, self.servers.storage / "packages", self.servers.storage / "registry"
        )


def _wait_for(fault: Fault, proc: subprocess.Popen[str], what: str) -> None:
    """Until the proxy holds ``fault``'s request (a condition, polled), or fail if the job
    ended first."""
    deadline = time.monotonic() + 600
    while not fault.fired:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the job ended ({proc.returncode}) before {what}:\n{err}")
        assert time.monotonic() < deadline, f"no {what} within 600 s"
        time.sleep(0.1)


def _wheels(plan: dict[str, Any], number: int) -> list[str]:
    """The wheels job ``number`` uploads (the plan found them missing), in upload order."""
    actions = {w["filename"]: w["action"] for w in plan["wheels"]}
    return [f for f in plan["jobs"][number]["publishes"] if actions[f] == "publish"]


def _assert_published_once(
    matrix: Matrix, plan: dict[str, Any], before: Counter[str] | None = None
) -> None:
    """Each wheel ``plan`` uploads was stored once (since ``before``'s uploads); each
    image is tagged at the plan's digest, an index over its platforms' images."""
    stored = matrix.stored()
    wanted = Counter(w["filename"] for w in plan["wheels"] if w["action"] == "publish")
    assert stored - (before or Counter()) == wanted
    assert all(stored[f] == 1 for f in wanted)
    registry = RegistryClient(matrix.servers.registry, credentials=Credentials(USER, PASSWORD))
    for image in (i for job in plan["jobs"] for i in job["images"]):
        path = image["repository"].split("/", 1)[1]
        assert registry.digest(path, image["tag"]) == image["digest"], image["name"]
        if image["platforms"]:
            index = json.loads(registry.manifest(path, image["digest"], lists=True))
            listed = [m["digest"] for m in index["manifests"]]
            assert listed == [p["digest"] for p in image["platforms"]], image["name"]


def test_a_killed_job_run_again_completes_the_release_each_artifact_once(
    matrix: Matrix,
) -> None:
    path, plan = matrix.plan(2)
    uploads = [_wheels(plan, n) for n in range(2)]
    killed = max(range(2), key=lambda n: len(uploads[n]))
    other = 1 - killed
    assert len(uploads[killed]) >= 2, uploads  # one stored before the kill, one held
    assert all(job["images"] for job in plan["jobs"])
    assert sorted(matrix.run_job(path, other)["uploaded"]) == sorted(uploads[other])

    # The job, held on its second upload (never forwarded), is SIGKILLed there.
    held = Fault("hold", *UPLOAD, nth=2, seconds=900)
    matrix.index.inject(held)
    with matrix.job(path, killed) as proc:
        _wait_for(held, proc, "its second upload")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    matrix.index.let_go()
    matrix.index.clear()
    assert proc.returncode == -signal.SIGKILL
    ((first, status),) = matrix.index.uploads[len(uploads[other]) :]  # its first wheel
    assert (first, status) == (first, 200)
    assert first in uploads[killed]
    missing = [w for w in uploads[killed] if w != first]
    assert matrix.leaks() == []

    refused = matrix.finalize(path)
    assert refused.returncode == 12, refused.stderr
    job = plan["jobs"][killed]
    rerun = f"(job {killed} publishes it: re-run job {killed})"
    for wheel in missing:
        assert f"{wheel} is not on http://{matrix.index.address} {rerun}" in refused.stderr
    for image in job["images"]:
        ref = f"{image['repository']}:{image['tag']}"
        assert f"{ref} is not in the registry {rerun}" in refused.stderr
    assert first not in refused.stderr  # published: not missing
    assert f"re-run job(s) {killed} of the matrix" in refused.stderr
    assert not (matrix.folder / f"copy-{matrix.copies}" / "dist" / "manifest.json").exists()

    again = matrix.run_job(path, killed)
    assert sorted(again["uploaded"]) == sorted(missing)  # not the first again
    done = matrix.finalize(path)
    assert done.returncode == 0, done.stderr
    _assert_published_once(matrix, plan)
    assert matrix.refused() == Counter()  # no upload of a file already there was tried
    assert matrix.leaks() == []


def test_two_runs_of_one_job_at_once_publish_each_artifact_once(matrix: Matrix) -> None:
    """The first run is held on its first upload until the second has published the
    whole job; then its upload reaches the index, which refuses it (409): the file is
    there with the same sha256, so the first run counts it published and exits 0."""
    proc = kiln_here(matrix.source, "bump", "viz", "patch")
    assert proc.returncode == 0, proc.stderr
    before = matrix.stored()
    path, plan = matrix.plan(2)
    number = next(n for n in range(2) if _wheels(plan, n))
    mine = _wheels(plan, number)

    held = Fault("hold", *UPLOAD, seconds=900, then="forward")
    matrix.index.inject(held)
    with matrix.job(path, number, "--verbose") as first:
        _wait_for(held, first, "its first upload")
        second = matrix.run_job(path, number)  # not held: the fault fires once
        matrix.index.let_go()
        out, err = first.communicate(timeout=900)
    matrix.index.clear()
    assert first.returncode == 0, err
    assert "uploaded meanwhile, with the same bytes" in err
    assert sorted(second["uploaded"]) == sorted(mine)
    assert json.loads(out)["pushed"] == second["pushed"]  # pushed again: the same digests
    refused = matrix.refused()  # the held upload, refused once: one of the job's wheels
    assert sum(refused.values()) == 1, matrix.index.uploads
    assert set(refused) <= set(mine)

    matrix.run_job(path, 1 - number)
    done = matrix.finalize(path)
    assert done.returncode == 0, done.stderr
    _assert_published_once(matrix, plan, before)
    assert matrix.leaks() == []


@pytest.fixture(scope="module")
def matrix(
    servers: Servers,
    docker_client: docker.DockerClient,
    os_pins: OsPins,
    kiln_cache: KilnCache,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Matrix]:
    """This monorepo copied, a plain release of it planned against the proxies before the
    module's authenticated servers; kiln's HOME and TMPDIR its own."""
    folder = tmp_path_factory.mktemp("matrix-faults")
    source = folder / "monorepo"
    env = isolated_checkout(source, folder, servers, os_pins, kiln_cache)
    index = FaultProxy(servers.index_url.removeprefix("http://"))
    registry = FaultProxy(servers.registry)
    try:
        yield Matrix(source, folder, env, index, registry, servers, kiln_cache)
    finally:
        index.let_go()
        index.close()
        registry.close()
        untag(docker_client, registry.address)
