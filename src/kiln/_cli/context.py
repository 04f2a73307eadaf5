"""The command line's arguments as what a flow takes: its ``Context`` and its ``Target``."""

from __future__ import annotations

import argparse

from kiln._cli import common
from kiln._context import Context, Target


def context(args: argparse.Namespace) -> Context:
    """The flow's context: the entry point's options, reporter and cleanup list (the same
    list, so what a flow registers runs when the command ends)."""
    return Context(common.options_of(args), common.report_of(args), args.cleanup)


def target(args: argparse.Namespace) -> Target:
    """Where the command publishes: --local (also for commands without the target options),
    or --index and --registry."""
    return Target(
        local=getattr(args, "local", True),
        index=getattr(args, "index", None),
        registry=getattr(args, "registry", None),
    )
