"""Commands that change the repository: new, bump, lock."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from kiln._cli import common
from kiln._errors import ConfigError, KilnError, ServiceUnavailable
from kiln._options import Options
from kiln._report import Reporter
from kiln._workspace.model import Image, Workspace


def cmd_new(args: argparse.Namespace) -> int:
    from kiln._workspace import scaffold as _scaffold  # noqa: PLC0415

    if args.kind != "pipeline" and args.component:
        args.usage_error(f"--component is for `kiln new pipeline`, not `kiln new {args.kind}`")
    if args.kind == "pipeline" and args.image:
        args.usage_error("--image is for a helper or a component; a pipeline uses --component")
    if args.kind == "component" and len(args.image) != 1:
        args.usage_error("kiln new component NAME needs exactly one --image IMAGE to run on")
    ws = common.workspace(args)
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
    common.emit(args, {"written": paths}, "\n".join(paths))
    for line in ["next steps:", *(f"  {h}" for h in hints)]:
        common.report_of(args).step(line)
    return 0


def cmd_bump(args: argparse.Namespace) -> int:
    from kiln._lock.format import lock_path  # noqa: PLC0415
    from kiln._release.prepare import kfp_version  # noqa: PLC0415
    from kiln._workspace.bump import apply_bump, plan_bump, render_bump  # noqa: PLC0415
    from kiln._workspace.discovery import discover  # noqa: PLC0415

    ws = common.workspace(args)
    plan = plan_bump(ws, args.target, args.level, kind=args.target_kind)
    if args.dry_run:
        render_bump(plan)  # every edit checked, nothing written
    else:
        apply_bump(plan)
    # An image whose helpers' dependencies moved needs a fresh lock too.
    after = ws if args.dry_run else discover(ws.root)
    stale = []
    for name in plan.images_to_relock:
        image = after.image(name)
        # One never locked is left to `kiln check` and the release, which say so.
        if lock_path(image).is_file() and not _fresh(after, image, kfp_version()):
            stale.append(image)
    relocked = {} if args.dry_run or not stale else _relock(args, after, stale, upgrade=())
    data = {**plan.to_dict(), "written": not args.dry_run, "relocked": sorted(relocked)}
    common.emit(args, data, "\n".join(c.line for c in plan.changes))
    count = len(plan.changes)
    common.report_of(args).step(
        f"dry run: {count} file(s) would change, nothing written"
        if args.dry_run
        else f"wrote {count} file(s)"
    )
    if args.dry_run and stale:
        common.report_of(args).step(
            f"their locks would be stale: then `kiln lock {' '.join(i.name for i in stale)}`"
        )
    return 0


def base_pinner(report: Reporter, options: Options) -> Any:
    """``(ref, where) -> (BasePin, how)``: a registry base pinned by its registry's
    manifest digest (asked with its credentials and the CA bundle), or a repo digest of
    the local engine's copy; else a ConfigError naming ``where``. Offline: loopback only."""
    import docker.errors  # noqa: PLC0415

    from kiln._images.docker import docker_client  # noqa: PLC0415
    from kiln._images.registry_base import resolve_base  # noqa: PLC0415
    from kiln._servers.credentials import registry_credentials  # noqa: PLC0415
    from kiln._servers.registry import RegistryClient  # noqa: PLC0415

    def registry_digest(host: str, repository: str, tag: str) -> str | None:
        loopback = host.split(":", maxsplit=1)[0] in ("127.0.0.1", "localhost")
        if options.offline and not loopback:
            raise ServiceUnavailable(f"KILN_OFFLINE=1: {host} is not asked")
        creds = registry_credentials(host, options.env)
        client = RegistryClient(host, credentials=creds, ca_bundle=options.ca_bundle)
        return client.digest(repository, tag)

    def local(ref: str) -> tuple[str, ...] | None:
        try:
            image = docker_client(options.docker_host).images.get(ref)
        except (KilnError, docker.errors.DockerException) as exc:
            report.detail(f"    {ref}: not on the local Docker Engine ({type(exc).__name__})")
            return None
        return tuple(image.attrs.get("RepoDigests") or ())

    return lambda ref, where: resolve_base(
        ref, where=where, registry_digest=registry_digest, local=local
    )


