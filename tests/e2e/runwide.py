"""What the end-to-end tests make once for a whole run, however many pytest-xdist workers
run it: the first worker that asks makes it, the others wait for it and read it. A
stack made so runs until the run ends: ``stop_stacks``, called by the process that ran
the session (xdist's controller, or pytest alone) from tests/conftest.py."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import docker
import docker.errors
import pytest


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the whole run: under pytest-xdist each worker's base folder is a
    child of the run's, which all workers see."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], dict[str, str]]
) -> dict[str, str]:
    """``make(folder)``'s answer, made by the first worker that asks (the others wait
    for it, then read it): ``folder`` is the run's ``name`` folder."""
    shared = run_folder(tmp_path_factory) / "once"
    shared.mkdir(exist_ok=True)
    done = shared / f"{name}.json"
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.is_file():
            answer = make(shared / name)
            done.write_text(json.dumps(answer))
    answer = json.loads(done.read_text())
    assert isinstance(answer, dict)
    return answer


def stop_at_the_end(tmp_path_factory: pytest.TempPathFactory, root: Path, registry: str) -> None:
    """Have ``stop_stacks`` stop the local stack of the workspace at ``root``."""
    shared = run_folder(tmp_path_factory) / "once"
    shared.mkdir(exist_ok=True)
    with (shared / "stacks.jsonl").open("a") as stacks:
        stacks.write(json.dumps({"root": str(root), "registry": registry}) + "\n")


GROUPS = "xdist-groups.json"  # see tests/xdist_groups.py


def write_groups(run: Path, groups: Mapping[str, str]) -> None:
    """Node id -> pytest-xdist group, for tests/xdist_groups.py's scheduler (each worker
    writes the same)."""
    tmp = run / f".{GROUPS}.{os.getpid()}"
    tmp.write_text(json.dumps(dict(groups), sort_keys=True))
    tmp.replace(run / GROUPS)


def untag(client: docker.DockerClient, registry: str) -> None:
    """Remove the local tags and digest references of images made for ``registry`` (a
    test's throwaway one), so repeated runs do not pile up images."""
    # The engine's one listing (not images.list(), which inspects each image after it and
    # fails when another worker removes one in between).
    for image in client.api.images():
        for reference in [*(image.get("RepoTags") or []), *(image.get("RepoDigests") or [])]:
            if reference.startswith(f"{registry}/"):
                # Untagging can drop the digest reference with it.
                with contextlib.suppress(docker.errors.ImageNotFound):
                    client.images.remove(reference)


def stop_stacks(run: Path) -> None:
    """Stop every stack made once in the run whose folder is ``run``, and untag its
    images."""
    stacks = run / "once" / "stacks.jsonl"
    if not stacks.is_file():
        return
    for line in stacks.read_text().splitlines():
        made = json.loads(line)
        subprocess.run(
            [sys.executable, "-m", "kiln", "stack", "down", "--repo", made["root"]],
            capture_output=True, check=False, timeout=120,
        )  # fmt: skip
        with contextlib.suppress(docker.errors.DockerException):
            untag(docker.from_env(), made["registry"])
