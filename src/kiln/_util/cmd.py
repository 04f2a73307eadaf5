"""The one way kiln starts another program.

``call`` resolves the executable, echoes the command when asked, and raises
``CommandFailed`` with the return code and the tail of the output.
A ``Runner`` is handed to the code that needs it, so tests can pass a fake.
``ask`` keeps a command's output and errors apart and leaves its exit code to the
caller (git answers some questions with one); ``hook_runner`` is the same runner in
the shape ``pyproject_hooks`` calls a build backend with; ``spawn`` starts a server
that outlives the call.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln._errors import CommandFailed, CommandNotFound
from kiln._options import process_environment
from kiln._report import Reporter

_TAIL_LINES = 25

# What a build backend's hook (through ``hook_runner``) and ``build``'s own isolated
# environment installer raise when their command fails; ``build`` names the hook for it.
CalledProcessError = subprocess.CalledProcessError

# The processes ``spawn`` started in this Python process, by pid, so that whoever stops
# one here (a test, a long-lived caller) reaps it instead of leaving a zombie.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class Runner(Protocol):
    def __call__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str: ...


@dataclass(frozen=True)
class Completed:
    """A finished command: its exit code, and what it wrote to each stream."""

    returncode: int
    stdout: str
    stderr: str


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _resolved(args: Sequence[str]) -> list[str]:
    """``args`` with its executable found on PATH (or given as a path), or a clear error."""
    exe = shutil.which(args[0])
    if exe is None:
        raise CommandNotFound(f"`{args[0]}` was not found on PATH: install it or fix PATH")
    return [exe, *args[1:]]


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment a command runs with: kiln's own, plus ``env``."""
    return {**process_environment(), **(env or {})}


def call(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    echo: bool = False,
    stdin: str | None = None,
) -> str:
    """Run ``args``; return its combined output; raise ``CommandFailed`` on failure.

    ``env`` entries are added to (not replacing) the current environment. Their
    values are never echoed, so credentials passed that way stay out of logs; nor
    is ``stdin``, the text given to the command's standard input.
    """
    argv = _resolved(args)
    if echo:
        print(f"    $ {shlex.join(args)}", file=sys.stderr, flush=True)
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=_child_env(env),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CommandFailed(
            f"`{shlex.join(args)}` failed with exit code {proc.returncode}:\n{_tail(proc.stdout)}",
            returncode=proc.returncode,
            output=proc.stdout,
        )
    return proc.stdout


def ask(args: Sequence[str], *, cwd: Path | None = None) -> Completed:
    """Run ``args`` with its standard output and error kept apart; a non-zero exit is
    the caller's to judge. ``CommandNotFound`` when the program is not installed."""
    proc = subprocess.run(
        _resolved(args),
        cwd=cwd,
        env=_child_env(None),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def hook_runner(
    cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None
) -> None:
    """Run a build backend's hook as ``pyproject_hooks`` asks a runner to: quietly, with
    ``extra_environ`` added to the environment. A failure raises ``CalledProcessError``
    carrying the output, as pyproject_hooks' own runners do, so ``build`` reports it as
    the hook that failed."""
    proc = subprocess.run(
        _resolved(cmd),
        cwd=cwd,
        env=_child_env(extra_environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise CalledProcessError(proc.returncode, list(cmd), output=proc.stdout)


def spawn(args: Sequence[str], *, cwd: Path, log: Path) -> int:
    """Start ``args`` in the background as the leader of a new session (so a group
    signal reaches all of it), its input closed and its output appended to ``log``;
    return its pid. ``spawned_exited`` tells when it has ended."""
    argv = _resolved(args)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=_child_env(None), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    _CHILDREN[proc.pid] = proc
    return proc.pid


def spawned_exited(pid: int) -> bool | None:
    """Whether the process ``spawn`` started as ``pid`` has ended (then it is reaped,
    and its pid free for the system to reuse); None when ``spawn`` did not start it."""
    child = _CHILDREN.get(pid)
    if child is None:
        return None
    if child.poll() is None:
        return False
    del _CHILDREN[pid]
    return True


def reporting_runner(report: Reporter) -> Runner:
    """A ``Runner`` that keeps each command and its output in ``report``'s log."""

    def run(
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        report.detail(f"    $ {shlex.join(args)}")
        try:
            out = call(args, cwd=cwd, env=env, echo=False)
        except CommandFailed as exc:
            report.detail(exc.output.rstrip())
            raise
        if out.strip():
            report.detail(out.rstrip())
        return out

    return run


def hermetic_pip_env() -> dict[str, str]:
    """Environment for pip calls that must ignore every machine-wide pip config.

    Used together with ``--isolated`` and an explicit index.
    """
    return {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def capture(
    args: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str],
    stdin: str | None = None,
    cwd: Path | None = None,
) -> str:
    """Run ``args`` with exactly ``env`` (nothing of kiln's own environment) and ``stdin``,
    in ``cwd`` (None: kiln's own); its stdout, with stderr kept apart. ``CommandFailed``
    naming ``what`` when it cannot start, or with the tail of its stderr when it fails.

    For a program started by its path (an image's own interpreter run from its files),
    whose output is data: nothing is echoed or looked up on PATH.
    """
    try:
        done = subprocess.run(
            list(args), input=stdin, capture_output=True, text=True, env=dict(env), check=False,
            cwd=cwd,
        )  # fmt: skip
    except OSError as exc:
        raise CommandFailed(f"{what}: cannot start {args[0]} ({exc})") from None
    if done.returncode != 0:
        raise CommandFailed(
            f"{what} failed (exit {done.returncode}):\n{_tail(done.stderr.strip(), 15)}",
            returncode=done.returncode,
            output=done.stderr,
        )
    return done.stdout
