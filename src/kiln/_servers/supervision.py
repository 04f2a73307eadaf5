"""The servers a stack started: their records in ``state.json``, and whether each
recorded pid is still that server.

A record keeps what ``up`` knew when it started a server: pid, address, command line,
data folder and start time. A pid whose command line (or start time) no longer
matches its record is a recycled pid, not ours, and is never signalled. Records an
older kiln wrote lack some fields; what they lack is not checked.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kiln._errors import ConfigError, ServiceUnavailable
from kiln._util.cmd import spawned_exited
from kiln._util.files import temporary_beside

_STOP_TIMEOUT = 5.0
_PROC = Path("/proc")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ServerRecord:
    """One server ``up`` started, as ``state.json`` keeps it: a process (``pid``) or a
    container (``container``, no pid)."""

    kind: str | None = None  # "pypiserver", the registry binary, "container registry:2"
    pid: int | None = None
    container: str | None = None
    host: str | None = None
    port: int | None = None
    data: str | None = None  # the folder it serves
    argv: tuple[str, ...] | None = None
    started: str | None = None  # ISO 8601, for people
    started_ticks: int | None = None  # /proc/<pid>/stat's start time, to spot a recycled pid

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> ServerRecord:
        """The record in ``raw``; a field of the wrong type counts as not recorded."""
        argv = raw.get("argv")
        return cls(
            kind=_str(raw.get("kind")),
            pid=_int(raw.get("pid")),
            container=_str(raw.get("container")) or None,
            host=_str(raw.get("host")),
            port=_int(raw.get("port")),
            data=_str(raw.get("data")),
            argv=tuple(str(a) for a in argv) if isinstance(argv, list) else None,
            started=_str(raw.get("started")),
            started_ticks=_int(raw.get("started_ticks")),
        )

    def to_json(self) -> dict[str, object]:
        """The fields recorded (``pid`` always: null for a container)."""
        fields: dict[str, object] = {
            "kind": self.kind, "pid": self.pid, "container": self.container,
            "host": self.host, "port": self.port, "data": self.data,
            "argv": list(self.argv) if self.argv is not None else None,
            "started": self.started, "started_ticks": self.started_ticks,
        }  # fmt: skip
        return {k: v for k, v in fields.items() if v is not None or k == "pid"}

    @property
    def address(self) -> str:
        """host:port it was started on ("" when the record predates ports)."""
        return f"{self.host or '127.0.0.1'}:{self.port}" if self.port is not None else ""


class StateFile:
    """``<stack>/state.json``: every server ``up`` started, by name."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, ServerRecord]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            problem = f"not JSON ({exc})"
        else:
            if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
                return {name: ServerRecord.from_json(entry) for name, entry in data.items()}
            problem = "not an object of server records"
        raise ConfigError(
            f"{self.path} is corrupt: {problem}. It records the servers "
            f"`kiln stack up` started. Check that none of them still runs "
            f"(`pgrep -af {self.path.parent}` lists them; stop any it shows), then delete "
            f"{self.path} and run `kiln stack up` again"
        )

    def save(self, state: Mapping[str, ServerRecord]) -> None:
        """Write the state atomically: a reader sees the old file or the new one, whole."""
        text = json.dumps({name: r.to_json() for name, r in state.items()}, indent=2) + "\n"
        with temporary_beside(self.path) as tmp:
            with tmp.open("w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(self.path)


# ---------------------------------------------------------------- is it still ours
def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie (exited, not yet reaped by its parent) does not."""
    exited = spawned_exited(pid)
    if exited is not None:
        return not exited
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


def start_ticks(pid: int) -> int | None:
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


def process_gone(record: ServerRecord) -> str | None:
    """Why ``record``'s process is not (or no longer) the server it records; None when
    it still runs."""
    pid = record.pid
    if pid is None:
        return "it records no pid"
    if not pid_alive(pid):
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
    return _procfs_mismatch(pid, record) if _procfs() else None


def _procfs_mismatch(pid: int, record: ServerRecord) -> str | None:
    """Whether the live ``pid`` is still the recorded process: same command line, same
    start time. A recycled pid runs something else, or started later."""
    cmdline = _cmdline(pid)
    if cmdline is None:
        return f"pid {pid} is not visible in {_PROC}"
    if record.argv is not None:
        if cmdline != list(record.argv):
            return f"pid {pid} now runs {_show(cmdline)}, not {_show(list(record.argv))}"
    elif not _legacy_match(record, cmdline):
        return f"pid {pid} now runs {_show(cmdline)}"
    if record.started_ticks is not None and start_ticks(pid) != record.started_ticks:
        return f"pid {pid} was started after the recorded server"
    return None


def _legacy_match(record: ServerRecord, cmdline: list[str]) -> bool:
    """A record written before kiln recorded argv: check what it did record."""
    if record.data is not None and record.data not in cmdline:
        return False
    kind = record.kind
    return not (kind is not None and Path(kind).is_absolute() and cmdline[:1] != [kind])


def terminate(name: str, pid: int) -> str:
    """Stop the process group ``pid`` leads: SIGTERM, then SIGKILL. Returns the signal
    that ended it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return "already exited"
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return sig.name
            time.sleep(0.05)
    raise ServiceUnavailable(
        f"the {name} (pid {pid}) still runs {_STOP_TIMEOUT:.0f} s after SIGKILL; "
        f"see `ps -o pid,stat,cmd -p {pid}`, then run `kiln stack down` again"
    )
