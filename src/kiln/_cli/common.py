"""What every command shares: the reporter, output, the workspace, the flow's context.

Each command gets the parsed arguments with three things the entry point adds:
``report`` (the Reporter), ``options`` (the environment, checked once) and
``cleanup`` (callbacks run when the command ends, failed or not); ``context`` and
``target`` hand them to the library's flows as typed values.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kiln._context import Context, Target, connect
from kiln._options import Options
from kiln._release.stages import Services
from kiln._report import Reporter
from kiln._workspace.discovery import discover, find_root
from kiln._workspace.model import Workspace


def report_of(args: argparse.Namespace) -> Reporter:
    report: Reporter = args.report
    return report


def options_of(args: argparse.Namespace) -> Options:
    options: Options = args.options
    return options


def context(args: argparse.Namespace) -> Context:
    """The flow's context: the entry point's options, reporter and cleanup list (shared, so
    what a flow registers runs when the command ends)."""
    cleanup: list[Any] = args.cleanup
    return Context(options_of(args), report_of(args), cleanup)


def target(args: argparse.Namespace) -> Target:
    """Where the command publishes: --local (also for commands without the target options),
    or --index and --registry."""
    return Target(
        local=getattr(args, "local", True),
        index=getattr(args, "index", None),
        registry=getattr(args, "registry", None),
    )


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """The command's result on stdout: JSON with --json, else text for a person. The open
    stage ends first, so its progress line is complete before the result."""
    report_of(args).end_stage()
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def workspace(args: argparse.Namespace) -> Workspace:
    """The monorepo (--repo, or found from the working directory); opens the command's log."""
    root = Path(args.repo).resolve() if args.repo else find_root(Path.cwd())
    ws = discover(root)
    report_of(args).open_log(ws.state_dir / "logs" / f"{args.command}.log")
    return ws


def services(
    args: argparse.Namespace, ws: Workspace, *, images: bool = True, read_only: bool = False
) -> Services:
    """``kiln._context.connect`` for the command's target; --dry-run is ``read_only``."""
    read_only = read_only or getattr(args, "dry_run", False)
    return connect(ws, context(args), target(args), images=images, read_only=read_only)
