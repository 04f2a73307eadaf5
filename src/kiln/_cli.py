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
from kiln._errors import (
    EXIT_CODES,
    ArtifactAltered,
    CommandFailed,
    ConfigError,
    KilnError,
    PublishedConflict,
    RunFailed,
)
from kiln._report import Reporter
from kiln._workspace.model import Workspace

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
  kiln new helper textstats       scaffold a helper (or a component, a pipeline): kiln new --help
  kiln stack status               what the local index and registry are doing

output:
  progress goes to stderr, one line per stage and per pipeline step; everything
  else (commands, build steps, container logs) goes to .kiln/logs/COMMAND.log,
  whose end is shown when a command fails. -v shows it all, -q only errors.

environment:
  KILN_BASE_IMAGE   base image for every image (overrides image.toml `base`),
                    e.g. a local mirror of python:3.11-slim
  KILN_WHEELHOUSE_RESOLVER  auto | host | image: where `pip wheel` resolves
                    image wheelhouses (auto: here when kiln runs the image's
                    Python, else inside the base image)
  KILN_NO_WHEEL_CACHE=1  rebuild every helper wheel instead of reusing the one
                    in .kiln/cache/wheels built from the same sources and backend
  DOCKER_HOST       the Docker Engine to build with
  KILN_INDEX_USERNAME, KILN_INDEX_PASSWORD
                    credentials for --index (else the netrc entry for its host)
  NETRC             the netrc file to read (default ~/.netrc)
  KILN_REGISTRY_USERNAME, KILN_REGISTRY_PASSWORD
                    credentials for --registry (else docker's config: credHelpers,
                    credsStore, auths, as `docker login` leaves them)
  DOCKER_CONFIG     the folder of docker's config.json (default ~/.docker)
  HTTP(S)_PROXY, NO_PROXY, PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE
                    forwarded to `pip wheel` when it runs inside the base image

exit codes:
  0 ok   2 usage   {codes}
