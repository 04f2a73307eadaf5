"""The one way kiln shells out.

``call`` resolves the executable, echoes the command when asked, and raises
``CommandFailed`` with the return code and the tail of the output.
A ``Runner`` is handed to the code that needs it, so tests can pass a fake.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from kiln._errors import CommandFailed, CommandNotFound
from kiln._report import Reporter

_TAIL_LINES = 25


class Runner(Protocol):
    def __call__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str: ...


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


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
    exe = shutil.which(args[0])
    if exe is None:
        raise CommandNotFound(f"`{args[0]}` was not found on PATH: install it or fix PATH")
    if echo:
        print(f"    $ {shlex.join(args)}", file=sys.stderr, flush=True)
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [exe, *args[1:]],
        cwd=cwd,
        env=full_env,
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
