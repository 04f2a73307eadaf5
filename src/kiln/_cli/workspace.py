"""Commands that change the repository: new, bump, lock."""

from __future__ import annotations

import argparse
from typing import Any

from kiln._cli import common
from kiln._cli.context import context
from kiln._lock.bump import bump
from kiln._lock.flow import check, lock, select_images
from kiln._lock.tools import lock_tools, os_sources
from kiln._release.prepare import kfp_version
from kiln._workspace.new import new


def cmd_new(args: argparse.Namespace) -> int:
    if args.kind != "pipeline" and args.component:
        args.usage_error(f"--component is for `kiln new pipeline`, not `kiln new {args.kind}`")
    if args.kind == "pipeline" and args.image:
        args.usage_error("--image is for a helper or a component; a pipeline uses --component")
    if args.kind == "component" and len(args.image) != 1:
        args.usage_error("kiln new component NAME needs exactly one --image IMAGE to run on")
    ws = common.workspace(args)
    result = new(ws, args.kind, args.name, images=args.image, component=args.component)
    paths = [str(p) for p in result.written]
    common.emit(args, {"written": paths}, "\n".join(paths))
    for line in ["next steps:", *(f"  {h}" for h in result.hints)]:
        common.report_of(args).step(line)
    return 0


def cmd_bump(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
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
    ws = common.workspace(args)
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


def add_parsers(sub: Any, common_args: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "new",
        parents=[common_args],
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
        parents=[common_args],
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
    _add_lock_parser(sub, common_args)


def _add_lock_parser(sub: Any, common_args: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "lock",
        parents=[common_args],
        help="lock the OS (images/os.lock) and each image's wheels (images/<i>/requirements.lock)",
        description="Two kinds of lock, both committed; a release builds from them alone.\n"
        "images/os.lock: the Debian packages of kiln's OS base ([tool.kiln.os]): the closure\n"
        "of its roots, resolved from the suite's indexes after their signatures are checked\n"
        "against Debian's archive keyring (gpgv), each package by version and sha256, and\n"
        "the layer they make, by digest. It is written only when [tool.kiln.os] or an\n"
        "image's os-packages changed, or with --upgrade-os, which prints every version that\n"
        "moves. images/<i>/requirements.lock: each image's third-party closure (its helpers'\n"
        "dependencies and image.toml `requirements`) from `uv pip compile --generate-hashes`\n"
        "for the image's Python and platform, kfp without its dependencies (as KFP's runtime\n"
        "installs it), and a registry base pinned by digest. Versions of an existing lock are\n"
        "kept.",
        epilog="""\
examples:
  kiln lock                      the OS lock if stale, and every image's (locked versions
                                 that still fit are kept)
  kiln lock --upgrade-os         move every Debian package to the newest the suites offer
                                 (the security archive included); prints each change
  kiln lock base --upgrade       re-resolve base's wheels to the newest versions
  kiln lock base --upgrade numpy move numpy only
  kiln lock --check              exit 3 naming each stale lock (CI); writes nothing,
                                 asks no server
  kiln lock --check --sources    also exit 5 when a pinned .deb is neither in kiln's cache
                                 nor on any mirror any more (Debian drops superseded ones)
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
        help="move wheel versions: all of them, or PACKAGE's only (repeatable); put IMAGE first",
    )
    p.add_argument(
        "--upgrade-os",
        action="store_true",
        help="move images/os.lock to the newest Debian packages (prints every change)",
    )
    p.add_argument("--check", action="store_true", help="fail on stale locks, write nothing")
    p.add_argument(
        "--sources",
        action="store_true",
        help="with --check: also ask the mirrors whether each pinned .deb is still served",
    )
    p.set_defaults(func=cmd_lock, usage_error=p.error)