""".format(codes="   ".join(f"{code} {label}" for label, code in EXIT_CODES.items()))


def _report(args: argparse.Namespace) -> Reporter:
    report: Reporter = args.report
    return report


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def _workspace(args: argparse.Namespace) -> Workspace:
    from kiln._workspace.discovery import discover, find_root  # noqa: PLC0415

    root = Path(args.repo).resolve() if args.repo else find_root(Path.cwd())
    ws = discover(root)
    _report(args).open_log(ws.state_dir / "logs" / f"{args.command}.log")
    return ws


def _stack(ws: Workspace) -> Any:
    from kiln._servers.stack import LocalStack  # noqa: PLC0415

    return LocalStack(ws.stack, ws.state_dir / "stack")


def _services(args: argparse.Namespace, ws: Workspace, *, docker: bool = True) -> Any:
    from kiln._release.stages import Services  # noqa: PLC0415
    from kiln._servers.credentials import (  # noqa: PLC0415
        Credentials,
        index_credentials,
        registry_credentials,
    )
    from kiln._servers.index import IndexClient  # noqa: PLC0415
    from kiln._servers.registry import RegistryClient  # noqa: PLC0415
    from kiln._util.cmd import reporting_runner  # noqa: PLC0415

    report = _report(args)
    runner = reporting_runner(report)
    index_storage = None
    # Credentials come from the environment, netrc or docker's config, never from an
    # argument; the local stack needs none.
    index_auth: Credentials | None = None
    registry_auth: Credentials | None = None
    if getattr(args, "local", True):
        stack = _stack(ws)
        was_running = any(s.running for s in stack.status())
        stack.up(echo=report.step)
        if getattr(args, "dry_run", False) and not was_running:
            # A dry run leaves the machine as it found it: stop what it had to start.
            args.cleanup.append(stack.down)
        index_url, registry = ws.stack.index_url, ws.stack.registry
        index_storage = stack.dir / "index"
    else:
        index_url, registry = args.index, args.registry
        if not index_url or not registry:
            raise ConfigError("give --local, or both --index URL and --registry HOST[:PORT]")
        index_auth = index_credentials(index_url, os.environ)
        registry_auth = registry_credentials(registry, os.environ)
        for what, auth in (("index", index_auth), ("registry", registry_auth)):
            report.detail(f"    {what} credentials: {auth.source if auth else 'none'}")
    builder: Any = None
    if docker:
        from kiln._images.docker import DockerBuilder  # noqa: PLC0415

        builder = DockerBuilder(log=report.detail, credentials=registry_auth)
    index = IndexClient(index_url, runner=runner, credentials=index_auth)
    reg = RegistryClient(registry, credentials=registry_auth)
    index.ping()
    reg.ping()
    return Services(
        index=index,
        registry=reg,
        builder=builder,
        runner=runner,
        pip_wheel_in=builder.pip_wheel_in if builder else None,
        index_storage=index_storage,
    )


def _base_override(args: argparse.Namespace) -> str | None:
    return str(args.base_image) if args.base_image else os.environ.get("KILN_BASE_IMAGE") or None


# --------------------------------------------------------------------- commands
def cmd_stack(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    stack = _stack(ws)
    if args.action == "up":
        stack.up(echo=_report(args).step)
    elif args.action == "down":
        for stopped in stack.down(echo=_report(args).step):
            _report(args).step(str(stopped))
    statuses = stack.status()
    text = "\n".join(
        f"{s.name:9} {'running' if s.running else 'stopped':8} {s.url}"
        + (f"  ({s.detail})" if s.detail else "")
        for s in statuses
    )
    _emit(args, [asdict(s) for s in statuses], text)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from kiln._wheels.build import build_wheels, wheel_cache_dir  # noqa: PLC0415

    ws = _workspace(args)
    wheels = build_wheels(
        ws.helpers, ws.dist_dir / "wheels", cache_dir=wheel_cache_dir(ws.state_dir)
    )
    rows = [{"filename": w.filename, "sha256": w.sha256, "path": str(w.path)} for w in wheels]
    _emit(args, rows, "\n".join(f"{w.path}  sha256:{w.sha256}" for w in wheels))
    return 0


def _release_parts(
    args: argparse.Namespace, *, images: bool = True
) -> tuple[Workspace, Any, Any, Any]:
    from kiln._release.stages import make_plan, prepare  # noqa: PLC0415

    ws = _workspace(args)
    services = _services(args, ws, docker=images)
    prepared = prepare(
        ws, services, base_override=_base_override(args), images=images, report=_report(args)
    )
    plan = make_plan(ws, prepared, services)
    return ws, services, prepared, plan


def cmd_publish(args: argparse.Namespace) -> int:
    from kiln._release.stages import check_refusals, publish  # noqa: PLC0415

    _ws, services, prepared, plan = _release_parts(args, images=False)
    from kiln._release.stages import install_wheels  # noqa: PLC0415

    check_refusals(plan)
    uploaded = publish(plan, prepared, services, _report(args))
    install_wheels(prepared.wheels, _ws.dist_dir / "wheels")
    rows = [
        {"filename": s.filename, "sha256": s.sha256, "action": s.action.value} for s in plan.files
    ]
    _emit(args, rows, f"uploaded {len(uploaded)} of {len(rows)} wheel(s) to {services.index.url}")
    return 0


def cmd_bake(args: argparse.Namespace) -> int:
    from kiln._release.stages import bake, check_refusals, install_wheels, publish  # noqa: PLC0415

    ws, services, prepared, plan = _release_parts(args)
    check_refusals(plan)
    publish(plan, prepared, services, _report(args))
    install_wheels(prepared.wheels, ws.dist_dir / "wheels")
    digests, pushed = bake(ws, plan, prepared, services, _report(args))
    refs = {i.image.name: f"{i.repository}@{digests[i.image.name]}" for i in prepared.images}
    _emit(args, refs, "\n".join(refs.values()) + f"\npushed {len(pushed)} image(s)")
    return 0


def cmd_components(args: argparse.Namespace) -> int:
    from kiln._release.stages import generate  # noqa: PLC0415

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
    components, pipelines = generate(ws, refs, report=_report(args))
    rows = {
        "components": [c.to_json() for c in components],
        "pipelines": [p.to_json() for p in pipelines],
    }
    _emit(args, rows, "\n".join(r.path for r in components + pipelines))
    return 0


def _plan_text(plan: Any) -> str:
    """The plan for a person: each action with its reason; refusals last, in full."""
    lines = [
        f"  {s.action.value:8} {s.filename}: {s.reason}"
        for s in plan.files
        if s.kind == "helper" and s.action.value != "refuse"
    ]
    mirror = [s for s in plan.files if s.kind == "mirror"]
    todo = sum(1 for s in mirror if s.action.value == "publish")
    same = sum(1 for s in mirror if s.action.value == "skip")
    lines.append(
        f"  mirror   {len(mirror)} third-party wheel(s): {todo} not on the index yet, "
        f"{same} already there with identical bytes"
    )
    lines += [
        f"  {s.action.value:8} image {s.repository}:{s.version}: {s.reason}"
        for s in plan.images
        if s.action.value != "refuse"
    ]
    lines += [f"  {s.action.value:8} {s.reason}" for s in plan.files if s.action.value == "refuse"]
    lines += [f"  {s.action.value:8} {s.reason}" for s in plan.images if s.action.value == "refuse"]
    return "plan:\n" + "\n".join(lines)


def cmd_release(args: argparse.Namespace) -> int:
    from kiln._release.stages import execute  # noqa: PLC0415

    ws, services, prepared, plan = _release_parts(args)
    if args.dry_run:
        _emit(args, plan.to_dict(), _plan_text(plan))
        if plan.altered:
            return ArtifactAltered.exit_code
        return PublishedConflict.exit_code if plan.refusals else 0
    report = _report(args)
    for line in _plan_text(plan).splitlines():
        report.detail(line)
    outcome = execute(ws, prepared, plan, services, release_version=args.version, report=report)
    if not outcome.uploaded and not outcome.pushed:
        summary = "everything is up to date: nothing uploaded, nothing pushed"
    else:
        summary = f"uploaded {len(outcome.uploaded)} file(s), pushed {len(outcome.pushed)} image(s)"
    result = {
        "uploaded": outcome.uploaded,
        "pushed": outcome.pushed,
        "manifest_path": str(outcome.manifest_path),
        "manifest": outcome.manifest.to_json(),
    }
    _emit(args, result, f"{summary}\nmanifest: {outcome.manifest_path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from kiln._components.generate import pipeline_arguments  # noqa: PLC0415
    from kiln._components.run import run_pipeline, show  # noqa: PLC0415

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
    report = _report(args)
    report.step(f"==> run {pipeline.name} with kfp.local.DockerRunner (network {args.network})")
    outputs = run_pipeline(
        pipeline,
        component_dir,
        pipeline_root=ws.state_dir / "runs" / pipeline.name,
        arguments=arguments,
        network_mode=args.network,
        report=report,
    )
    _emit(args, outputs, "\n".join(f"{k} = {show(v)}" for k, v in outputs.items()))
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from kiln._workspace import scaffold as _scaffold  # noqa: PLC0415

    if args.kind != "pipeline" and args.component:
        args.usage_error(f"--component is for `kiln new pipeline`, not `kiln new {args.kind}`")
    if args.kind == "pipeline" and args.image:
        args.usage_error("--image is for a helper or a component; a pipeline uses --component")
    if args.kind == "component" and len(args.image) != 1:
        args.usage_error("kiln new component NAME needs exactly one --image IMAGE to run on")
    ws = _workspace(args)
    if args.kind == "helper":
        written = _scaffold.new_helper(ws, args.name, images=args.image)
        package = args.name.replace("-", "_")
        hints = [
            f"write helpers/{args.name}/src/{package}/ and helpers/{args.name}/tests/",
            f"pip install -e helpers/{args.name} && pytest helpers/{args.name}",
            "kiln build   (builds its wheel with the others)",
        ]
        hints += [
            f"images/{i}/image.toml now lists {args.name}: if version {ws.image(i).version} "
            "is already published, bump its `version`"
            for i in dict.fromkeys(args.image)
        ]
        if not args.image:
            hints.append(f"put it in an image: list {args.name!r} in images/<i>/image.toml")
    elif args.kind == "component":
        written = _scaffold.new_component(ws, args.name, image=args.image[0])
        hints = [
            f"edit pipelines/components/{args.name}.py, then: kiln release --local",
            f"run it in a pipeline: kiln new pipeline NAME --component {args.name}",
        ]
    else:
        written = _scaffold.new_pipeline(ws, args.name, component=args.component)
        hints = [
            "kiln release --local",
            f"kiln run {args.name}   (arguments: RUN_ARGS, or --arg NAME=VALUE)",
        ]
    paths = [str(p) for p in written]
    _emit(args, {"written": paths}, "\n".join(paths))
    for line in ["next steps:", *(f"  {h}" for h in hints)]:
        _report(args).step(line)
    return 0


def cmd_bump(args: argparse.Namespace) -> int:
    from kiln._workspace.bump import apply_bump, plan_bump, render_bump  # noqa: PLC0415

    ws = _workspace(args)
    plan = plan_bump(ws, args.target, args.level, kind=args.target_kind)
    if args.dry_run:
        render_bump(plan)  # every edit checked, nothing written
    else:
        apply_bump(plan)
    data = {**plan.to_dict(), "written": not args.dry_run}
    _emit(args, data, "\n".join(c.line for c in plan.changes))
    count = len(plan.changes)
    _report(args).step(
        f"dry run: {count} file(s) would change, nothing written"
        if args.dry_run
        else f"wrote {count} file(s)"
    )
    return 0


def _base_pinner(report: Reporter) -> Any:
    """``ref -> (BasePin, how)``: the registry's manifest digest when it answers, else the
    local engine's repo digest or image ID (no engine: unpinned)."""
    import docker.errors  # noqa: PLC0415

    from kiln._images.docker import docker_client  # noqa: PLC0415
    from kiln._servers.registry import RegistryClient  # noqa: PLC0415
    from kiln._wheels.lock import resolve_base  # noqa: PLC0415

    def registry_digest(host: str, repository: str, tag: str) -> str | None:
        loopback = host.split(":", maxsplit=1)[0] in ("127.0.0.1", "localhost")
        return RegistryClient(host, scheme="http" if loopback else "https").digest(repository, tag)

    def local(ref: str) -> tuple[tuple[str, ...], str] | None:
        try:
            image = docker_client().images.get(ref)
        except (KilnError, docker.errors.DockerException) as exc:
            report.detail(f"    {ref}: not on the local Docker Engine ({type(exc).__name__})")
            return None
        return tuple(image.attrs.get("RepoDigests") or ()), str(image.id)

    return lambda ref: resolve_base(ref, registry_digest=registry_digest, local=local)


