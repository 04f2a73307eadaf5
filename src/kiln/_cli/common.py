"""What every command shares: the reporter, output, the workspace, the flow's context.

Each command gets the parsed arguments with three things the entry point adds:
``report`` (the Reporter), ``options`` (the environment, checked once) and
``cleanup`` (callbacks run when the command ends, failed or not); ``_cli/context.py``
hands them to the library's flows as typed values.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from kiln._components.validate import memo_folder, validate_components
from kiln._options import Options
from kiln._report import Reporter
from kiln._util.lock import checkout_lock
from kiln._workspace.discovery import discover, find_root
from kiln._workspace.model import Workspace


def report_of(args: argparse.Namespace) -> Reporter:
    report: Reporter = args.report
    return report


def options_of(args: argparse.Namespace) -> Options:
    options: Options = args.options
    return options


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """The command's result on stdout: JSON with --json, else text for a person. The open
    stage ends first, so its progress line is complete before the result."""
    report_of(args).end_stage()
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def workspace(args: argparse.Namespace, *, lock: bool = False) -> Workspace:
    """The monorepo (--repo, or found from the working directory); opens the command's log
    and says what reading it found worth a warning.

    ``lock``: the command writes the checkout: it holds the checkout's lock
    (``kiln._util.lock``) until it ends, taken before its log is opened (a waiting run
    must not empty the log of the run it waits for)."""
    root = Path(args.repo).resolve() if args.repo else find_root(Path.cwd())
    ws = discover(root, keep=True)  # a module unchanged since the last run is not parsed
    # Before any command builds or publishes; a set that passed before is remembered.
    validate_components(ws.components, memo=memo_folder(ws.state_dir))
    report = report_of(args)
    if lock:
        held = contextlib.ExitStack()
        held.enter_context(checkout_lock(ws.state_dir, f"kiln {args.command}", echo=report.step))
        args.cleanup.append(held.close)
    report.open_log(ws.state_dir / "logs" / f"{args.command}.log")
    for warning in ws.warnings:
        report.step(f"warning: {warning}")
    return ws
