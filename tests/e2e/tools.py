"""What the end-to-end tests run: kiln on a workspace (in the test's process, or in one
of its own), pip into a private venv, python3 in an image; and two small helpers."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from packaging.utils import canonicalize_name

from kiln._cli import main

# pip in a test venv sees neither the machine's pip config nor its extra indexes.
PRIVATE_PIP_ENV = {"PIP_CONFIG_FILE": "/dev/null", "PATH": "/usr/bin:/bin"}


def by(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Manifest rows by one of their fields (``name``, ``filename``)."""
    return {item[key]: item for item in items}


def pip_into(python: str, *args: str) -> subprocess.CompletedProcess[str]:
    """pip ARGS for the venv of ``python`` (``pip --python``: the venv needs no pip of its
    own), seeing neither the machine's pip config nor its extra indexes."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, *args, "--isolated"],
        env=PRIVATE_PIP_ENV, capture_output=True, text=True, check=True,
    )  # fmt: skip


def private_venv(directory: Path, index_url: str, *requirements: str) -> str:
    """A fresh venv with ``requirements`` installed from the private index alone
    (no machine pip config, no other index); returns its python. No bytecode is
    written ahead: Python compiles what the test imports."""
    venv.create(directory, with_pip=False)
    python = str(directory / "bin" / "python")
    pip_into(python, "install", "--quiet", "--no-input", "--no-compile",
             "--index-url", f"{index_url}/simple/", *requirements)  # fmt: skip
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


def kiln_process(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m kiln ARGS --repo ROOT` in a process of its own, with ``env`` added to
    this one's environment."""
    return subprocess.run(
        [sys.executable, "-m", "kiln", *args, "--repo", str(root)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def kiln_here(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kiln ARGS --repo ROOT` run in this process, through the CLI's own ``main``: the
    same exit code, stdout and stderr, without a new interpreter importing kiln and kfp
    (most of a short command's time)."""
    argv = [*args, "--repo", str(root)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:  # main always exits; argparse too, on a usage error
            code = exc.code
    assert isinstance(code, int), code
    return subprocess.CompletedProcess(["kiln", *argv], code, out.getvalue(), err.getvalue())


@dataclass
class Repo:
    root: Path
    index_url: str
    registry: str

    def kiln(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """kiln on this repo: in this process, unless ``env`` changes its environment."""
        if env:
            return kiln_process(self.root, *args, env=env)
        return kiln_here(self.root, *args)

    def kiln_json(self, *args: str) -> Any:
        proc = self.kiln(*args, "--json")
        assert proc.returncode == 0, f"kiln {' '.join(args)} failed:\n{proc.stderr}"
        return json.loads(proc.stdout)


# What runs on the analytics image, in a copy of this repo.
_ANALYTICS = (
    "images/analytics",
    "pipelines/components/compare.py",
    "pipelines/components/tables.py",
    "pipelines/contrast_compare.py",
    "pipelines/table_quality.py",
)


def drop_analytics(root: Path) -> None:
    """Remove the analytics image and what runs on it from the copy at ``root``: a test
    that needs the base image alone builds and pushes less."""
    for rel in _ANALYTICS:
        target = root / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
