"""The smoke check of a pushed image: run it by digest, with no network, and see that
every baked helper's import package and ``kfp`` import, and that ``pip check`` reports
nothing but kfp's client dependencies, which are left out on purpose (kfp is baked
``--no-deps``, as KFP's own runtime installs it; images/*/Dockerfile filters the same).

One container runs it all: a short script imports the packages, then runs
``python3 -m pip check``, and prints one JSON line; the host judges it. The container
runner is passed in (Docker Engine in a release, a fake in unit tests).
"""

from __future__ import annotations

import functools
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import docker
import docker.errors
import requests

from kiln._errors import CommandFailed, ServiceUnavailable
from kiln._servers.credentials import Credentials

# What pip check may say of an image whose kfp was installed --no-deps.
_ALLOWED = re.compile(
    r"^(kfp \S+ requires \S+, which is not installed\.|No broken requirements found\.)$"
)
_TAIL = 20  # lines of output an error shows

_SCRIPT = """\
import importlib, json, subprocess, sys, traceback
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=3)
check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
print(json.dumps({"failed": failed, "pip_check": check.stdout + check.stderr}))
"""


@dataclass(frozen=True)
class Run:
    exit_code: int
    output: str  # stdout and stderr


class ContainerRunner(Protocol):
    """Runs ``command`` in a new container of ``image`` (a ``repo@sha256:...`` reference)
    with no network, and removes it; its exit code and output."""

    def __call__(self, image: str, command: Sequence[str], /) -> Run: ...


class DockerContainers:
    """The Docker Engine as a ContainerRunner: pulls the image by digest if it is missing,
    with the registry's ``credentials`` when kiln has them (sent per pull, never stored)."""

    def __init__(self, client: docker.DockerClient, credentials: Credentials | None = None) -> None:
        self._client = client
        self._credentials = credentials

    def _pull(self, image: str) -> None:
        try:
            self._client.images.get(image)
        except docker.errors.ImageNotFound:
            repository, _, digest = image.partition("@")
            auth = None
            if self._credentials is not None:
                user, password = self._credentials.basic
                auth = {"username": user, "password": password}
            self._client.images.pull(repository, tag=digest or None, auth_config=auth)

    def __call__(self, image: str, command: Sequence[str]) -> Run:
        try:
            self._pull(image)
            container = self._client.containers.run(
                image, list(command[1:]), entrypoint=list(command[:1]), network_mode="none",
                detach=True,
            )  # fmt: skip
            try:
                status = container.wait()
                output = container.logs(stdout=True, stderr=True).decode(errors="replace")
            finally:
                container.remove(force=True)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise ServiceUnavailable(
                f"Docker Engine failed while running {image} for its smoke check "
                f"({type(exc).__name__}: {exc}); check that the engine runs (`docker info`) "
                "and can pull from the registry"
            ) from None
        return Run(int(status.get("StatusCode", 1)), output)


def import_packages(wheel: Path) -> tuple[str, ...]:
    """The top-level import packages and modules a wheel installs (read from its files).
    Each file is read once per process while its size and mtime stay the same: a release
    asks for every wheel of the wheelhouse once per component."""
    stat = wheel.stat()
    return _import_packages(str(wheel), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _import_packages(wheel: str, _size: int, _mtime_ns: int) -> tuple[str, ...]:
    found: set[str] = set()
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            first, slash, _rest = name.partition("/")
            if first.endswith((".dist-info", ".data")):
                continue
            if slash:
                found.add(first)
            elif first.endswith(".py"):
                found.add(first.removesuffix(".py"))
    return tuple(sorted(found))


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-_TAIL:])


def smoke_check(
    runner: ContainerRunner,
    image: str,
    packages: Iterable[str],
    *,
    log: Callable[[str], None] = lambda _line: None,
) -> None:
    """Run ``image`` (``repo@sha256:...``): import ``packages`` and ``kfp``, run pip check.
    A CommandFailed naming the image and the output's tail when anything is wrong."""
    modules = sorted({"kfp", *packages})
    command = ["python3", "-c", _SCRIPT, *modules]
    log(f"    smoke check {image}: import {', '.join(modules)}; python3 -m pip check")
    run = runner(image, command)
    for line in run.output.rstrip().splitlines():
        log(f"      {line}")
    try:
        result = json.loads(run.output.rstrip().splitlines()[-1])
        failed: dict[str, str] = dict(result["failed"])
        pip_check = str(result["pip_check"])
    except (IndexError, ValueError, KeyError, TypeError):
        raise CommandFailed(
            f"smoke check of {image}: `python3 -c <smoke script>` exited {run.exit_code} "
            f"without a result; the image's python3 may be broken. Output:\n{_tail(run.output)}"
        ) from None
    problems = [f"import {name} failed:\n{_tail(why)}" for name, why in sorted(failed.items())]
    complaints = [line for line in pip_check.splitlines() if not _ALLOWED.match(line)]
    if complaints:
        problems.append(
            "`python3 -m pip check` reports more than kfp's intentionally absent client "
            "dependencies:\n" + _tail("\n".join(complaints))
        )
    if problems:
        raise CommandFailed(
            f"smoke check of {image} failed (it is pushed; no component YAML was written): "
            + "\n".join(problems)
            + "\nFix the image's lock or helpers (`kiln lock`), bump its version, and release again"
        )
    log(f"    smoke check {image}: ok")
