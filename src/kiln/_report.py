"""Progress reporting: the one way library code tells a person what is happening.

The CLI makes one ``Reporter`` and hands it down. A reporter prints one line
per stage or pipeline step (``step``) to stderr, keeps everything else
(commands, build steps, container logs: ``detail``) in a log file, and shows
the details on the terminal too only with ``--verbose``. stdout is never
touched: it belongs to ``--json``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TextIO

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
    ) -> None:
        self._stream = stream
        self.verbose = verbose
        self.quiet = quiet
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
        stream = self._stream or sys.stderr
        print(text, file=stream, flush=True)

    def _keep(self, text: str) -> None:
        if self._log is not None:
            self._log.write(strip_ansi(text).rstrip("\n") + "\n")
            self._log.flush()

    def step(self, text: str) -> None:
        """One line a person reads: a stage, a pipeline step, a result."""
        self._keep(text)
        if not self.quiet:
            self._print(text)

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
        if self._log is not None:
            self._log.close()
            self._log = None
