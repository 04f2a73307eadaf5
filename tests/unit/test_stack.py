"""The local stack's bookkeeping, with real processes standing in for its servers.

Unit tests have no network, so a server here is a real long-running ``sleep`` that
the real ``LocalStack._spawn`` starts (only the command line is swapped), and
"answers on port P" means "a server spawned for port P is alive"."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kiln._errors import ConfigError, ServiceUnavailable
from kiln._servers import stack as _stack
from kiln._servers.stack import LocalStack
from kiln._servers.supervision import ServerRecord, StateFile, start_ticks
from kiln._util import cmd
from kiln._util.lock import checkout_lock
from kiln._workspace.model import StackConfig

SLEEP = shutil.which("sleep") or "/bin/sleep"
# Distinct command lines, so a record of one never matches the other's process.
COMMANDS = {"index": [SLEEP, "60"], "registry": [SLEEP, "61"]}
PORTS_A = StackConfig(index_port=18765, registry_port=15765)
PORTS_B = StackConfig(index_port=18766, registry_port=15765)  # the index port changed

linux_only = pytest.mark.skipif(not Path("/proc/self/cmdline").is_file(), reason="needs procfs")


@dataclass
class Servers:
    """What the (real) spawner started: per pid its name, port and Popen."""

    spawned: list[tuple[str, int, subprocess.Popen[bytes]]] = field(default_factory=list)

    def pid(self, name: str) -> int:
        return next(p.pid for n, _port, p in self.spawned if n == name)

    def proc(self, name: str) -> subprocess.Popen[bytes]:
        return next(p for n, _port, p in self.spawned if n == name)

    def listening(self, port: int | None) -> bool:
        return any(p == port and proc.poll() is None for _n, p, proc in self.spawned)


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Servers]:
    fake = Servers()
    real_spawn = LocalStack._spawn

    def spawn(self: LocalStack, name: str, argv: list[str]) -> int:
        pid = real_spawn(self, name, argv)
        port = self.config.index_port if name == "index" else self.config.registry_port
        fake.spawned.append((name, port, cmd._CHILDREN[pid]))
        return pid

    monkeypatch.setattr(LocalStack, "_spawn", spawn)
    monkeypatch.setattr(LocalStack, "_index_command", lambda self, data: COMMANDS["index"])
    monkeypatch.setattr(LocalStack, "_registry_command", lambda self, data: COMMANDS["registry"])
    monkeypatch.setattr(_stack, "_answers", lambda url: fake.listening(urlsplit(url).port))
    monkeypatch.setattr(_stack, "_port_open", lambda host, port: fake.listening(port))
    yield fake
    for _name, _port, proc in fake.spawned:  # a failed test must not leak its sleeps
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def state_of(tmp_path: Path) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads((tmp_path / "state.json").read_text())
    return data


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


@linux_only
def test_a_changed_port_is_refused_while_the_first_server_runs(
    tmp_path: Path, servers: Servers
) -> None:
    LocalStack(PORTS_A, tmp_path).up()
    index = state_of(tmp_path)["index"]
    pid = servers.pid("index")
    assert index["pid"] == pid
    assert (index["host"], index["port"]) == ("127.0.0.1", 18765)
    assert index["argv"] == COMMANDS["index"]
    assert index["data"] == str(tmp_path / "index")
    assert isinstance(index["started"], str)
    assert isinstance(index["started_ticks"], int)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == [
        a.encode() for a in COMMANDS["index"]
    ]
    before = (tmp_path / "state.json").read_bytes()

    moved = LocalStack(PORTS_B, tmp_path)
    with pytest.raises(ServiceUnavailable) as err:
        moved.up()

    assert str(err.value) == (
        f"the index started by this checkout runs on 127.0.0.1:18765 (pid {pid}), but "
        "[tool.kiln.stack] index-port is now 18766; run `kiln stack down` first, "
        "then `kiln stack up`"
    )
    assert len(servers.spawned) == 2  # no second index
    assert alive(servers.proc("index"))
    assert (tmp_path / "state.json").read_bytes() == before
    status = {s.name: s for s in moved.status()}
    assert status["index"].pid == pid
    assert "runs on 127.0.0.1:18765" in status["index"].detail

    stopped = moved.down()

    assert [(s.name, s.pid, s.address, s.how) for s in stopped] == [
        ("index", pid, "127.0.0.1:18765", "SIGTERM"),
        ("registry", servers.pid("registry"), "127.0.0.1:15765", "SIGTERM"),
    ]
    assert str(stopped[0]) == f"stopped the index on 127.0.0.1:18765 (pid {pid}, SIGTERM)"
    # Reaped, not left as zombies, and ended by SIGTERM.
    assert [p.returncode for _n, _port, p in servers.spawned] == [-signal.SIGTERM] * 2
    assert state_of(tmp_path) == {}

    # The way out the message gives: up again, now on the new port, on the same data.
    moved.up()
    assert len(servers.spawned) == 4
    assert state_of(tmp_path)["index"]["port"] == 18766
    assert state_of(tmp_path)["index"]["data"] == str(tmp_path / "index")
    assert len(moved.down()) == 2


@linux_only
def test_up_twice_on_the_same_ports_starts_nothing_new(tmp_path: Path, servers: Servers) -> None:
    stack = LocalStack(PORTS_A, tmp_path)
    stack.up()
    state = state_of(tmp_path)
    stack.up()
    assert len(servers.spawned) == 2
    assert state_of(tmp_path) == state
    stack.down()


@linux_only
def test_down_stops_every_recorded_server_including_extra_and_legacy_entries(
    tmp_path: Path, servers: Servers
) -> None:
    stack = LocalStack(PORTS_A, tmp_path)
    stack.up()
    # A record written by an older kiln (pid only) under a name this kiln never uses.
    old = subprocess.Popen([SLEEP, "62"], start_new_session=True)
    state = state_of(tmp_path)
    state["old-index"] = {"pid": old.pid}
    (tmp_path / "state.json").write_text(json.dumps(state))

    stopped = stack.down()

    assert [s.name for s in stopped] == ["index", "registry", "old-index"]
    assert old.wait(timeout=10) == -signal.SIGTERM
    assert state_of(tmp_path) == {}


@linux_only
@pytest.mark.parametrize("mismatch", ["argv", "start time"])
def test_a_recycled_pid_is_not_ours_and_down_leaves_it_alone(tmp_path: Path, mismatch: str) -> None:
    stranger = subprocess.Popen([SLEEP, "60"], start_new_session=True)
    try:
        ticks = start_ticks(stranger.pid)
        assert ticks is not None
        entry: dict[str, object] = {
            "kind": "pypiserver", "pid": stranger.pid, "host": "127.0.0.1", "port": 18765,
            "argv": [SLEEP, "61"] if mismatch == "argv" else [SLEEP, "60"],
            "data": str(tmp_path / "index"), "started": "2024-01-01T00:00:00+00:00",
            "started_ticks": ticks if mismatch == "argv" else ticks - 1,
        }  # fmt: skip
        (tmp_path / "state.json").write_text(json.dumps({"index": entry}))
        said: list[str] = []

        stopped = LocalStack(PORTS_A, tmp_path).down(echo=said.append)

        assert stopped == []
        assert alive(stranger)
        assert said[0].startswith(f"forgetting the recorded index: pid {stranger.pid} ")
        assert state_of(tmp_path) == {}
    finally:
        stranger.kill()
        stranger.wait()


@linux_only
def test_up_replaces_a_record_whose_pid_was_recycled(tmp_path: Path, servers: Servers) -> None:
    stranger = subprocess.Popen([SLEEP, "63"], start_new_session=True)
    try:
        entry = {"pid": stranger.pid, "host": "127.0.0.1", "port": 9, "argv": [SLEEP, "60"]}
        (tmp_path / "state.json").write_text(json.dumps({"index": entry}))
        said: list[str] = []

        LocalStack(PORTS_A, tmp_path).up(echo=said.append)  # no refusal: port 9 is not ours

        assert state_of(tmp_path)["index"]["pid"] == servers.pid("index")
        assert any(m.startswith("forgetting the recorded index: ") for m in said)
        LocalStack(PORTS_A, tmp_path).down()
        assert alive(stranger)
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize("text", ['{"index": {"pid": 12', "[]", '{"index": 3}', "\xff\xfe"])
def test_a_corrupt_state_file_names_the_file_and_the_fix(tmp_path: Path, text: str) -> None:
    (tmp_path / "state.json").write_bytes(text.encode("latin-1"))
    stack = LocalStack(PORTS_A, tmp_path)
    for action in (stack.up, stack.down, stack.status):
        with pytest.raises(ConfigError) as err:
            action()
        message = str(err.value)
        assert f"{tmp_path / 'state.json'} is corrupt" in message
        assert f"pgrep -af {tmp_path}" in message
        assert f"delete {tmp_path / 'state.json'}" in message


def test_an_interrupted_save_keeps_the_old_state_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateFile(tmp_path / "state.json")
    state.save({"index": ServerRecord(pid=1)})
    before = (tmp_path / "state.json").read_bytes()

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        state.save({"index": ServerRecord(pid=2), "registry": ServerRecord(pid=3)})

    assert (tmp_path / "state.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temp file left


def test_the_index_command_serves_the_configured_port_and_data(tmp_path: Path) -> None:
    argv = LocalStack(PORTS_B, tmp_path)._index_command(tmp_path / "index")
    assert argv[1:4] == ["-m", "kiln._servers.pypi", "run"]  # pypiserver, its listing kept
    assert argv[argv.index("-p") + 1] == "18766"
    assert "--disable-fallback" in argv
    assert argv[-1] == str(tmp_path / "index")


@linux_only
def test_without_a_registry_binary_the_named_engine_runs_the_registry(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LocalStack, "_registry_command", lambda self, data: None)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/elsewhere.sock")  # not followed
    engine = f"unix://{tmp_path}/engine.sock"
    stack = LocalStack(PORTS_A, tmp_path, docker_host=engine)
    with pytest.raises(ServiceUnavailable) as err:
        stack.up()
    assert str(err.value).startswith(
        "no registry binary on PATH and the registry:2 container failed (Docker Engine is "
        f"not reachable at {engine} (no such socket); "
    )
    assert str(err.value).endswith(
        "install Debian's `docker-registry` package or make registry:2 pullable"
    )
    assert list(state_of(tmp_path)) == ["index"]  # what it did start, for down to stop
    assert [s.name for s in stack.down()] == ["index"]


def test_down_forgets_a_registry_container_whose_engine_is_gone(tmp_path: Path) -> None:
    record = {
        "pid": None, "kind": "container registry:2", "container": "kiln-registry",
        "host": "127.0.0.1", "port": 15765,
    }  # fmt: skip
    (tmp_path / "state.json").write_text(json.dumps({"registry": record}))
    stack = LocalStack(PORTS_A, tmp_path, docker_host=f"unix://{tmp_path}/none.sock")
    assert [str(s) for s in stack.down()] == [
        "stopped the registry on 127.0.0.1:15765 (container, docker stop)"
    ]
    assert state_of(tmp_path) == {}


def test_a_record_keeps_what_it_recorded_and_ignores_what_it_cannot_read(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    raw = {
        "old": {"pid": 7},  # written before kiln recorded more than the pid
        "registry": {"pid": None, "kind": "container registry:2", "container": "kiln-registry"},
        "odd": {"pid": True, "port": "5765", "argv": ["sleep", 60], "started_ticks": 1.5},
    }
    (tmp_path / "state.json").write_text(json.dumps(raw))
    records = state.load()
    assert records["old"] == ServerRecord(pid=7)
    assert records["odd"] == ServerRecord(argv=("sleep", "60"))
    assert records["registry"].address == ""
    state.save(records)
    assert state_of(tmp_path) == {
        "old": {"pid": 7},
        "registry": raw["registry"],
        "odd": {"pid": None, "argv": ["sleep", "60"]},
    }


@linux_only
def test_an_up_whose_server_exits_before_answering_stops_what_it_started(
    tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The index loses its port to another program between the check and the start.
    lost = [shutil.which("false") or "/bin/false"]
    monkeypatch.setattr(LocalStack, "_index_command", lambda self, data: lost)
    said: list[str] = []
    with pytest.raises(ServiceUnavailable) as err:
        LocalStack(PORTS_A, tmp_path).up(echo=said.append)
    assert "the index started on http://127.0.0.1:18765/simple/ exited" in str(err.value)
    assert "this `kiln stack up` stopped what it had started" in str(err.value)
    registry = servers.proc("registry")
    assert registry.returncode == -signal.SIGTERM  # stopped and reaped
    assert f"stopped the registry this run had started (pid {registry.pid}, SIGTERM)" in said
    assert state_of(tmp_path) == {}  # nothing recorded that does not run


@linux_only
def test_up_on_a_running_stack_does_not_wait_for_the_checkout_lock(
    tmp_path: Path, servers: Servers
) -> None:
    stack = LocalStack(PORTS_A, tmp_path / "stack")
    stack.up()
    held, release = threading.Event(), threading.Event()

    def a_release_in_another_run() -> None:
        with checkout_lock(tmp_path, "kiln release", echo=lambda _m: None):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=a_release_in_another_run)
    holder.start()
    held.wait(5)
    said: list[str] = []
    checking = threading.Thread(target=lambda: stack.up(echo=said.append), daemon=True)
    checking.start()
    checking.join(5)
    release.set()
    holder.join(5)
    assert not checking.is_alive(), "`kiln check --local` waited for a release's lock"
    assert said == []
    stack.down()
