"""Local commands: the embedded stack, and running pipelines in local containers."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from kiln._cli import common
from kiln._components.run import run, show
from kiln._errors import ConfigError
from kiln._servers.stack import LocalStack


def cmd_stack(args: argparse.Namespace) -> int:
    ws = common.workspace(args, lock=args.action in ("up", "down"))
    # The stack's own client, not kiln._context's: `kiln stack` loads in 0.15 s, not 0.4.
    options = common.options_of(args)
    stack = LocalStack(ws.stack, ws.stack_dir, docker_host=options.docker_host)
    if args.action == "up":
        stack.up(echo=common.report_of(args).step)
    elif args.action == "down":
        for stopped in stack.down(echo=common.report_of(args).step):
            common.report_of(args).step(str(stopped))
    statuses = stack.status()
    text = "\n".join(
        f"{s.name:9} {'running' if s.running else 'stopped':8} {s.url}"
        + (f"  ({s.detail})" if s.detail else "")
        for s in statuses
    )
    common.emit(args, [asdict(s) for s in statuses], text)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    arguments: dict[str, Any] = {}
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--arg {item!r}: use NAME=VALUE (VALUE parsed as JSON if it can be)")
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    outputs = run(
        ws,
        args.pipeline,
        docker_host=common.options_of(args).docker_host,
        arguments=arguments,
        dev=args.dev,
        network=args.network,
        report=common.report_of(args),
    )
    common.emit(args, outputs, "\n".join(f"{k} = {show(v)}" for k, v in outputs.items()))
    return 0
