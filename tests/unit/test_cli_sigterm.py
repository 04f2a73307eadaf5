"""kiln sent SIGTERM (a CI job cancelled, `docker stop`, a supervisor) ends as it does on
Ctrl-C: the command it runs (pip, uv, twine, docker) is killed with it rather than left
running as an orphan, cleanups run (temporary folders, the checkout lock, a stack it had
to start), and it says so in one line with exit 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import kiln._cli as cli

# A kiln whose command runs one long child through kiln's one way to run a program.
_KILN = """
import sys
from pathlib import Path

import kiln._cli as cli
from kiln._util import cmd

child = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"


def command(argv, report=None, env=None):
    cmd.call([sys.executable, "-c", child, sys.argv[1]])
    return 0


cli.main_inner = command
cli.main([])
"""


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_kills_the_running_command_and_exits_143(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    kiln = subprocess.Popen(
        [sys.executable, "-c", _KILN, str(pid_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child = 0
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        child = int(pid_file.read_text())
        kiln.send_signal(signal.SIGTERM)
        _, stderr = kiln.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the command kiln ran outlived it"
        assert kiln.returncode == 128 + signal.SIGTERM
        assert "kiln: terminated" in stderr
        assert "Traceback" not in stderr
    finally:
        kiln.kill()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)


_FINALIZER = """
import os, signal, sys
from kiln import _cli as cli

cli._on_sigterm(cli._terminated)
sys.unraisablehook = cli._unraisable(sys.unraisablehook)


class Pool:
    def __del__(self):  # as urllib3 closes its pools: the SIGTERM lands in here
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10**6):
            pass


Pool()
print("went on after the SIGTERM", flush=True)
"""


def test_a_sigterm_swallowed_by_a_finalizer_ends_kiln_without_a_traceback() -> None:
    """Python swallows what a finalizer raises (urllib3 closes its pools in weakref
    finalizers; a SIGTERM at the end of a release landed there): kiln then ends at once,
    killed by SIGTERM as by default, printing no traceback and going on with nothing."""
    proc = subprocess.run(
        [sys.executable, "-c", _FINALIZER], check=False, capture_output=True, text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "went on" not in proc.stdout


def test_other_unraisable_errors_go_to_the_hook_kiln_replaced() -> None:
    seen: list[object] = []
    other = SimpleNamespace(exc_type=ValueError)
    cli._unraisable(seen.append)(other)
    assert seen == [other]


def test_a_sigterm_landing_while_kiln_winds_down_is_exit_143_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command is done and kiln puts SIGTERM's handler back, when the signal lands
    (CI's stage-kill test, killing at the manifest line, saw the traceback)."""
    calls: list[object] = []

    def on_sigterm(handler: object) -> object:
        calls.append(handler)
        if len(calls) == 2:  # putting the handler back: the signal lands here
            raise cli.Terminated
        return signal.SIG_DFL

    monkeypatch.setattr(cli, "_on_sigterm", on_sigterm)
    monkeypatch.setattr(cli, "main_inner", lambda argv, report: 0)
    with pytest.raises(SystemExit) as ended:
        cli.main([])
    assert ended.value.code == 128 + signal.SIGTERM
    assert "terminated (SIGTERM)" in capsys.readouterr().err