def cmd_lock(args: argparse.Namespace) -> int:
    from kiln._release.stages import kfp_version  # noqa: PLC0415
    from kiln._util.cmd import reporting_runner  # noqa: PLC0415
    from kiln._wheels.lock import Uv, check_fresh, lock_path, make_lock, read_lock  # noqa: PLC0415
    from kiln._wheels.wheelhouse import SimplePages, host_ca_bundle  # noqa: PLC0415

    ws = _workspace(args)
    report = _report(args)
    known = {i.name: i for i in ws.images}
    unknown = sorted(set(args.images) - set(known))
    if unknown:
        raise ConfigError(
            f"no image {', '.join(unknown)} under images/ (known: {', '.join(known) or 'none'})"
        )
    images = [known[n] for n in sorted(set(args.images))] or list(ws.images)
    kfp = kfp_version()
    if args.check:
        stale = []
        for image in images:
            try:
                check_fresh(read_lock(image), ws, image, kfp)
            except ConfigError as exc:
                stale.append(str(exc))
        if stale:
            raise ConfigError("\n".join(stale))
        _emit(args, {i.name: "fresh" for i in images}, f"{len(images)} lock(s) up to date")
        return 0
    import uv  # noqa: PLC0415

    tool = Uv(reporting_runner(report), uv.find_uv_bin(), ws.upstream_index, host_ca_bundle())
    pages, pin_base, bases = SimplePages(ws.upstream_index), _base_pinner(report), {}
    rows: dict[str, dict[str, Any]] = {}
    for image in images:
        if image.base not in bases:
            bases[image.base] = pin_base(image.base)
            report.step(f"==> base {image.base}: {bases[image.base][1]}")
        report.step(f"==> lock {image.name}: uv pip compile for Python {image.python} on "
                    f"{image.platform}")  # fmt: skip
        text = make_lock(
            ws, image, kfp_version=kfp, uv=tool, base=bases[image.base][0], pages=pages,
            upgrade=args.upgrade or (),
        )  # fmt: skip
        path = lock_path(image)
        same = path.is_file() and path.read_text(encoding="utf-8") == text
        if not same:
            path.write_text(text, encoding="utf-8")
        rows[image.name] = {"path": str(path), "written": not same}
    _emit(args, rows, "\n".join(
        f"{r['path']}: {'written' if r['written'] else 'unchanged'}" for r in rows.values()
    ))  # fmt: skip
    return 0


