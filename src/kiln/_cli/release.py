"""The release commands: build, publish, bake, components, release, check (`kiln plan`
and the other ways to release, --job, --finalize, --tag and --dev, are in
``release_modes``, imported only when one of them runs: a plain release need not import
their flows).

Each parses its arguments, calls its flow (``kiln._release``) with the command's context
and target, and renders the flow's typed result as text or --json.
"""

from __future__ import annotations

import argparse

from kiln._cli import common
from kiln._cli.context import context, target
from kiln._cli.parsers import deferred
from kiln._errors import ConfigError
from kiln._release.check_release import check_release
from kiln._release.components import committed_label, components
from kiln._release.flows import bake_images, publish_wheels, release
from kiln._release.plan import plan_text
from kiln._wheels.build import build_wheels, wheel_cache_dir


def cmd_build(args: argparse.Namespace) -> int:
    ws = common.workspace(args, lock=True)
    cache = wheel_cache_dir(ws.state_dir, enabled=common.options_of(args).wheel_cache)
    wheels = build_wheels(ws.helpers, ws.dist_dir / "wheels", cache_dir=cache)
    rows = [{"filename": w.filename, "sha256": w.sha256, "path": str(w.path)} for w in wheels]
    common.emit(args, rows, "\n".join(f"{w.path}  sha256:{w.sha256}" for w in wheels))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    ws = common.workspace(args, lock=True)
    result = publish_wheels(ws, context(args), target(args))
    rows = [
        {"filename": s.filename, "sha256": s.sha256, "action": s.action.value} for s in result.files
    ]
    common.emit(
        args, rows, f"uploaded {len(result.uploaded)} of {len(rows)} wheel(s) to {result.index_url}"
    )
    return 0


def cmd_bake(args: argparse.Namespace) -> int:
    ws = common.workspace(args, lock=True)
    result = bake_images(ws, context(args), target(args))
    refs = dict(result.refs)
    common.emit(args, refs, "\n".join(refs.values()) + f"\npushed {len(result.pushed)} image(s)")
    return 0


def cmd_components(args: argparse.Namespace) -> int:
    ws = common.workspace(args, lock=not args.check)
    result = components(ws, context(args), target(args), check=args.check)
    refs = dict(result.images)
    if args.check:
        checked = {"images": refs, "stale": []}
        label = committed_label(ws)
        common.emit(args, checked, f"{label}: {len(ws.components)} component YAML(s) up to date")
        return 0
    rows = {
        "images": refs,
        "components": [c.to_json() for c in result.components],
        "pipelines": [p.to_json() for p in result.pipelines],
    }
    common.emit(args, rows, "\n".join(r.path for r in result.components + result.pipelines))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    if args.tag and args.dev:
        raise ConfigError("--tag and --dev are two different releases: give one of them")
    if args.finalize or args.job is not None or args.plan is not None or args.tag or args.dev:
        return deferred("release_modes", "cmd_release_mode")(args)
    ws = common.workspace(args, lock=True)
    result = release(ws, context(args), target(args), dry_run=args.dry_run, version=args.version)
    outcome = result.outcome
    if outcome is None:  # a dry run: the plan, and the exit code of what it refuses
        common.emit(args, result.plan.to_dict(), plan_text(result.plan))
        return result.exit_code
    if not outcome.uploaded and not outcome.pushed:
        summary = "everything is up to date: nothing uploaded, nothing pushed"
    else:
        summary = f"uploaded {len(outcome.uploaded)} file(s), pushed {len(outcome.pushed)} image(s)"
    rows = {
        "uploaded": outcome.uploaded,
        "pushed": outcome.pushed,
        "manifest_path": str(outcome.manifest_path),
        "manifest": outcome.manifest.to_json(),
    }
    common.emit(args, rows, f"{summary}\nmanifest: {outcome.manifest_path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    result = check_release(ws, context(args), target(args))
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