def cmd_lock(args: argparse.Namespace) -> int:
    from kiln._debian.locking import fresh_os_lock  # noqa: PLC0415
    from kiln._lock.format import read_lock  # noqa: PLC0415
    from kiln._lock.inputs import check_fresh  # noqa: PLC0415
    from kiln._release.prepare import kfp_version  # noqa: PLC0415

    ws = common.workspace(args)
    known = {i.name: i for i in ws.locked}
    unknown = sorted(set(args.images) - set(known))
    if unknown:
        raise ConfigError(
            f"no image {', '.join(unknown)} under images/ (known: {', '.join(known) or 'none'})"
        )
    images = [known[n] for n in sorted(set(args.images))] or list(ws.locked)
    kfp = kfp_version()
    if args.sources and not args.check:
        args.usage_error("--sources goes with --check: `kiln lock --check --sources`")
    if args.check:
        stale = []
        if ws.on_os:
            try:
                os_lock = fresh_os_lock(ws)
            except ConfigError as exc:
                stale.append(str(exc))
            else:
                if args.sources:
                    _check_sources(args, ws, os_lock)
        for image in images:
            try:
                check_fresh(read_lock(image), ws, image, kfp)
            except ConfigError as exc:
                stale.append(str(exc))
        if stale:
            raise ConfigError("\n".join(stale))
        count = len(images) + (1 if ws.on_os else 0)
        data = {i.name: "fresh" for i in images} | ({"os": "fresh"} if ws.on_os else {})
        common.emit(args, data, f"{count} lock(s) up to date")
        return 0
    rows: dict[str, dict[str, Any]] = {}
    if ws.on_os:
        rows["os"] = _lock_os(args, ws, upgrade=args.upgrade_os)
    if args.upgrade_os and not args.images and not args.upgrade:
        # Moving the OS moves no wheel: only image locks that are stale are written
        # (which needs no upstream index when none is).
        images = [i for i in images if not _fresh(ws, i, kfp)]
    rows |= _relock(args, ws, images, upgrade=args.upgrade or ())
    lines = [f"{r['path']}: {'written' if r['written'] else 'unchanged'}" for r in rows.values()]
    lines += [f"  {line}" for line in rows.get("os", {}).get("changes", [])]
    common.emit(args, rows, "\n".join(lines))
    return 0


def _fresh(ws: Workspace, image: Image, kfp: str) -> bool:
    from kiln._lock.format import read_lock  # noqa: PLC0415
    from kiln._lock.inputs import check_fresh  # noqa: PLC0415

    try:
        check_fresh(read_lock(image), ws, image, kfp)
    except ConfigError:
        return False
    return True


def _check_sources(args: argparse.Namespace, ws: Workspace, lock: Any) -> None:
    """Every .deb ``lock`` pins is in kiln's cache or on a mirror, else ServiceUnavailable
    naming the packages gone and the fix."""
    from kiln._context import debian_cache  # noqa: PLC0415
    from kiln._debian.archive import Mirrors  # noqa: PLC0415
    from kiln._images.os_layers import unavailable  # noqa: PLC0415

    report, options = common.report_of(args), common.options_of(args)
    pins = [*lock.os.packages, *(p for e in lock.extras.values() for p in e.packages)]
    report.stage("os", f"OS lock: is each of its {len(pins)} packages still served?")
    mirrors = Mirrors(ws.os, ca_bundle=options.ca_bundle)
    gone = unavailable(pins, mirrors, debian_cache(ws))
    if gone:
        names = ", ".join(f"{p.name} {p.version}" for p in gone)
        raise ServiceUnavailable(
            f"{lock.path}: no mirror serves {names} any more, and kiln's cache lacks them "
            "(Debian drops superseded versions); a registry holding the OS layer still "
            "builds it (kiln release takes it from there), else move the lock: "
            "`kiln lock --upgrade-os`, then commit images/os.lock"
        )


