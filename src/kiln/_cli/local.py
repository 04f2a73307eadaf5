"""Local commands: the embedded stack, and running pipelines in local containers."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from kiln import _context
from kiln._cli import common
from kiln._errors import ConfigError


def cmd_stack(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    stack = _context.local_stack(ws)
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
    from kiln._components.generate import pipeline_arguments  # noqa: PLC0415
    from kiln._components.run import run_pipeline, show  # noqa: PLC0415
    from kiln._images.docker import docker_client  # noqa: PLC0415

    ws = common.workspace(args)
    pipeline = next((p for p in ws.pipelines if p.name == args.pipeline), None)
    if pipeline is None:
        known = ", ".join(p.name for p in ws.pipelines) or "none"
        raise ConfigError(f"no pipeline {args.pipeline!r} under pipelines/ (known: {known})")
    component_dir = ws.dist_dir / "dev" / "components" if args.dev else ws.component_dir
    if not any(component_dir.glob("*.yaml")):
        command = "kiln release --dev --local" if args.dev else "kiln release --local"
        raise ConfigError(f"{component_dir}: no generated components; run `{command}`")
    network = args.network
    if network == "auto":  # packages-mode pods install from the index, on loopback
        network = "host" if any(c.image is None for c in ws.components) else "none"
    arguments = dict(pipeline_arguments(pipeline))
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--arg {item!r}: use NAME=VALUE (VALUE parsed as JSON if it can be)")
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    report = common.report_of(args)
    # The engine runs every task: one that cannot be reached is the service's fault
    # (exit 5), not the pipeline's.
    docker_client(common.options_of(args).docker_host).close()
    report.stage("run", f"run {pipeline.name} with kfp.local.DockerRunner (network {network})")
    outputs = run_pipeline(
        pipeline,
        component_dir,
        pipeline_root=ws.state_dir / "runs" / pipeline.name,
        arguments=arguments,
        network_mode=network,
        report=report,
    )
    common.emit(args, outputs, "\n".join(f"{k} = {show(v)}" for k, v in outputs.items()))
    return 0


def add_parsers(sub: Any, common_args: argparse.ArgumentParser) -> None:
    p = sub.add_parser("stack", parents=[common_args], help="start/stop/inspect the local stack")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser(
        "run", parents=[common_args], help="run a pipeline with kfp.local.DockerRunner"
    )
    p.add_argument("pipeline", help="name of pipelines/<name>.py")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument(
        "--dev", action="store_true", help="run the last dev release's YAMLs (dist/dev/)"
    )
    p.add_argument(
        "--network",
        default="auto",
        choices=["auto", "none", "host"],
        help="container network (auto: host when a component is in packages mode, whose pod "
        "installs from the local index; else none)",
    )
    p.set_defaults(func=cmd_run)
