"""The embedded default stack: a private index and a registry on 127.0.0.1.

- index: pypiserver, with its fallback to public PyPI disabled (an unknown
  project must be a 404, not a redirect to pypi.org);
- registry: CNCF distribution, the ``docker-registry``/``registry`` binary when
  present, otherwise the ``registry:2`` container on the host network.

Both keep their data under ``<state>/`` so it survives ``down``/``up``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from kiln._errors import ServiceUnavailable
from kiln._model import StackConfig

_READY_TIMEOUT = 30.0
_REGISTRY_CONTAINER = "kiln-registry"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    url: str
    running: bool
    pid: int | None
    detail: str


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class LocalStack:
    def __init__(self, config: StackConfig, state_dir: Path) -> None:
        self.config = config
        self.dir = state_dir
        self._state_file = state_dir / "state.json"

    # ------------------------------------------------------------------ state
    def _load(self) -> dict[str, dict[str, object]]:
        if not self._state_file.is_file():
            return {}
        data: dict[str, dict[str, object]] = json.loads(self._state_file.read_text())
        return data

    def _save(self, state: dict[str, dict[str, object]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._state_file.write_text(json.dumps(state, indent=2) + "\n")

    @property
    def index_url(self) -> str:
        return self.config.index_url

    @property
    def registry(self) -> str:
        return self.config.registry

    def _probes(self) -> dict[str, tuple[str, int]]:
        return {
            "index": (f"{self.config.index_url}/simple/", self.config.index_port),
            "registry": (f"http://{self.config.registry}/v2/", self.config.registry_port),
        }

    # ------------------------------------------------------------------ start
    def _spawn(self, name: str, argv: list[str]) -> int:
        log = self.dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.dir,
            )  # fmt: skip
        return proc.pid

    def _start_index(self) -> dict[str, object]:
        data = self.dir / "index"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "pypiserver", "run",
            "-i", self.config.host, "-p", str(self.config.index_port),
            "--disable-fallback", "-a", ".", "-P", ".", str(data),
        ]  # fmt: skip
        return {"pid": self._spawn("index", argv), "kind": "pypiserver", "data": str(data)}

    def _start_registry(self) -> dict[str, object]:
        data = self.dir / "registry"
        data.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("docker-registry") or shutil.which("registry")
        if binary:
            config = self.dir / "registry.yml"
            config.write_text(
                "version: 0.1\n"
                "log:\n  level: warn\n"
                "storage:\n"
                f"  filesystem:\n    rootdirectory: {data}\n"
                "  delete:\n    enabled: false\n"
                f"http:\n  addr: {self.config.registry}\n"
            )
            return {"pid": self._spawn("registry", [binary, "serve", str(config)]), "kind": binary}
        return self._start_registry_container(data)

    def _start_registry_container(self, data: Path) -> dict[str, object]:
        import docker  # noqa: PLC0415 - only needed on machines without the registry binary
        import docker.errors  # noqa: PLC0415

        try:
            client = docker.from_env()
            client.containers.run(
                "registry:2",
                name=_REGISTRY_CONTAINER,
                detach=True,
                network_mode="host",
                environment={"REGISTRY_HTTP_ADDR": self.config.registry},
                volumes={str(data): {"bind": "/var/lib/registry", "mode": "rw"}},
                remove=True,
            )
        except docker.errors.DockerException as exc:
            raise ServiceUnavailable(
                f"no registry binary on PATH and the registry:2 container failed ({exc}); "
                "install Debian's `docker-registry` package or make registry:2 pullable"
            ) from None
        return {"pid": None, "kind": "container registry:2", "container": _REGISTRY_CONTAINER}

    def up(self, *, echo: Callable[[str], None] = lambda _m: None) -> list[ServiceStatus]:
        """Start whatever is not running yet; wait until both answer."""
        self.dir.mkdir(parents=True, exist_ok=True)
        state = self._load()
        starters = {"index": self._start_index, "registry": self._start_registry}
        for name, (url, port) in self._probes().items():
            if _answers(url) and self._owns(state.get(name, {})):
                continue
            if _answers(url):
                raise ServiceUnavailable(
                    f"{url} already answers, but this checkout did not start it (state in "
                    f"{self._state_file}): another checkout's stack or another server; stop it "
                    f"(`kiln stack down` where it was started) or set [tool.kiln.stack] "
                    f"{name}-port in pyproject.toml"
                )
            if _port_open(self.config.host, port):
                raise ServiceUnavailable(
                    f"port {self.config.host}:{port} is taken by something that is not a {name}; "
                    f"stop it or set [tool.kiln.stack] {name}-port in pyproject.toml"
                )
            echo(f"starting {name} on {url}")
            state[name] = starters[name]()
            self._save(state)
        deadline = time.monotonic() + _READY_TIMEOUT
        for name, (url, _port) in self._probes().items():
            while not _answers(url):
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        f"the {name} did not answer {url} within {_READY_TIMEOUT:.0f} s; "
                        f"its log ({self.dir / (name + '.log')}) ends:\n"
                        + _tail(self.dir / f"{name}.log")
                    )
                time.sleep(0.2)
        return self.status()

    # ------------------------------------------------------------------ stop
    def down(self) -> None:
        state = self._load()
        for name, entry in list(state.items()):
            pid = entry.get("pid")
            if isinstance(pid, int) and _pid_alive(pid):
                os.killpg(pid, signal.SIGTERM)
                for _ in range(50):
                    if not _pid_alive(pid):
                        break
                    time.sleep(0.1)
                else:
                    os.killpg(pid, signal.SIGKILL)
            if entry.get("container"):
                subprocess.run(  # best effort: the container removes itself when stopped
                    ["docker", "stop", str(entry["container"])], capture_output=True, check=False
                )
            del state[name]
        self._save(state)

    @staticmethod
    def _owns(entry: dict[str, object]) -> bool:
        """Whether a state entry is a process or container this stack started and still runs."""
        pid = entry.get("pid")
        if isinstance(pid, int):
            return _pid_alive(pid)
        return bool(entry.get("container"))

    def status(self) -> list[ServiceStatus]:
        state = self._load()
        result = []
        for name, (url, _port) in self._probes().items():
            entry = state.get(name, {})
            pid = entry.get("pid")
            running = _answers(url)
            if entry:
                detail = str(entry.get("kind", ""))
            elif running:  # something else answers on this port
                detail = "not started by this checkout's kiln"
            else:
                detail = ""
            result.append(
                ServiceStatus(
                    name=name,
                    url=url,
                    running=running,
                    pid=pid if isinstance(pid, int) else None,
                    detail=detail,
                )
            )
        return result
