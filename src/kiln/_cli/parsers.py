"""The arguments of the release commands and the local ones; their functions are imported
only when one of them runs (``deferred``).

The flows behind the commands import about 0.4 s of libraries (docker, pypi_simple and
bs4, cyclonedx, the Debian and OCI code), which `kiln --help`, `kiln COMMAND --help` and
a usage error need not pay: this is the one place the CLI imports late.
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
    """build, publish, bake, components, release, check: their functions in _cli/release.py."""
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
        "change a published version. Writes dist/manifest.json.",
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
    p.set_defaults(func=deferred("release", "cmd_release"))

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