def _lock_os(args: argparse.Namespace, ws: Workspace, *, upgrade: bool) -> dict[str, Any]:
    """Write images/os.lock when it is stale or ``upgrade``; its row, with every change."""
    from kiln._context import debian_cache, os_layers  # noqa: PLC0415
    from kiln._debian.archive import Indexes, Mirrors  # noqa: PLC0415
    from kiln._debian.lock import OS_LOCK, parse_os_lock, render  # noqa: PLC0415
    from kiln._debian.locking import changes, lock_os, moved_images, stale_reason  # noqa: PLC0415
    from kiln._util.cmd import reporting_runner  # noqa: PLC0415

    report, options = common.report_of(args), common.options_of(args)
    path = ws.root / OS_LOCK
    previous = None
    if path.is_file():
        try:
            previous = parse_os_lock(path, path.read_text(encoding="utf-8"))
        except ConfigError as exc:
            report.step(f"{path}: unreadable, written anew ({exc})")
    if previous is not None and not upgrade and stale_reason(previous, ws) is None:
        report.stage("os", f"OS lock {OS_LOCK}: up to date")
        return {"path": str(path), "written": False, "changes": [], "images": []}
    how = "moving every package to the newest version" if upgrade else "resolving"
    report.stage("os", f"OS lock {OS_LOCK}: {how} ({ws.os.suite}, {ws.os.architecture})")
    mirrors = Mirrors(ws.os, ca_bundle=options.ca_bundle)
    indexes = Indexes(ws.os, mirrors, reporting_runner(report), debian_cache(ws), log=report.detail)
    layers = os_layers(ws, options, report.detail)
    lock = lock_os(
        ws, indexes=indexes, layers=layers, previous=previous, upgrade=upgrade,
        log=report.detail,
    )  # fmt: skip
    text = render(lock)
    same = path.is_file() and path.read_text(encoding="utf-8") == text
    if not same:
        path.write_text(text, encoding="utf-8")
    moved = [c.line for c in changes(previous, lock)]
    for line in moved:
        report.detail(f"    {line}")
    images = moved_images(previous, lock, ws) if not same else []
    if images:
        report.step(
            f"the OS layers of {', '.join(images)} moved: a version of them already pushed "
            f"must be bumped before the next release (kiln bump NAME patch; kiln check says which)"
        )
    return {"path": str(path), "written": not same, "changes": moved, "images": images}


def _relock(
    args: argparse.Namespace, ws: Workspace, images: Sequence[Image], *, upgrade: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Write the lock of each of ``images``; name -> {path, written (False: unchanged)}."""
    import uv  # noqa: PLC0415

    from kiln._lock.format import BasePin, lock_path  # noqa: PLC0415
    from kiln._lock.inputs import OS_BASE  # noqa: PLC0415
    from kiln._lock.make import Uv, make_lock  # noqa: PLC0415
    from kiln._release.prepare import kfp_version  # noqa: PLC0415
    from kiln._util.cmd import reporting_runner  # noqa: PLC0415
    from kiln._wheels.sdist import SdistBuilder, sdist_cache_dir  # noqa: PLC0415
    from kiln._wheels.wheelhouse import PipDownload, SimplePages  # noqa: PLC0415

    report, options = common.report_of(args), common.options_of(args)
    runner = reporting_runner(report)
    tool = Uv(runner, uv.find_uv_bin(), ws.upstream_index, options.ca_bundle)
    sdists = SdistBuilder(
        PipDownload(runner, ca_bundle=options.ca_bundle), runner,
        cache_dir=sdist_cache_dir(ws.state_dir), index_url=ws.upstream_index, report=report,
    )  # fmt: skip
    pages, pin_base = (
        SimplePages(ws.upstream_index, ca_bundle=options.ca_bundle),
        base_pinner(report, options),
    )
    bases: dict[str, Any] = {}
    kfp = kfp_version()
    rows: dict[str, dict[str, Any]] = {}
    for image in images:
        if image.base is None:
            base = BasePin(OS_BASE, "os", "images/os.lock")
        else:
            if image.base not in bases:
                bases[image.base] = pin_base(image.base, ws.settings_of(image))
                report.stage("base", f"base {image.base}: {bases[image.base][1]}")
            base = bases[image.base][0]
        report.stage("lock", f"lock {image.name}: uv pip compile for Python {image.python} on "
                    f"{image.platform}")  # fmt: skip
        text = make_lock(
            ws, image, kfp_version=kfp, uv=tool, base=base, pages=pages,
            sdists=sdists, upgrade=upgrade,
        )  # fmt: skip
        path = lock_path(image)
        same = path.is_file() and path.read_text(encoding="utf-8") == text
        if not same:
            path.write_text(text, encoding="utf-8")
        rows[image.name] = {"path": str(path), "written": not same}
    return rows


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
