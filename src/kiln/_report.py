"""Progress reporting: the one way library code tells a person what is happening.

The CLI makes one ``Reporter`` and hands it down. A reporter prints one line
per stage or pipeline step (``step``) to stderr, keeps everything else
(commands, build steps, container logs: ``detail``) in a log file, and shows
the details on the terminal too only with ``--verbose``. stdout is never
touched: it belongs to ``--json``.

``stage`` opens a stage (wheels, publish, an image, ...): under GitHub Actions
each stage's lines fold into a log group, and with ``--timings`` the time spent
per stage is summed and printed at the end. On a terminal (``live``) the open
stage shows a ``rich`` spinner, and its line gets its duration when it ends.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kiln._errors import DISK_ERRNOS, disk_fault

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour and cursor escape sequences."""
    return _ANSI.sub("", text)


class Reporter:
    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        verbose: bool = False,
        quiet: bool = False,
        log_path: Path | None = None,
        github_actions: bool = False,
        timings: bool = False,
        live: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self.verbose = verbose
        self.quiet = quiet
        self.github_actions = github_actions
        self.timings = timings
        self.live = live
        self._clock = clock
        self._stage: tuple[str, str, float] | None = None  # open stage: name, text, start
        self._console: Console | None = None
        self._status: Status | None = None
        self.spent: dict[str, float] = {}  # seconds per stage name, in first-seen order
        self.log_path: Path | None = None
        self._log: TextIO | None = None
        if log_path is not None:
            self.open_log(log_path)

    @classmethod
    def null(cls) -> Reporter:
        """A reporter that shows and keeps nothing (tests, library callers)."""
        return cls(quiet=True)

    def open_log(self, path: Path) -> None:
        """Keep everything reported from now on in ``path`` (replaced each run)."""
        self.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._log = path.open("w", encoding="utf-8")
        self.log_path = path

    def _print(self, text: str) -> None:
        if self._status is not None and self._console is not None:
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)
            return
        stream = self._stream or sys.stderr
        print(text, file=stream, flush=True)

    def _spinner(self, text: str) -> Status:
        from rich.console import Console  # noqa: PLC0415 - only on a terminal

        if self._console is None:
            self._console = Console(file=self._stream or sys.stderr, force_terminal=True)
        status = self._console.status(text, spinner="dots")
        status.start()
        return status

    def _keep(self, text: str) -> None:
        if self._log is not None:
            try:
                self._log.write(strip_ansi(text).rstrip("\n") + "\n")
                self._log.flush()
            except OSError as exc:
                # A full or read-only disk: the log is dropped, and the error (a disk
                # fault naming the log) raised once.
                log, self._log = self._log, None
                with contextlib.suppress(OSError):
                    log.close()
                if exc.errno in DISK_ERRNOS:
                    raise disk_fault(exc, self.log_path) from exc
                raise

    def step(self, text: str) -> None:
        """One line a person reads: a stage, a pipeline step, a result."""
        self._keep(text)
        if not self.quiet:
            self._print(text)

    def stage(self, name: str, text: str) -> None:
        """Open stage ``name`` (``wheels``, ``image``...) with the line ``==> text``;
        the previous stage ends here."""
        self.end_stage()
        if self.github_actions and not self.quiet:
            self._print(f"::group::{text}")
        self._stage = (name, text, self._clock())
        if self.live and not self.quiet:
            self._keep(f"==> {text}")
            self._status = self._spinner(f"==> {text}")
        else:
            self.step(f"==> {text}")

    def end_stage(self) -> None:
        """Close the open stage (its time counted; on a terminal, its line completed)."""
        if self._stage is None:
            return
        name, text, began = self._stage
        seconds = self._clock() - began
        self.spent[name] = self.spent.get(name, 0.0) + seconds
        self._stage = None
        if self._status is not None:
            self._status.stop()
            self._status = None
            self._print(f"==> {text}  ({seconds:.1f} s)")
        if self.github_actions and not self.quiet:
            self._print("::endgroup::")

    def finish(self) -> None:
        """End the open stage; with ``timings``, print the seconds spent per stage."""
        self.end_stage()
        if self.timings and self.spent:
            width = max(len(name) for name in self.spent)
            self.step("timings:")
            for name, seconds in self.spent.items():
                self.step(f"  {name:{width}}  {seconds:7.2f} s")
            self.step(f"  {'total':{width}}  {sum(self.spent.values()):7.2f} s")

    def detail(self, text: str) -> None:
        """Commands, tool output, container logs: kept in the log, shown with --verbose."""
        self._keep(text)
        if self.verbose and not self.quiet:
            self._print(text)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` of the log file, for showing after a failure."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self._log is not None:
            log, self._log = self._log, None
            with contextlib.suppress(OSError):  # a full disk: what was kept is kept
                log.close()
