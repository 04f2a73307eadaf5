"""The release commands: build, publish, bake, components, release."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kiln._cli import common
from kiln._errors import ArtifactAltered, ConfigError, PublishedConflict
from kiln._workspace.model import Workspace

if TYPE_CHECKING:
    from kiln._release.plan import ReleasePlan
    from kiln._release.stages import Prepared, Services


def cmd_build(args: argparse.Namespace) -> int:
    from kiln._wheels.build import build_wheels, wheel_cache_dir  # noqa: PLC0415

    ws = common.workspace(args)
    cache = wheel_cache_dir(ws.state_dir, enabled=common.options_of(args).wheel_cache)
    wheels = build_wheels(ws.helpers, ws.dist_dir / "wheels", cache_dir=cache)
    rows = [{"filename": w.filename, "sha256": w.sha256, "path": str(w.path)} for w in wheels]
    common.emit(args, rows, "\n".join(f"{w.path}  sha256:{w.sha256}" for w in wheels))
    return 0


def release_parts(
    args: argparse.Namespace, *, images: bool = True
) -> tuple[Workspace, Services, Prepared, ReleasePlan]:
    """Prepare (local work) and plan (ask the servers): what every release command runs."""
    from kiln._release.stages import make_plan, prepare  # noqa: PLC0415

    ws = common.workspace(args)
    services = common.services(args, ws, images=images)
    options = common.options_of(args)
    prepared = prepare(
        ws,
        services,
        images=images,
        wheel_cache=options.wheel_cache,
        report=common.report_of(args),
    )
    plan = make_plan(ws, prepared, services)
    return ws, services, prepared, plan


def cmd_publish(args: argparse.Namespace) -> int:
    from kiln._release.stages import check_refusals, install_wheels, publish  # noqa: PLC0415

    ws, services, prepared, plan = release_parts(args, images=False)
    check_refusals(plan)
    uploaded = publish(plan, services, common.report_of(args))
    install_wheels(prepared.wheels, ws.dist_dir / "wheels")
    rows = [
        {"filename": s.filename, "sha256": s.sha256, "action": s.action.value} for s in plan.files
    ]
    common.emit(
        args, rows, f"uploaded {len(uploaded)} of {len(rows)} wheel(s) to {services.index.url}"
    )
    return 0


def cmd_bake(args: argparse.Namespace) -> int:
    from kiln._release.stages import (  # noqa: PLC0415
        bake,
        check_engine,
        check_refusals,
        install_wheels,
        publish,
    )

    ws, services, prepared, plan = release_parts(args)
    check_refusals(plan)
    check_engine(plan, services)
    publish(plan, services, common.report_of(args))
    install_wheels(prepared.wheels, ws.dist_dir / "wheels")
    digests, pushed = bake(ws, plan, services, common.report_of(args))
    refs = {i.image.name: f"{i.repository}@{digests[i.image.name]}" for i in prepared.images}
    common.emit(args, refs, "\n".join(refs.values()) + f"\npushed {len(pushed)} image(s)")
    return 0


def cmd_components(args: argparse.Namespace) -> int:
    from kiln._components.drift import describe  # noqa: PLC0415
    from kiln._release.stages import generate, prepare  # noqa: PLC0415

    ws = common.workspace(args)
    services = common.services(args, ws)
    options = common.options_of(args)
    report = common.report_of(args)
    # Every image's digest is computed here: nothing is pushed, and no engine is needed
    # when the base is in a registry or was read before.
    prepared = prepare(
        ws,
        services,
        wheel_cache=options.wheel_cache,
        report=report,
    )
    refs = {i.image.name: f"{i.repository}@{i.digest}" for i in prepared.images}
    label = str(ws.component_dir.relative_to(ws.root))
    if args.check:
        drifts = _component_drift(args, ws, services, prepared)
        if drifts:
            raise ConfigError(
                f"{label}: {len(drifts)} component YAML(s) are stale: run `kiln components"
                f"{' --local' if args.local else ''}` and commit the result\n"
                + describe(drifts, label=label)
            )
        checked = {"images": refs, "stale": []}
        common.emit(args, checked, f"{label}: {len(ws.components)} component YAML(s) up to date")
        return 0
    components, pipelines = generate(
        ws, prepared, refs, index_url=services.index.url, report=report
    )
    rows = {
        "images": refs,
        "components": [c.to_json() for c in components],
        "pipelines": [p.to_json() for p in pipelines],
    }
    common.emit(args, rows, "\n".join(r.path for r in components + pipelines))
    return 0


def plan_text(plan: ReleasePlan) -> str:
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
    by_image: dict[str, list[str]] = {}
    for c in plan.components:
        by_image.setdefault(c.image, []).append(c.name)
    lines += [
        f"  generate {len(names)} component(s) on {image} ({', '.join(names)}): "
        + next(c.reason for c in plan.components if c.image == image)
        for image, names in by_image.items()
    ]
    lines += [f"  {s.action.value:8} {s.reason}" for s in plan.files if s.action.value == "refuse"]
    lines += [f"  {s.action.value:8} {s.reason}" for s in plan.images if s.action.value == "refuse"]
    return "plan:\n" + "\n".join(lines)


def cmd_release(args: argparse.Namespace) -> int:
    from kiln._release.stages import execute  # noqa: PLC0415

    if args.tag and args.dev:
        raise ConfigError("--tag and --dev are two different releases: give one of them")
    if args.tag:
        from kiln._cli.train import release_tag  # noqa: PLC0415

        return release_tag(args)
    if args.dev:
        from kiln._cli.dev import release_dev  # noqa: PLC0415

        return release_dev(args)
    ws, services, prepared, plan = release_parts(args)
    if args.dry_run:
        common.emit(args, plan.to_dict(), plan_text(plan))
        if plan.altered:
            return ArtifactAltered.exit_code
        return PublishedConflict.exit_code if plan.refusals else 0
    report = common.report_of(args)
    for line in plan_text(plan).splitlines():
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
    common.emit(args, result, f"{summary}\nmanifest: {outcome.manifest_path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import dataclasses  # noqa: PLC0415

    from kiln._release.check import check, component_findings  # noqa: PLC0415
    from kiln._release.manifest import recorded_wheels  # noqa: PLC0415
    from kiln._release.stages import kfp_version, prepare  # noqa: PLC0415

    ws = common.workspace(args)
    report = common.report_of(args)
    options = common.options_of(args)
    services = common.services(args, ws, read_only=True)
    prepared = prepare(
        ws, services, wheel_cache=options.wheel_cache,
        report=report, images=False,
    )  # fmt: skip
    report.stage("check", f"check: against {services.index.url} and {services.registry.host}")
    result = check(
        ws,
        prepared.wheels,
        index=services.index,
        registry=services.registry,
        kfp_version=kfp_version(),
        recorded=recorded_wheels(ws.dist_dir / "manifest.json", services.index.url),
    )
    if not any(f.kind == "relock" for f in result.findings):  # YAMLs come from fresh locks
        drifts = _component_drift(args, ws, services)
        label = str(ws.component_dir.relative_to(ws.root))
        fix = f"kiln components{' --local' if args.local else ''} and commit the result"
        found = component_findings(drifts, label=label, fix=fix)
        result = dataclasses.replace(result, findings=(*result.findings, *found))
    lines = [f"{f.path}: {f.message}\n    fix: {f.fix}" for f in result.findings]
    blocking = sum(f.blocking for f in result.findings)
    todo = len(result.findings) - blocking
    if blocking:
        verdict = f"{blocking} finding(s) to fix before releasing"
    elif todo:
        verdict = f"nothing to bump or relock; {todo} new version(s) to publish with `kiln release`"
    else:
        verdict = "nothing to do: the repository matches what is published"
    common.emit(args, result.to_dict(), "\n".join([*lines, verdict]))
    return result.exit_code


def _component_drift(
    args: argparse.Namespace, ws: Workspace, services: Services, prepared: Prepared | None = None
) -> list[Any]:
    """The committed component YAMLs against what kiln generates now from ``prepared``
    (prepared here when not given: images built locally, nothing pushed)."""
    import shutil  # noqa: PLC0415

    from kiln._components.drift import compare  # noqa: PLC0415
    from kiln._release.stages import generate, prepare  # noqa: PLC0415

    options = common.options_of(args)
    report = common.report_of(args)
    if prepared is None:
        prepared = prepare(
            ws, services, wheel_cache=options.wheel_cache,
            report=report,
        )  # fmt: skip
    refs = {i.image.name: f"{i.repository}@{i.digest}" for i in prepared.images}
    scratch = ws.state_dir / "check"
    shutil.rmtree(scratch, ignore_errors=True)
    generate(
        ws, prepared, refs, index_url=services.index.url, report=report,
        out=scratch / "components",
    )  # fmt: skip
    label = str(ws.component_dir.relative_to(ws.root))
    return compare(ws.component_dir, scratch / "components", label=label)


def add_parsers(
    sub: Any, common_args: argparse.ArgumentParser, targets: argparse.ArgumentParser
) -> None:
    p = sub.add_parser("build", parents=[common_args], help="build helper wheels into dist/wheels")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "publish",
        parents=[common_args, targets],
        help="build helper wheels and upload the ones the index does not have",
    )
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser(
        "bake",
        parents=[common_args, targets],
        help="publish, then build images offline from their wheelhouse and push them",
    )
    p.set_defaults(func=cmd_bake)

    p = sub.add_parser(
        "components",
        parents=[common_args, targets],
        help="generate the committed component YAMLs, pinned to image digests or packages",
        description="Write pipelines/components/generated/<component>.yaml for every component:\n"
        "image mode pins the image digest kiln computes (nothing is pushed), packages mode\n"
        "the hash-checked files its pod installs from the index. Commit the result; the\n"
        "same inputs always give the same bytes.",
        epilog="""\
