"""The arguments of the release commands, the workspace ones and the local ones; their
functions are imported only when one of them runs (``deferred``).

The flows behind the commands import about 0.4 s of modules (requests, packaging, yaml,
kiln's release, OCI and Debian code), which `kiln --help`, `kiln COMMAND --help` and a
usage error need not pay: this is the one place the CLI imports late
(``release.cmd_release`` hands its rarer modes to ``release_modes`` through it too). The
libraries only some runs use (docker, cyclonedx, python-debian, pypi_simple, kfp) are
imported by the functions that use them, each saying so.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

Command = Callable[[argparse.Namespace], int]


def deferred(module: str, name: str) -> Command:
    """The command function ``name`` of ``kiln._cli.<module>``, imported when it runs."""

    def command(args: argparse.Namespace) -> int:
        function: Command = getattr(importlib.import_module(f"kiln._cli.{module}"), name)
        return function(args)

    return command


def release_parsers(
    sub: Any, common_args: argparse.ArgumentParser, targets: argparse.ArgumentParser
) -> None:
    """build, publish, bake, components, release, plan, check: their functions in
    _cli/release.py (plan, and release's other modes, in _cli/release_modes.py)."""
    p = sub.add_parser("build", parents=[common_args], help="build helper wheels into dist/wheels")
    p.set_defaults(func=deferred("release", "cmd_build"))

    p = sub.add_parser(
        "publish",
        parents=[common_args, targets],
        help="build helper wheels and upload the ones the index does not have",
    )
    p.set_defaults(func=deferred("release", "cmd_publish"))

    p = sub.add_parser(
        "bake",
        parents=[common_args, targets],
        help="publish, then build images offline from their wheelhouse and push them",
    )
    p.set_defaults(func=deferred("release", "cmd_bake"))

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
    p.set_defaults(func=deferred("release", "cmd_components"))

    p = sub.add_parser(
        "release",
        parents=[common_args, targets],
        help="build, publish, bake, push and generate pinned components",
        description="Run every stage; skip what is already published, refuse what would "
        "change a published version. Writes dist/manifest.json. With --job J --plan FILE: "
        "only job J's share of `kiln plan --jobs K`'s output (a CI matrix; docs/releasing.md); "
        "with --finalize --plan FILE: the matrix's last step, once every job has run.",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, change nothing (with --tag or --dev: after every check that "
        "release makes, publishing nothing)",
    )
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
    p.add_argument(
        "--job",
        type=job_number,
        metavar="J",
        help="publish job J's share of a plan (`kiln plan --jobs K --json`, given with "
        "--plan) and nothing else: its wheels, then its images, each checked against the "
        "plan's digest first (exit 11, nothing published, on a difference); no manifest",
    )
    p.add_argument(
        "--finalize",
        action="store_true",
        help="the last job of a matrix (with --plan): check every wheel and image of the plan "
        "is published at its sha256/digest (exit 12 naming each missing one and the job to "
        "re-run; exit 11 for other bytes), then write what a one-machine release writes: "
        "dist/manifest.json, the YAMLs, SBOMs, and with --tag the bundle and dist/release/",
    )
    p.add_argument(
        "--plan", metavar="FILE", help="with --job or --finalize: the plan job's output (--json)"
    )
    p.set_defaults(func=deferred("release", "cmd_release"), usage_error=p.error)

    _add_plan_parser(sub, common_args, targets)

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
    p.set_defaults(func=deferred("release", "cmd_check"))


def positive(text: str) -> int:
    """An argument that counts something: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return value


def job_number(text: str) -> int:
    """A job's number in a plan: 0, 1, ... (the matrix's index)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a job number (0, 1, ...), not {text!r}")
    return int(text)


def _add_plan_parser(
    sub: Any, common_args: argparse.ArgumentParser, targets: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "plan",
        parents=[common_args, targets],
        help="the release plan cut into K balanced jobs, for a CI matrix",
        description="Plan the release as `kiln release --dry-run` does (with --tag or --dev:\n"
        "after every check that release makes), then cut it into K jobs. An image and\n"
        "everything it needs stay in one job; images are dealt out heaviest first, each\n"
        "to the job with the least work, the cost being each platform's wheel bytes\n"
        "(MiB) plus 16 per platform built, and 1 for an image already pushed. Each job\n"
        "lists its images with the digest kiln computed for each (an image of several\n"
        "platforms: its index's, and each platform's), the wheels it publishes and the\n"
        "ones it only reads. Every wheel is published by exactly one job: the first job\n"
        "whose images need it, or (no image needs it: packages mode's) the least loaded\n"
        "job. K above the number of images leaves the last jobs empty: they publish\n"
        "nothing. The same repository and servers give byte-identical JSON. Nothing is\n"
        "published and nothing written in dist/; a local stack this had to start is\n"
        "stopped again. Exit codes as the release's dry run (4, 8: it refuses).",
        epilog="""\
examples:
  kiln plan --local --jobs 2                       a table: each job's cost, images, wheels
  kiln plan --tag v1.4.0 --index URL --registry HOST --jobs 4 --json >plan.json   (CI)
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--jobs",
        type=positive,
        default=1,
        metavar="K",
        help="how many jobs to cut the release into (default 1: the whole release)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--tag",
        metavar="vX.Y.Z",
        help="plan the tagged commit's release (every check of `kiln release --tag`)",
    )
    which.add_argument(
        "--dev", action="store_true", help="plan the dev release (`kiln release --dev`)"
    )
    p.set_defaults(func=deferred("release_modes", "cmd_plan"))


def workspace_parsers(sub: Any, common_args: argparse.ArgumentParser) -> None:
    """new, bump, lock: their functions in _cli/workspace.py."""
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
    p.set_defaults(func=deferred("workspace", "cmd_new"), usage_error=p.error)

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
    p.set_defaults(func=deferred("workspace", "cmd_bump"))
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
    p.set_defaults(func=deferred("workspace", "cmd_lock"), usage_error=p.error)


def local_parsers(sub: Any, common_args: argparse.ArgumentParser) -> None:
    """stack, run: their functions in _cli/local.py."""
    p = sub.add_parser("stack", parents=[common_args], help="start/stop/inspect the local stack")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=deferred("local", "cmd_stack"))

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
    p.set_defaults(func=deferred("local", "cmd_run"))
