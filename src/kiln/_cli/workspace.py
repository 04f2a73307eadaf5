"""Commands that change the repository: new, bump, lock."""

from __future__ import annotations

import argparse

from kiln._cli import common
from kiln._cli.context import context
from kiln._locking.bump import bump
from kiln._locking.flow import check, lock, select_images
from kiln._locking.tools import lock_tools, os_sources
from kiln._release.prepare import kfp_version
from kiln._workspace.new import new


def cmd_new(args: argparse.Namespace) -> int:
    if args.kind != "pipeline" and args.component:
        args.usage_error(f"--component is for `kiln new pipeline`, not `kiln new {args.kind}`")
    if args.kind == "pipeline" and args.image:
        args.usage_error("--image is for a helper or a component; a pipeline uses --component")
    if args.kind == "component" and len(args.image) != 1:
        args.usage_error("kiln new component NAME needs exactly one --image IMAGE to run on")
    ws = common.workspace(args, lock=True)
    result = new(ws, args.kind, args.name, images=args.image, component=args.component)
    paths = [str(p) for p in result.written]
    common.emit(args, {"written": paths}, "\n".join(paths))
    for line in ["next steps:", *(f"  {h}" for h in result.hints)]:
        common.report_of(args).step(line)
    return 0


def cmd_bump(args: argparse.Namespace) -> int:
    ws = common.workspace(args, lock=not args.dry_run)
    result = bump(
        ws, args.target, args.level, kind=args.target_kind, dry_run=args.dry_run,
        kfp=kfp_version(), tools=lambda: lock_tools(ws, context(args)),
        report=common.report_of(args),
    )  # fmt: skip
    plan = result.plan
    common.emit(args, result.to_dict(), "\n".join(c.line for c in plan.changes))
    count = len(plan.changes)
    common.report_of(args).step(
        f"dry run: {count} file(s) would change, nothing written"
        if args.dry_run
        else f"wrote {count} file(s)"
    )
    if args.dry_run and result.stale:
        common.report_of(args).step(
            f"their locks would be stale: then `kiln lock {' '.join(result.stale)}`"
        )
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    ws = common.workspace(args, lock=not args.check)
    images = select_images(ws, args.images)
    kfp = kfp_version()
    if args.sources and not args.check:
        args.usage_error("--sources goes with --check: `kiln lock --check --sources`")
    report, options = common.report_of(args), common.options_of(args)
    if args.check:
        sources = os_sources(ws, options) if args.sources else None
        fresh = check(ws, images, kfp=kfp, sources=sources, report=report)
        common.emit(args, fresh.to_dict(), fresh.text)
        return 0
    result = lock(
        ws, images, kfp=kfp, tools=lock_tools(ws, context(args)), report=report,
        upgrade=args.upgrade or (), upgrade_os=args.upgrade_os, all_images=not args.images,
    )  # fmt: skip
    common.emit(args, result.to_dict(), result.text)
    return 0
