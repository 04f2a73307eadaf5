"""The ways to release other than a plain `kiln release`: a CI matrix's plan, jobs and
last step (`kiln plan`, `kiln release --job J --plan FILE`, `--finalize --plan FILE`), a
tagged commit (`--tag vX.Y.Z`) and the dev channel (`--dev`).

Apart from ``release`` because a plain release, the common case, need not import their
flows (``kiln._release.job``, ``finalize``, ``tag``, ``dev_release``, ``matrix``: tomlkit
and some 15 modules); ``release.cmd_release`` hands them the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kiln._cli import common
from kiln._cli.context import context, target
from kiln._release.dev_release import plan_dev, release_dev
from kiln._release.finalize import finalize
from kiln._release.job import release_job
from kiln._release.matrix import plan_jobs
from kiln._release.tag import TagRelease, plan_tag, release_tag


def cmd_release_mode(args: argparse.Namespace) -> int:
    """`kiln release` with --finalize, --job or --plan, --tag, or --dev (not --tag and
    --dev together: ``release.cmd_release`` refuses that first)."""
    if args.finalize:
        return _release_finalize(args)
    if args.job is not None or args.plan is not None:
        return _release_job(args)
    if args.tag:
        return _release_tag(args)
    return _release_dev(args)


def _release_job(args: argparse.Namespace) -> int:
    if args.job is None or args.plan is None:
        args.usage_error("--job J and --plan FILE go together: a job of the plan in FILE")
    if args.dry_run or args.version:
        args.usage_error(
            "--job publishes a share of a plan: `kiln plan` is its dry run, and the "
            "finalize step stamps the manifest (no --dry-run, --version)"
        )
    ws = common.workspace(args, lock=True)
    result = release_job(
        ws, context(args), target(args), plan=Path(args.plan), job=args.job, tag=args.tag,
        dev=args.dev,
    )  # fmt: skip
    common.emit(args, result.to_json(), result.summary)
    return 0


def _release_finalize(args: argparse.Namespace) -> int:
    if args.plan is None or args.job is not None:
        args.usage_error("--finalize takes --plan FILE (the plan every job ran), and no --job")
    if args.dry_run or args.version:
        args.usage_error(
            "--finalize records the plan's release: `kiln plan` is its dry run (no --dry-run, "
            "--version)"
        )
    ws = common.workspace(args, lock=True)
    result = finalize(
        ws, context(args), target(args), plan=Path(args.plan), tag=args.tag, dev=args.dev
    )
    if isinstance(result, TagRelease):
        common.emit(args, result.to_json(), f"{result.summary}\nrecord: {result.record}")
        return 0
    rows = {"manifest_path": str(result.manifest_path), "manifest": result.manifest.to_json()}
    common.emit(
        args, rows, f"every artifact of the plan is published\nmanifest: {result.manifest_path}"
    )
    return 0


def _release_tag(args: argparse.Namespace) -> int:
    ws = common.workspace(args, lock=True)
    if args.dry_run:
        planned = plan_tag(ws, context(args), target(args), args.tag)
        common.emit(args, planned.to_json(), planned.text)
        return 0
    result = release_tag(ws, context(args), target(args), args.tag)
    common.emit(args, result.to_json(), f"{result.summary}\nrecord: {result.record}")
    return 0


def _release_dev(args: argparse.Namespace) -> int:
    ws = common.workspace(args, lock=True)
    if args.dry_run:
        planned = plan_dev(ws, context(args), target(args))
        common.emit(args, planned.to_json(), planned.text)
        return 0
    result = release_dev(ws, context(args), target(args))
    common.emit(args, result.to_json(), result.summary)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    ws = common.workspace(args, lock=True)  # it builds, in kiln's state folder
    planned = plan_jobs(ws, context(args), target(args), jobs=args.jobs, tag=args.tag, dev=args.dev)
    common.emit(args, planned.to_json(), planned.text)
    return 0