examples:
  kiln components --local          regenerate against the local stack's index and registry
  kiln components --local --check  exit 3 with a diff when a committed YAML is stale (CI)
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail (exit 3) and print the diff when a committed YAML is stale",
    )
    p.set_defaults(func=cmd_components)

    p = sub.add_parser(
        "release",
        parents=[common_args, targets],
        help="build, publish, bake, push and generate pinned components",
        description="Run every stage; skip what is already published, refuse what would "
        "change a published version. Writes dist/manifest.json.",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--version", metavar="X.Y.Z", help="stamp the manifest with this release")
    p.add_argument(
        "--tag",
        metavar="vX.Y.Z",
        help="release the tagged commit (what CI runs for a pushed tag): refuses a dirty tree, "
        "a tag not on HEAD, a version at or below the last release, stale locks or YAMLs; "
        "publishes what is new, the <org>-components bundle, and dist/release/",
    )
    p.add_argument(
        "--dev",
        action="store_true",
        help="the dev channel: changed helpers as X.Y.Z.devN, their images as dev-<sha>, dev "
        "YAMLs in dist/dev/ and a dev bundle; stable versions and tags untouched",
    )
    p.set_defaults(func=cmd_release)

    p = sub.add_parser(
        "check",
        parents=[common_args, targets],
        help="what must be bumped or relocked before releasing, each with its fix",
        description="Compare the repository with what is published, reading only: each\n"
        "helper's wheel (from the build cache) with the index's sha256, each image's\n"
        "committed lock with its inputs, and each pushed image's recorded helpers and\n"
        "third-party set with the repository. Needs no Docker Engine. Exit 0 when\n"
        "nothing must change; 4 when a version must be bumped, 3 when a lock is stale,\n"
        "8 when the index was altered. A local stack it had to start is stopped again.",
        epilog="examples:\n  kiln check --local\n  kiln check --index URL --registry HOST "
        "--json   (CI)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=cmd_check)
