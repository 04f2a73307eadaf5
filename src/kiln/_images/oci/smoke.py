"""The smoke check of an image pushed by digest (its tag is put only after it passes):
run it by digest, with no network, and see that every module it must provide imports
(kfp and each baked helper's import packages), and that every installed distribution's
requirements are met (what ``pip check`` says), but for kfp's client dependencies,
which are left out on purpose (kfp is baked ``--no-deps``, as KFP's own runtime
installs it).

One container runs a short script: it imports the modules, then lists every installed
distribution with its ``Requires-Dist`` and the interpreter's marker environment, as
one JSON line (the image needs no pip: Debian's Python has none). The host judges it
with ``packaging``. The container runner is passed in (Docker Engine in a release, a
fake in unit tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import requests
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from kiln._errors import CommandFailed, ServiceUnavailable
from kiln._servers.credentials import Credentials

if TYPE_CHECKING:
    import docker

# Installed --no-deps: what these require may be missing.
NO_DEPS = frozenset({"kfp", "pip"})
_TAIL = 20  # lines of output an error shows


def _fix(_failed: Sequence[str]) -> str:
    return "fix the image's lock or helpers (`kiln lock`), bump its version, and release again"


_SCRIPT = """\
import importlib, json, os, platform, sys, traceback
from importlib import metadata
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=3)
dists = {}
for dist in metadata.distributions():
    dists[dist.metadata["Name"]] = [dist.version, list(dist.requires or [])]
info = sys.implementation.version
env = {
    "implementation_name": sys.implementation.name,
    "implementation_version": "%d.%d.%d" % (info.major, info.minor, info.micro),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": "%d.%d" % sys.version_info[:2],
    "sys_platform": sys.platform,
}
print(json.dumps({"failed": failed, "distributions": dists, "environment": env}))
"""


def unmet(distributions: Mapping[str, Any], environment: Mapping[str, str]) -> list[str]:
    """What ``pip check`` would report of ``distributions`` (name -> [version, requires]):
    a requirement that applies here and no installed distribution meets. Distributions
    installed without their dependencies (kfp, pip) are not asked."""
    installed = {str(canonicalize_name(n)): str(v[0]) for n, v in distributions.items()}
    found = []
    for name, (version, requires) in sorted(distributions.items()):
        if canonicalize_name(name) in NO_DEPS:
            continue
        for raw in requires:
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                found.append(f"{name} {version} has an unreadable requirement {raw!r}")
                continue
            if req.marker is not None and not req.marker.evaluate({**environment, "extra": ""}):
                continue
            have = installed.get(str(canonicalize_name(req.name)))
            if have is None:
                found.append(f"{name} {version} requires {req.name}, which is not installed.")
            elif not req.specifier.contains(have, prereleases=True):
                found.append(
                    f"{name} {version} has requirement {req}, but you have {req.name} {have}."
                )
    return found


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
        import docker.errors  # noqa: PLC0415 - loaded with the client (kiln._util.docker)

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
        import docker.errors  # noqa: PLC0415 - loaded with the client (kiln._util.docker)

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


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-_TAIL:])


def smoke_check(
    runner: ContainerRunner,
    image: str,
    modules: Iterable[str],
    *,
    log: Callable[[str], None] = lambda _line: None,
    fix: Callable[[Sequence[str]], str] = _fix,
) -> None:
    """Run ``image`` (``repo@sha256:...``): import ``modules``, check every installed
    distribution's requirements. A CommandFailed naming the image, the output's tail and
    what to do (``fix`` of the modules that failed to import) when anything is wrong."""
    names = sorted(set(modules))
    command = ["python3", "-c", _SCRIPT, *names]
    log(f"    smoke check {image}: import {', '.join(names)}; requirements of every distribution")
    run = runner(image, command)
    for line in run.output.rstrip().splitlines():
        log(f"      {line[:300]}")
    try:
        result = json.loads(run.output.rstrip().splitlines()[-1])
        failed: dict[str, str] = dict(result["failed"])
        complaints = unmet(dict(result["distributions"]), dict(result["environment"]))
    except (IndexError, ValueError, KeyError, TypeError):
        raise CommandFailed(
            f"smoke check of {image}: `python3 -c <smoke script>` exited {run.exit_code} "
            f"without a result; the image's python3 may be broken. Output:\n{_tail(run.output)}"
        ) from None
    problems = [f"import {name} failed:\n{_tail(why)}" for name, why in sorted(failed.items())]
    if complaints:
        problems.append(
            "installed distributions lack what they require (what `pip check` reports; "
            "kfp's client dependencies are left out on purpose):\n" + _tail("\n".join(complaints))
        )
    if problems:
        raise CommandFailed(
            f"smoke check of {image} failed: "
            + "\n".join(problems)
            + "\n"
            + _capital(fix(sorted(failed)))
        )
    log(f"    smoke check {image}: ok")
