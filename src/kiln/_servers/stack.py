"""The embedded default stack: a private index and a registry on 127.0.0.1.

- index: pypiserver, with its fallback to public PyPI disabled (an unknown
  project must be a 404, not a redirect to pypi.org);
- registry: CNCF distribution, the ``docker-registry``/``registry`` binary when
  present, otherwise the ``registry:2`` container on the host network.

Both keep their data under ``<state>/`` so it survives ``down``/``up``.

``<state>/state.json`` records every server ``up`` started: its pid, address,
command line, data directory and start time. ``down`` stops exactly those; a pid
whose command line (or start time) no longer matches the record is a recycled pid,
not ours, and is never signalled. ``up`` refuses to start a second server on the
same data while the recorded one still runs (for instance on a port that was
changed in ``pyproject.toml`` since).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests

from kiln._errors import CommandFailed, ConfigError, ServiceUnavailable
from kiln._util.cmd import call
from kiln._workspace.model import StackConfig

_READY_TIMEOUT = 30.0
_STOP_TIMEOUT = 5.0
_REGISTRY_CONTAINER = "kiln-registry"
_PROC = Path("/proc")
_ARTICLE = {"index": "an", "registry": "a"}

# The servers this Python process spawned, by pid, so that a ``down`` in the same
# process (tests, long-lived callers) reaps them instead of leaving zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

Entry = dict[str, object]


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
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie (exited, not yet reaped by its parent) does not."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]  # reaped: the pid is free for the system to reuse
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _stat(pid)
    if stat is None:
        return not _procfs()  # no procfs: trust kill(0); with procfs: it just exited
    return stat[0] != "Z"


def _procfs() -> bool:
    return (_PROC / "self" / "stat").is_file()


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    stat = _stat(pid)
    return int(stat[19]) if stat is not None and len(stat) > 19 else None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    args = [os.fsdecode(arg) for arg in raw.split(b"\0")]
    return args[:-1] if args and not args[-1] else args


def _show(argv: list[str]) -> str:
    text = shlex.join(argv)
    return f"`{text}`" if len(text) <= 100 else f"`{text[:97]}...`"


def _pid_of(entry: Entry) -> int | None:
    pid = entry.get("pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def _address(entry: Entry) -> str:
    port = entry.get("port")
    return f"{entry.get('host', '127.0.0.1')}:{port}" if isinstance(port, int) else ""


def _not_ours(entry: Entry) -> str | None:
    """Why a state entry is not (or no longer) a server this stack started and that
    still runs; None when it is one."""
    pid = _pid_of(entry)
    if pid is None:
        return _container_gone(entry) if entry.get("container") else "it records no pid"
    if not _pid_alive(pid):
        return f"pid {pid} has exited"
    try:
        os.kill(pid, 0)
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return f"pid {pid} has exited"
    except PermissionError:
        return f"pid {pid} now belongs to another user"
    if pgid != pid:  # kiln starts every server as the leader of a new session
        return f"pid {pid} does not lead its own process group"
    return _procfs_mismatch(pid, entry) if _procfs() else None


def _container_gone(entry: Entry) -> str | None:
    # Checking a container needs Docker Engine: ask the registry it serves instead.
    address = _address(entry)
    if not address or _answers(f"http://{address}/v2/"):
        return None
    return f"its container {entry['container']} does not answer on {address}"


def _procfs_mismatch(pid: int, entry: Entry) -> str | None:
    """Whether the live ``pid`` is still the recorded process: same command line, same
    start time. A recycled pid runs something else, or started later."""
    cmdline = _cmdline(pid)
    if cmdline is None:
        return f"pid {pid} is not visible in {_PROC}"
    argv = entry.get("argv")
    if isinstance(argv, list):
        if cmdline != argv:
            return f"pid {pid} now runs {_show(cmdline)}, not {_show(argv)}"
    elif not _legacy_match(entry, cmdline):
        return f"pid {pid} now runs {_show(cmdline)}"
    ticks = entry.get("started_ticks")
    if isinstance(ticks, int) and _start_ticks(pid) != ticks:
        return f"pid {pid} was started after the recorded server"
    return None


def _legacy_match(entry: Entry, cmdline: list[str]) -> bool:
    """A record written before kiln recorded argv: check what it did record."""
    data, kind = entry.get("data"), entry.get("kind")
    if isinstance(data, str) and data not in cmdline:
        return False
    return not (isinstance(kind, str) and Path(kind).is_absolute() and cmdline[:1] != [kind])


def _terminate(name: str, pid: int) -> str:
    """Stop the process group ``pid`` leads: SIGTERM, then SIGKILL. Returns the signal
    that ended it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return "already exited"
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return sig.name
            time.sleep(0.05)
    raise ServiceUnavailable(
        f"the {name} (pid {pid}) still runs {_STOP_TIMEOUT:.0f} s after SIGKILL; "
        f"see `ps -o pid,stat,cmd -p {pid}`, then run `kiln stack down` again"
    )


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
    def _load(self) -> dict[str, Entry]:
        try:
            raw = self._state_file.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            problem = f"not JSON ({exc})"
        else:
            if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
                return data
            problem = "not an object of server records"
        raise ConfigError(
            f"{self._state_file} is corrupt: {problem}. It records the servers "
            f"`kiln stack up` started. Check that none of them still runs "
            f"(`pgrep -af {self.dir}` lists them; stop any it shows), then delete "
            f"{self._state_file} and run `kiln stack up` again"
        )

    def _save(self, state: dict[str, Entry]) -> None:
        """Write the state atomically: a reader sees the old file or the new one, whole."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".state.", suffix=".json.tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps(state, indent=2) + "\n")
                out.flush()
                os.fsync(out.fileno())
            Path(tmp).replace(self._state_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
        _CHILDREN[proc.pid] = proc
        return proc.pid

    def _index_command(self, data: Path) -> list[str]:
        return [
            sys.executable, "-m", "pypiserver", "run",
            "-i", self.config.host, "-p", str(self.config.index_port),
            "--disable-fallback", "-a", ".", "-P", ".", str(data),
        ]  # fmt: skip

    def _registry_command(self, data: Path) -> list[str] | None:
        """The registry binary's command line (writing its config), or None without one."""
        binary = shutil.which("docker-registry") or shutil.which("registry")
        if not binary:
            return None
        config = self.dir / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {data}\n"
            "  delete:\n    enabled: false\n"
            f"http:\n  addr: {self.config.registry}\n"
        )
        return [binary, "serve", str(config)]

    def _start(self, name: str, port: int) -> Entry:
        data = self.dir / name
        data.mkdir(parents=True, exist_ok=True)
        where: Entry = {"host": self.config.host, "port": port, "data": str(data)}
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if name == "index":
            argv, kind = self._index_command(data), "pypiserver"
        else:
            registry_argv = self._registry_command(data)
            if registry_argv is None:
                return {**self._start_registry_container(data), **where, "started": started}
            argv, kind = registry_argv, registry_argv[0]
        pid = self._spawn(name, argv)
        return {
            "kind": kind, "pid": pid, **where, "argv": argv,
            "started": started, "started_ticks": _start_ticks(pid),
        }  # fmt: skip

    def _start_registry_container(self, data: Path) -> Entry:
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

    def _moved(self, name: str, entry: Entry) -> str | None:
        """Why our running ``entry`` is not where the config now puts the ``name``, or None."""
        port, host = entry.get("port"), entry.get("host", self.config.host)
        pid = _pid_of(entry)
        what = f"pid {pid}" if pid is not None else f"container {entry.get('container')}"
        if not isinstance(port, int):  # recorded before kiln recorded ports
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
        state = self._load()
        to_start: list[tuple[str, str, int, str | None]] = []
        for name, (url, port) in self._probes().items():
            entry = state.get(name)
            stale = _not_ours(entry) if entry is not None else None
            if entry is not None and stale is None:
                moved = self._moved(name, entry)
                if moved:
                    raise ServiceUnavailable(
                        f"{moved}; run `kiln stack down` first, then `kiln stack up`"
                    )
                continue  # ours, where the config wants it: wait for it below
            if _answers(url):
                raise ServiceUnavailable(
                    f"{url} already answers, but this checkout did not start it (state in "
                    f"{self._state_file}): another checkout's stack or another server; stop it "
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
        for name, url, port, stale in to_start:
            if stale is not None:
                echo(f"forgetting the recorded {name}: {stale}")
            echo(f"starting {name} on {url}")
            state[name] = self._start(name, port)
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
    def down(self, *, echo: Callable[[str], None] = lambda _m: None) -> list[StoppedServer]:
        """Stop every server the state records, whatever the config says now; return
        what was stopped. A record whose pid now runs something else is dropped, and
        that process is left alone."""
        state = self._load()
        stopped: list[StoppedServer] = []
        for name, entry in list(state.items()):
            pid = _pid_of(entry)
            if pid is None and entry.get("container"):
                with contextlib.suppress(CommandFailed):  # it removes itself when stopped
                    call(["docker", "stop", str(entry["container"])], echo=False)
                stopped.append(StoppedServer(name, None, _address(entry), "docker stop"))
            elif (stale := _not_ours(entry)) is not None:
                echo(f"forgetting the recorded {name}: {stale}")
            elif pid is not None:
                stopped.append(StoppedServer(name, pid, _address(entry), _terminate(name, pid)))
            del state[name]
            self._save(state)  # entry by entry: an interrupted down forgets only what it stopped
        return stopped

    def status(self) -> list[ServiceStatus]:
        state = self._load()
        result = []
        for name, (url, _port) in self._probes().items():
            entry = state.get(name)
            running = _answers(url)
            pid = None
            if entry is not None:
                kind = str(entry.get("kind", ""))
                stale = _not_ours(entry)
                if stale is not None:
                    detail = f"{kind}; the recorded server is gone: {stale}"
                else:
                    pid = _pid_of(entry)
                    moved = self._moved(name, entry)
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
