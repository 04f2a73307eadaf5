"""kiln's command line. ``main`` exits; ``main_inner`` only raises.

Progress goes to stderr; ``--json`` puts the machine-readable result on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kiln import __version__
from kiln._errors import EXIT_CODES, ConfigError, KilnError
from kiln._model import Workspace

DESCRIPTION = """\
kiln turns a monorepo of helper code into pinned, immutable artifacts:
helper wheels on a private index, baked images in a registry, and KFP
component YAMLs pinned to image@sha256 digests.

Stages, in order: build -> publish -> bake -> components (`release` runs all).
"""

EPILOG = """\
quick start (local stack on 127.0.0.1, started for you):
  kiln release --local            build, publish, bake, push, generate; write dist/manifest.json
  kiln release --local --dry-run  print the plan; publish nothing
  kiln run contrast_demo          run a pipeline in local Docker containers
  kiln stack status               what the local index and registry are doing

environment:
  KILN_BASE_IMAGE   base image for every image (overrides image.toml `base`),
                    e.g. a local mirror of python:3.11-slim
  DOCKER_HOST       the Docker Engine to build with

exit codes:
  0 ok   2 usage   {codes}
""".format(codes="   ".join(f"{code} {label}" for label, code in EXIT_CODES.items()))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def _workspace(args: argparse.Namespace) -> Workspace:
    from kiln._discovery import discover, find_root  # noqa: PLC0415

    root = Path(args.repo).resolve() if args.repo else find_root(Path.cwd())
    return discover(root)


def _stack(ws: Workspace) -> Any:
    from kiln._stack import LocalStack  # noqa: PLC0415

    return LocalStack(ws.stack, ws.state_dir / "stack")


def _services(args: argparse.Namespace, ws: Workspace, *, docker: bool = True) -> Any:
    from kiln._index import IndexClient  # noqa: PLC0415
    from kiln._registry import RegistryClient  # noqa: PLC0415
    from kiln._release import Services  # noqa: PLC0415

    if getattr(args, "local", True):
        _stack(ws).up(echo=_say)
        index_url, registry = ws.stack.index_url, ws.stack.registry
    else:
        index_url, registry = args.index, args.registry
        if not index_url or not registry:
            raise ConfigError("give --local, or both --index URL and --registry HOST[:PORT]")
    builder: Any = None
    if docker:
        from kiln._docker import DockerBuilder  # noqa: PLC0415

        builder = DockerBuilder()
    index, reg = IndexClient(index_url), RegistryClient(registry)
    index.ping()
    reg.ping()
    return Services(
        index=index,
        registry=reg,
        builder=builder,
        pip_wheel_in=builder.pip_wheel_in if builder else None,
    )


def _base_override(args: argparse.Namespace) -> str | None:
    return str(args.base_image) if args.base_image else os.environ.get("KILN_BASE_IMAGE") or None


# --------------------------------------------------------------------- commands
def cmd_stack(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    stack = _stack(ws)
    if args.action == "up":
        stack.up(echo=_say)
    elif args.action == "down":
        stack.down()
    statuses = stack.status()
    text = "\n".join(
        f"{s.name:9} {'running' if s.running else 'stopped':8} {s.url}"
        + (f"  ({s.detail})" if s.detail else "")
        for s in statuses
    )
    _emit(args, [asdict(s) for s in statuses], text)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from kiln._wheels import build_wheels  # noqa: PLC0415

    ws = _workspace(args)
    wheels = build_wheels(ws.helpers, ws.dist_dir / "wheels")
    rows = [{"filename": w.filename, "sha256": w.sha256, "path": str(w.path)} for w in wheels]
    _emit(args, rows, "\n".join(f"{w.path}  sha256:{w.sha256}" for w in wheels))
    return 0


def _release_parts(
    args: argparse.Namespace, *, images: bool = True
) -> tuple[Workspace, Any, Any, Any]:
    from kiln._release import make_plan, prepare  # noqa: PLC0415

    ws = _workspace(args)
    services = _services(args, ws, docker=images)
    prepared = prepare(ws, services, base_override=_base_override(args), images=images, say=_say)
    plan = make_plan(ws, prepared, services)
    return ws, services, prepared, plan


def cmd_publish(args: argparse.Namespace) -> int:
    from kiln._release import check_refusals, publish  # noqa: PLC0415

    _ws, services, prepared, plan = _release_parts(args, images=False)
    check_refusals(plan)
    uploaded = publish(plan, prepared, services, _say)
    rows = [
        {"filename": s.filename, "sha256": s.sha256, "action": s.action.value} for s in plan.files
    ]
    _emit(args, rows, f"uploaded {len(uploaded)} of {len(rows)} wheel(s) to {services.index.url}")
    return 0


def cmd_bake(args: argparse.Namespace) -> int:
    from kiln._release import bake, check_refusals, publish  # noqa: PLC0415

    ws, services, prepared, plan = _release_parts(args)
    check_refusals(plan)
    publish(plan, prepared, services, _say)
    digests, pushed = bake(ws, plan, prepared, services, _say)
    refs = {i.image.name: f"{i.repository}@{digests[i.image.name]}" for i in prepared.images}
    _emit(args, refs, "\n".join(refs.values()) + f"\npushed {len(pushed)} image(s)")
    return 0


def cmd_components(args: argparse.Namespace) -> int:
    from kiln._release import generate  # noqa: PLC0415

    ws = _workspace(args)
    services = _services(args, ws, docker=False)
    refs = {}
    for image in ws.images:
        repo = f"{ws.org}/{image.name}"
        digest = services.registry.digest(repo, image.version)
        if digest is None:
            raise ConfigError(
                f"{image.path / 'image.toml'}: {services.registry.host}/{repo}:{image.version} is "
                "not in the registry; run `kiln bake` (or `kiln release`) first"
            )
        refs[image.name] = f"{services.registry.host}/{repo}@{digest}"
    components, pipelines = generate(ws, refs, say=_say)
    rows = {"components": components, "pipelines": pipelines}
    _emit(args, rows, "\n".join(r["path"] for r in components + pipelines))
    return 0


def _plan_text(plan: Any) -> str:
    lines = [f"  {s.action.value:8} {s.filename}" for s in plan.files if s.kind == "helper"]
    mirror = [s for s in plan.files if s.kind == "mirror"]
    todo = sum(1 for s in mirror if s.action.value == "publish")
    lines.append(f"  mirror   {todo} of {len(mirror)} third-party wheel(s) to upload")
    lines += [f"  {s.action.value:8} image {s.repository}:{s.version}" for s in plan.images]
    lines += [f"  refuse:  {r}" for r in plan.refusals]
    return "plan:\n" + "\n".join(lines)


def cmd_release(args: argparse.Namespace) -> int:
    from kiln._release import execute  # noqa: PLC0415

    ws, services, prepared, plan = _release_parts(args)
    if args.dry_run:
        _emit(args, plan.to_dict(), _plan_text(plan))
        return 4 if plan.refusals else 0
    _say(_plan_text(plan))
    outcome = execute(ws, prepared, plan, services, release_version=args.version, say=_say)
    if not outcome.uploaded and not outcome.pushed:
        summary = "everything is up to date: nothing uploaded, nothing pushed"
    else:
        summary = f"uploaded {len(outcome.uploaded)} file(s), pushed {len(outcome.pushed)} image(s)"
    result = {
        "uploaded": outcome.uploaded,
        "pushed": outcome.pushed,
        "manifest_path": str(outcome.manifest_path),
        "manifest": outcome.manifest,
    }
    _emit(args, result, f"{summary}\nmanifest: {outcome.manifest_path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from kiln._components import pipeline_arguments  # noqa: PLC0415
    from kiln._run import run_pipeline  # noqa: PLC0415

    ws = _workspace(args)
    pipeline = next((p for p in ws.pipelines if p.name == args.pipeline), None)
    if pipeline is None:
        known = ", ".join(p.name for p in ws.pipelines) or "none"
        raise ConfigError(f"no pipeline {args.pipeline!r} under pipelines/ (known: {known})")
    component_dir = ws.dist_dir / "components"
    if not component_dir.is_dir():
        raise ConfigError(f"{component_dir}: no generated components; run `kiln release --local`")
    arguments = dict(pipeline_arguments(pipeline))
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--arg {item!r}: use NAME=VALUE (VALUE parsed as JSON if it can be)")
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    _say(f"==> run {pipeline.name} with kfp.local.DockerRunner (network {args.network})")
    outputs = run_pipeline(
        pipeline,
        component_dir,
        pipeline_root=ws.state_dir / "runs" / pipeline.name,
        arguments=arguments,
        network_mode=args.network,
    )
    _emit(args, outputs, "\n".join(f"{k} = {v}" for k, v in outputs.items()))
    return 0


# --------------------------------------------------------------------- parser
def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", metavar="PATH", help="the monorepo (default: found from cwd)")
    common.add_argument("--json", action="store_true", help="machine-readable result on stdout")

    targets = argparse.ArgumentParser(add_help=False)
    targets.add_argument(
        "--local", action="store_true", help="use the embedded local stack (started if needed)"
    )
    targets.add_argument("--index", metavar="URL", help="package index base URL (not --local)")
    targets.add_argument("--registry", metavar="HOST", help="registry host[:port] (not --local)")
    targets.add_argument(
        "--base-image", metavar="REF", help="base image for every image (or KILN_BASE_IMAGE)"
    )

    parser = argparse.ArgumentParser(
        prog="kiln",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kiln {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("stack", parents=[common], help="start/stop/inspect the local stack")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("build", parents=[common], help="build helper wheels into dist/wheels")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "publish",
        parents=[common, targets],
        help="build helper wheels and upload the ones the index does not have",
    )
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser(
        "bake",
        parents=[common, targets],
        help="publish, then build images offline from their wheelhouse and push them",
    )
    p.set_defaults(func=cmd_bake)

    p = sub.add_parser(
        "components",
        parents=[common, targets],
        help="generate component YAMLs pinned to the pushed images' digests",
    )
    p.set_defaults(func=cmd_components)

    p = sub.add_parser(
        "release",
        parents=[common, targets],
        help="build, publish, bake, push and generate pinned components",
        description="Run every stage; skip what is already published, refuse what would "
        "change a published version. Writes dist/manifest.json.",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--version", metavar="X.Y.Z", help="stamp the manifest with this release")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("run", parents=[common], help="run a pipeline with kfp.local.DockerRunner")
    p.add_argument("pipeline", help="name of pipelines/<name>.py")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--network", default="none", choices=["none", "host"], help="container network")
    p.set_defaults(func=cmd_run)
    return parser


def main_inner(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code: int = args.func(args)
    return code


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = main_inner(argv)
    except KilnError as exc:
        print(f"kiln: {exc.label}: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("kiln: interrupted; re-run the same command to finish", file=sys.stderr)
        code = 130
    sys.exit(code)