# --------------------------------------------------------------------- parser
def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", metavar="PATH", help="the monorepo (default: found from cwd)")
    common.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    common.add_argument(
        "-v", "--verbose", action="store_true", help="show commands, build steps, container logs"
    )
    common.add_argument("-q", "--quiet", action="store_true", help="show only errors")

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

    p = sub.add_parser(
        "new",
        parents=[common],
        help="write a helper, component or pipeline skeleton in the repo's conventions",
        description="Write a working, tested skeleton in the repo's conventions: it builds,\n"
        "its test passes, it compiles with KFP. Nothing is overwritten, and nothing is\n"
        "written when a value is bad. Prints the paths written, then next steps.",
        epilog="""\
examples:
  kiln new helper textstats --image analytics
      helpers/textstats/: pyproject.toml (distribution acme-textstats, hatchling
      pinned, packages = ["src/textstats"]), src/textstats/, tests/; and
      "textstats" appended to `helpers` in images/analytics/image.toml
  kiln new helper text-stats
      folder and distribution use dashes (acme-text-stats); the import package
      uses underscores (text_stats)
  kiln new component word_counts --image analytics
      pipelines/components/word_counts.py: IMAGE = "analytics" and a function
      word_counts whose imports sit inside it
  kiln new pipeline word_report --component word_counts
      pipelines/word_report.py: RUN_ARGS and build(load) running word_counts
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=["helper", "component", "pipeline"], help="what to write")
    p.add_argument(
        "name",
        help="helper: folder name (lowercase, digits, dashes); component, pipeline: a "
        "lowercase Python identifier",
    )
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="IMAGE",
        help="component: the image under images/ it runs on (required); helper: add the "
        "helper to this image's `helpers` (repeatable)",
    )
    p.add_argument(
        "--component",
        metavar="NAME",
        help="pipeline: the component it runs (default: the first one whose inputs are "
        "plain values)",
    )
    p.set_defaults(func=cmd_new, usage_error=p.error)

    p = sub.add_parser(
        "bump",
        parents=[common],
        help="raise a helper's or an image's version; pins and images that must follow do",
        description="Raise the version of a helper (helpers/<h>/pyproject.toml) or an image\n"
        "(images/<i>/image.toml) in place, comments and layout kept. A helper bump cascades:\n"
        "every helper that pins it gets the new pin and a patch bump (and so on, up the\n"
        "chain), and every image that contains a changed helper gets one patch bump.\n"
        "Prints one line per file; every edit is checked before any file is written.",
        epilog="""\
examples:
  kiln bump dataquality patch
      helpers/dataquality/pyproject.toml: acme-dataquality 0.1.0 -> 0.1.1 (bumped)
      helpers/viz/pyproject.toml: acme-viz 0.1.1 -> 0.1.2 (pins acme-dataquality, now ==0.1.1)
      images/analytics/image.toml: analytics 0.1.1 -> 0.1.2 (contains dataquality, viz)
  kiln bump imgproc minor --dry-run   print what would change, write nothing
  kiln bump base 1.0.0                an explicit version, above the current one
  kiln bump base patch --image        when a helper and an image share the name
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="NAME", help="a folder under helpers/ or images/")
    p.add_argument(
        "level",
        metavar="major|minor|patch|X.Y.Z",
        help="raise that part of X.Y.Z (0.2.0: patch 0.2.1, minor 0.3.0, major 1.0.0), "
        "or set a PEP 440 version above the current one",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--helper",
        dest="target_kind",
        action="store_const",
        const="helper",
        help="NAME is the helper (when an image has the same name)",
    )
    which.add_argument(
        "--image",
        dest="target_kind",
        action="store_const",
        const="image",
        help="NAME is the image (when a helper has the same name)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    p.set_defaults(func=cmd_bump)
    _add_lock_parser(sub, common)
    return parser


def _add_lock_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "lock",
        parents=[common],
        help="hash-lock each image's third-party wheels and base (images/<i>/requirements.lock)",
        description="Resolve each image's third-party closure (its helpers' dependencies and\n"
        "image.toml `requirements`) with `uv pip compile --generate-hashes` for the image's\n"
        "Python and platform, add kfp without its dependencies (as KFP's runtime installs\n"
        "it), pin the base image by digest, and write images/<i>/requirements.lock. Commit\n"
        "it: a release installs exactly that file. Versions of an existing lock are kept.",
        epilog="""\
examples:
  kiln lock                      lock every image (keeps locked versions that still fit)
  kiln lock base --upgrade       re-resolve base to the newest versions
  kiln lock base --upgrade numpy move numpy only
  kiln lock --check              exit 3 naming each lock that image.toml, a helper or kfp
                                 has made stale (CI); writes nothing
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images to lock (default: all)")
    p.add_argument(
        "--upgrade",
        nargs="?",
        const="",
        action="append",
        metavar="PACKAGE",
        help="move versions: all of them, or PACKAGE's only (repeatable); put IMAGE first",
    )
    p.add_argument("--check", action="store_true", help="fail on stale locks, write nothing")
    p.set_defaults(func=cmd_lock)


def main_inner(argv: Sequence[str] | None = None, report: Reporter | None = None) -> int:
    args = _parser().parse_args(argv)
    args.report = report or Reporter()
    args.report.verbose, args.report.quiet = args.verbose, args.quiet
    args.cleanup = []
    try:
        code: int = args.func(args)
    finally:
        for cleanup in args.cleanup:
            cleanup()
    return code


def _failure_context(exc: KilnError, report: Reporter) -> str:
    """Where the full log of a failed command is, with its end for failed steps and runs."""
    if report.log_path is None:
        return ""
    where = f"\nfull log: {report.log_path}"
    if isinstance(exc, RunFailed | CommandFailed) and not report.verbose:
        tail = report.log_tail(25)
        if tail:
            return f"\nthe log ends:\n{tail}{where}"
    return where


def main(argv: Sequence[str] | None = None) -> None:
    report = Reporter()
    try:
        code = main_inner(argv, report)
    except KilnError as exc:
        print(f"kiln: {exc.label}: {exc}{_failure_context(exc, report)}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("kiln: interrupted; re-run the same command to finish", file=sys.stderr)
        code = 130
    finally:
        report.close()
    sys.exit(code)
