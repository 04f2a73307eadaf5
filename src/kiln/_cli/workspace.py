"""Commands that change the repository: new, bump, lock."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from kiln._cli import common
from kiln._errors import ConfigError, KilnError, ServiceUnavailable
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
    from kiln._release.stages import kfp_version  # noqa: PLC0415
    from kiln._wheels.lock import check_fresh, lock_path, read_lock  # noqa: PLC0415
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
        if not lock_path(image).is_file():
            continue  # never locked: `kiln check` and the release say so
        try:
            check_fresh(read_lock(image), after, image, kfp_version())
        except ConfigError:
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


def base_pinner(report: Reporter, docker_host: str, *, offline: bool = False) -> Any:
    """``ref -> (BasePin, how)``: the registry's manifest digest when it answers, else the
    local engine's repo digest or image ID (no engine: unpinned). ``offline``: no registry
    but a loopback one is asked."""
    import docker.errors  # noqa: PLC0415

    from kiln._images.base import resolve_base  # noqa: PLC0415
    from kiln._images.docker import docker_client  # noqa: PLC0415
    from kiln._servers.registry import RegistryClient  # noqa: PLC0415

    def registry_digest(host: str, repository: str, tag: str) -> str | None:
        loopback = host.split(":", maxsplit=1)[0] in ("127.0.0.1", "localhost")
        if offline and not loopback:
            raise ServiceUnavailable(f"KILN_OFFLINE=1: {host} is not asked")
        return RegistryClient(host, scheme="http" if loopback else "https").digest(repository, tag)

    def local(ref: str) -> tuple[tuple[str, ...], str] | None:
        try:
            image = docker_client(docker_host).images.get(ref)
        except (KilnError, docker.errors.DockerException) as exc:
            report.detail(f"    {ref}: not on the local Docker Engine ({type(exc).__name__})")
            return None
        return tuple(image.attrs.get("RepoDigests") or ()), str(image.id)

    return lambda ref: resolve_base(ref, registry_digest=registry_digest, local=local)


def cmd_lock(args: argparse.Namespace) -> int:
    from kiln._release.stages import kfp_version  # noqa: PLC0415
    from kiln._wheels.lock import check_fresh, read_lock  # noqa: PLC0415

    ws = common.workspace(args)
    known = {i.name: i for i in ws.locked}
    unknown = sorted(set(args.images) - set(known))
    if unknown:
        raise ConfigError(
            f"no image {', '.join(unknown)} under images/ (known: {', '.join(known) or 'none'})"
        )
    images = [known[n] for n in sorted(set(args.images))] or list(ws.locked)
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
        common.emit(args, {i.name: "fresh" for i in images}, f"{len(images)} lock(s) up to date")
        return 0
    rows = _relock(args, ws, images, upgrade=args.upgrade or ())
    common.emit(args, rows, "\n".join(
        f"{r['path']}: {'written' if r['written'] else 'unchanged'}" for r in rows.values()
    ))  # fmt: skip
    return 0


def _relock(
    args: argparse.Namespace, ws: Workspace, images: Sequence[Image], *, upgrade: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Write the lock of each of ``images``; name -> {path, written (False: unchanged)}."""
    import uv  # noqa: PLC0415

    from kiln._release.stages import kfp_version  # noqa: PLC0415
    from kiln._util.cmd import reporting_runner  # noqa: PLC0415
    from kiln._wheels.lock import Uv, lock_path, make_lock  # noqa: PLC0415
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
        base_pinner(report, options.docker_host, offline=options.offline),
    )
    bases: dict[str, Any] = {}
    kfp = kfp_version()
    rows: dict[str, dict[str, Any]] = {}
    for image in images:
        if image.base not in bases:
            bases[image.base] = pin_base(image.base)
            report.stage("base", f"base {image.base}: {bases[image.base][1]}")
        base = bases[image.base][0]
        if image.os_dockerfile is not None:
            base = _os_base(args, ws, image, base)
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


def _os_base(args: argparse.Namespace, ws: Workspace, image: Image, upstream: Any) -> Any:
    """The pin of ``image``'s OS base (its Dockerfile built on ``upstream``): kept from
    its lock when built from the same inputs, else found in or pushed to the registry."""
    from kiln._images.os_base import built_from, lock_os_base, os_base_ref  # noqa: PLC0415
    from kiln._wheels.lock import read_lock  # noqa: PLC0415

    report, options = common.report_of(args), common.options_of(args)
    source = built_from(image, upstream, options.base_image)
    try:
        old = read_lock(image).base
    except ConfigError:
        old = None
    if old is not None and old.os_from == source and old.kind == "digest":
        host = old.ref.split("/", 1)[0]
        same = os_base_ref(image, registry=host, org=ws.org, built_from=source)
        target = args.registry or (ws.stack.registry if args.local else None)
        if same == old.ref and target in (host, None):
            report.stage("base", f"OS base {image.name}: unchanged ({old.ref})")
            return old
    reg, credentials = common.target_registry(args, ws)

    def engine() -> Any:
        from kiln._images.docker import OsBaseBuilder, docker_client  # noqa: PLC0415

        client = docker_client(options.docker_host)
        return OsBaseBuilder(client, log=report.detail, credentials=credentials)

    pin, how = lock_os_base(
        image, org=ws.org, upstream=upstream, override=options.base_image, registry=reg,
        engine=engine, work=ws.state_dir / "build" / "os", log=report.detail,
    )  # fmt: skip
    report.stage("base", f"OS base {image.name}: {how}")
    return pin


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
        help="hash-lock each image's third-party wheels and base (images/<i>/requirements.lock)",
        description="Resolve each image's third-party closure (its helpers' dependencies and\n"
        "image.toml `requirements`) with `uv pip compile --generate-hashes` for the image's\n"
        "Python and platform, add kfp without its dependencies (as KFP's runtime installs\n"
        "it), pin the base image by digest, and write images/<i>/requirements.lock. Commit\n"
        "it: a release installs exactly that file. Versions of an existing lock are kept.\n"
        "An image with a Dockerfile (OS packages) gets an OS base: Docker builds it once,\n"
        "kiln pushes it (--local or --registry) and the lock pins its digest.",
        epilog="""\
examples:
  kiln lock                      lock every image (keeps locked versions that still fit)
  kiln lock base --upgrade       re-resolve base to the newest versions
  kiln lock base --upgrade numpy move numpy only
  kiln lock --check              exit 3 naming each lock that image.toml, a helper or kfp
                                 has made stale (CI); writes nothing
  kiln lock gpu --local          images/gpu/Dockerfile: Docker builds its OS base (apt
                                 packages) on the upstream base, kiln pushes it to the
                                 local stack's registry and pins its digest
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
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--local",
        action="store_true",
        help="an image with a Dockerfile: push its OS base to the local stack's registry",
    )
    where.add_argument(
        "--registry",
        metavar="HOST",
        help="an image with a Dockerfile: push its OS base to this registry (host[:port])",
    )
    p.add_argument(
        "--base-image",
        metavar="REF",
        help="build OS bases FROM this image instead of the upstream base (or KILN_BASE_IMAGE)",
    )
    p.set_defaults(func=cmd_lock)
