"""The embedded default stack: a private index and a registry on 127.0.0.1.

- index: pypiserver, with its fallback to public PyPI disabled (an unknown
  project must be a 404, not a redirect to pypi.org), run by ``kiln._servers.pypi``
  so that its folder is not parsed again on every request;
- registry: CNCF distribution, the ``docker-registry``/``registry`` binary when
  present, otherwise the ``registry:2`` container on the host network.

Both keep their data under ``<state>/`` so it survives ``down``/``up``.

``<state>/state.json`` records every server ``up`` started (``supervision``).
``down`` stops exactly those, never a recycled pid. ``up`` refuses to start a second
server on the same data while the recorded one still runs (for instance on a port
that was changed in ``pyproject.toml`` since).

``up`` and ``down`` hold the checkout's lock (``kiln._util.lock``, in the folder that
holds ``<state>``): two ``up`` at once start one stack, the second finding it running.
A server ``up`` started that exits before it answers (another program took its port
meanwhile) is forgotten, and what that ``up`` started is stopped again.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from kiln._errors import ConfigError, ServiceUnavailable
from kiln._options import DEFAULT_DOCKER_HOST
from kiln._servers.supervision import (
    ServerRecord,
    StateFile,
    process_gone,
    start_ticks,
    terminate,
)
from kiln._util import http
from kiln._util.cmd import spawn
from kiln._util.docker import start_container, stop_container
from kiln._util.files import write_text_atomic
from kiln._util.lock import checkout_lock
from kiln._workspace.model import StackConfig

_READY_TIMEOUT = 30.0
_REGISTRY_CONTAINER = "kiln-registry"
_ARTICLE = {"index": "an", "registry": "a"}


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    url: str
    running: bool
    pid: int | None
    detail: str


@dataclass(frozen=True)
class StoppedServer:
    """One server ``down`` stopped."""

    name: str
    pid: int | None
    address: str  # host:port it was started on ("" when the record predates ports)
    how: str  # the signal that ended it, or "docker stop"

    def __str__(self) -> str:
        where = f" on {self.address}" if self.address else ""
        what = f"pid {self.pid}" if self.pid is not None else "container"
        return f"stopped the {self.name}{where} ({what}, {self.how})"


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _answers(url: str) -> bool:
    return http.answers(url, timeout=2)


def _not_ours(record: ServerRecord) -> str | None:
    """Why a record is not (or no longer) a server this stack started and that still
    runs; None when it is one."""
    if record.pid is None and record.container:
        return _container_gone(record)
    return process_gone(record)


def _container_gone(record: ServerRecord) -> str | None:
    # Checking a container needs Docker Engine: ask the registry it serves instead.
    address = record.address
    if not address or _answers(f"http://{address}/v2/"):
        return None
    return f"its container {record.container} does not answer on {address}"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class LocalStack:
    def __init__(
        self, config: StackConfig, state_dir: Path, *, docker_host: str = DEFAULT_DOCKER_HOST
    ) -> None:
        """``docker_host``: the engine that runs registry:2 where no registry binary is
        installed (``Options.docker_host``)."""
        self.config = config
        self.dir = state_dir
        self.docker_host = docker_host
        self._state = StateFile(state_dir / "state.json")

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
        return spawn(argv, cwd=self.dir, log=self.dir / f"{name}.log")

    def _index_command(self, data: Path) -> list[str]:
        return [
            sys.executable, "-m", "kiln._servers.pypi", "run",
            "-i", self.config.host, "-p", str(self.config.index_port),
            "--disable-fallback", "-a", ".", "-P", ".", str(data),
        ]  # fmt: skip

    def _registry_command(self, data: Path) -> list[str] | None:
        """The registry binary's command line (writing its config), or None without one."""
        binary = shutil.which("docker-registry") or shutil.which("registry")
        if not binary:
            return None
        config = self.dir / "registry.yml"
        write_text_atomic(
            config,
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {data}\n"
            "  delete:\n    enabled: false\n"
            f"http:\n  addr: {self.config.registry}\n",
        )
        return [binary, "serve", str(config)]

    def _start(self, name: str, port: int) -> ServerRecord:
        data = self.dir / name
        data.mkdir(parents=True, exist_ok=True)
        where = ServerRecord(
            host=self.config.host, port=port, data=str(data),
            started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )  # fmt: skip
        if name == "index":
            argv, kind = self._index_command(data), "pypiserver"
        else:
            registry_argv = self._registry_command(data)
            if registry_argv is None:
                self._start_registry_container(data)
                return replace(where, kind="container registry:2", container=_REGISTRY_CONTAINER)
            argv, kind = registry_argv, registry_argv[0]
        pid = self._spawn(name, argv)
        return replace(where, kind=kind, pid=pid, argv=tuple(argv), started_ticks=start_ticks(pid))

    def _start_registry_container(self, data: Path) -> None:
        try:
            start_container(
                self.docker_host, "registry:2", name=_REGISTRY_CONTAINER,
                environment={"REGISTRY_HTTP_ADDR": self.config.registry},
                volumes={str(data): "/var/lib/registry"},
            )  # fmt: skip
        except ServiceUnavailable as exc:
            raise ServiceUnavailable(
                f"no registry binary on PATH and the registry:2 container failed ({exc}); "
                "install Debian's `docker-registry` package or make registry:2 pullable"
            ) from None

    def _moved(self, name: str, record: ServerRecord) -> str | None:
        """Why our running ``record`` is not where the config now puts the ``name``, or None."""
        port, host = record.port, record.host or self.config.host
        pid = record.pid
        what = f"pid {pid}" if pid is not None else f"container {record.container}"
        if port is None:  # recorded before kiln recorded ports
            url = self._probes()[name][0]
            if _answers(url):
                return None
            return (
                f"the {name} started by this checkout ({what}, recorded by an older kiln "
                f"without its port) runs but does not answer {url}"
            )
        wanted = self._probes()[name][1]
        if (host, port) == (self.config.host, wanted):
            return None
        now = (
            f"[tool.kiln.stack] {name}-port is now {wanted}"
            if host == self.config.host
            else f"the stack is now configured for {self.config.host}:{wanted}"
        )
        return f"the {name} started by this checkout runs on {host}:{port} ({what}), but {now}"

    def up(self, *, echo: Callable[[str], None] = lambda _m: None) -> list[ServiceStatus]:
        """Start whatever is not running yet; wait until both answer.

        Every check runs before anything starts: on a refusal nothing is started and
        the state is not written."""
        if self._running():  # nothing to start or write: a `kiln check` need not wait
            return self.status()
        with checkout_lock(self.dir.parent, "kiln stack up", echo=echo):
            return self._up(echo)

    def _running(self) -> bool:
        """Both servers recorded as this checkout's, where the config wants them, answer."""
        try:
            state = self._state.load()
        except ConfigError:
            return False  # `_up` says what is wrong
        for name, (url, _port) in self._probes().items():
            record = state.get(name)
            if record is None or _not_ours(record) is not None or self._moved(name, record):
                return False
            if not _answers(url):
                return False
        return True

    def _up(self, echo: Callable[[str], None]) -> list[ServiceStatus]:
        state = self._state.load()
        to_start: list[tuple[str, str, int, str | None]] = []
        for name, (url, port) in self._probes().items():
            record = state.get(name)
            stale = _not_ours(record) if record is not None else None
            if record is not None and stale is None:
                moved = self._moved(name, record)
                if moved:
                    raise ServiceUnavailable(
                        f"{moved}; run `kiln stack down` first, then `kiln stack up`"
                    )
                continue  # ours, where the config wants it: wait for it below
            if _answers(url):
                raise ServiceUnavailable(
                    f"{url} already answers, but this checkout did not start it (state in "
                    f"{self._state.path}): another checkout's stack or another server; stop it "
                    f"(`kiln stack down` where it was started) or set [tool.kiln.stack] "
                    f"{name}-port in pyproject.toml"
                )
            if _port_open(self.config.host, port):
                raise ServiceUnavailable(
                    f"port {self.config.host}:{port} is taken by something that is not "
                    f"{_ARTICLE[name]} {name}; stop it or set [tool.kiln.stack] {name}-port "
                    "in pyproject.toml"
                )
            to_start.append((name, url, port, stale))
        started: list[str] = []
        for name, url, port, stale in to_start:
            if stale is not None:
                echo(f"forgetting the recorded {name}: {stale}")
            echo(f"starting {name} on {url}")
            state[name] = self._start(name, port)
            started.append(name)
            self._state.save(state)
        deadline = time.monotonic() + _READY_TIMEOUT
        for name, (url, _port) in self._probes().items():
            while not _answers(url):
                mine = state[name] if name in started else None
                lost = process_gone(mine) if mine is not None and mine.pid is not None else None
                if lost is not None or time.monotonic() > deadline:
                    self._stop_started(state, started, echo)
                    why = (
                        f"exited ({lost})"
                        if lost
                        else f"did not answer within {_READY_TIMEOUT:.0f} s"
                    )
                    raise ServiceUnavailable(
                        f"the {name} started on {url} {why}, so this `kiln stack up` stopped "
                        f"what it had started; its log ({self.dir / (name + '.log')}) ends:\n"
                        + _tail(self.dir / f"{name}.log")
                    )
                time.sleep(0.2)
        return self.status()

    def _stop_started(
        self, state: dict[str, ServerRecord], started: list[str], echo: Callable[[str], None]
    ) -> None:
        """Stop and forget the servers of ``started`` (this ``up``'s own), whatever became of
        them: an ``up`` that fails leaves nothing running that it started."""
        for name in started:
            record = state.pop(name)
            if record.pid is None and record.container:
                with contextlib.suppress(ServiceUnavailable):
                    stop_container(self.docker_host, record.container)
            elif record.pid is not None and _not_ours(record) is None:
                how = terminate(name, record.pid)
                echo(f"stopped the {name} this run had started (pid {record.pid}, {how})")
            self._state.save(state)

    # ------------------------------------------------------------------ stop
    def down(self, *, echo: Callable[[str], None] = lambda _m: None) -> list[StoppedServer]:
        """Stop every server the state records, whatever the config says now; return
        what was stopped. A record whose pid now runs something else is dropped, and
        that process is left alone."""
        with checkout_lock(self.dir.parent, "kiln stack down", echo=echo):
            return self._down(echo)

    def _down(self, echo: Callable[[str], None]) -> list[StoppedServer]:
        state = self._state.load()
        stopped: list[StoppedServer] = []
        for name, record in list(state.items()):
            pid = record.pid
            if pid is None and record.container:
                # It removes itself when stopped; an engine that is gone took it along.
                with contextlib.suppress(ServiceUnavailable):
                    stop_container(self.docker_host, record.container)
                stopped.append(StoppedServer(name, None, record.address, "docker stop"))
            elif (stale := _not_ours(record)) is not None:
                echo(f"forgetting the recorded {name}: {stale}")
            elif pid is not None:
                stopped.append(StoppedServer(name, pid, record.address, terminate(name, pid)))
            del state[name]
            # Entry by entry: an interrupted down forgets only what it stopped.
            self._state.save(state)
        return stopped

    def status(self) -> list[ServiceStatus]:
        state = self._state.load()
        result = []
        for name, (url, _port) in self._probes().items():
            record = state.get(name)
            running = _answers(url)
            pid = None
            if record is not None:
                kind = record.kind or ""
                stale = _not_ours(record)
                if stale is not None:
                    detail = f"{kind}; the recorded server is gone: {stale}"
                else:
                    pid = record.pid
                    moved = self._moved(name, record)
                    detail = (
                        f"{kind}; {moved}: run `kiln stack down`, then `kiln stack up`"
                        if moved
                        else kind
                    )
            elif running:  # something else answers on this port
                detail = "not started by this checkout's kiln"
            else:
                detail = ""
            result.append(
                ServiceStatus(name=name, url=url, running=running, pid=pid, detail=detail)
            )
        return result
