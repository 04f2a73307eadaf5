"""kiln's command line. ``main`` exits; ``main_inner`` only raises.

A short pipeline: parse the arguments, compute ``Options`` from the environment
once, make the Reporter, run the command. Commands live by what they touch:
``release`` (build, publish, bake, components, release, check), ``workspace`` (new,
bump, lock), ``local`` (stack, run); each calls its flow in the library with a typed
context (``context``) and renders the result. ``parsers`` holds the arguments of the
release and local commands, whose modules are imported only when one of them runs.
Progress goes to stderr; ``--json`` puts the machine-readable result on stdout.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from kiln import __version__
from kiln._cli import parsers
from kiln._errors import (
    DISK_ERRNOS,
    EXIT_CODES,
    CommandFailed,
    KilnError,
    RunFailed,
    disk_fault,
)
from kiln._options import Options, environment_help
from kiln._report import Reporter

if TYPE_CHECKING:
    from sys import UnraisableHookArgs

__all__ = ["main", "main_inner"]

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
  kiln plan --local --jobs 2       the plan cut into 2 jobs of a CI matrix; publish nothing
  kiln run contrast_demo          run a pipeline in local Docker containers
  kiln new helper textstats       scaffold a helper (or a component, a pipeline): kiln new --help
  kiln bump imgproc patch         raise a version; dependants and images follow
  kiln lock --check               are the committed image locks up to date?
  kiln stack status               what the local index and registry are doing

output:
  progress goes to stderr, one line per stage and per pipeline step; everything
  else (commands, build steps, container logs) goes to .kiln/logs/COMMAND.log,
  whose end is shown when a command fails. -v shows it all, -q only errors,
  --timings the seconds per stage; under GitHub Actions stages fold into groups.

{environment}

exit codes:
  0 ok   2 usage   {codes}
""".format(
    environment=environment_help(),
    codes="   ".join(f"{code} {label}" for label, code in EXIT_CODES.items()),
)


def _common_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """The options every command takes, before the command (`kiln -v release`) or after
    it (`kiln release -v`). After it they default to ``argparse.SUPPRESS``, so a value
    given before the command is not reset by the command's own defaults."""

    def flag(*names: str, help: str) -> None:
        parser.add_argument(
            *names, action="store_true", default=False if default is None else default, help=help
        )

    parser.add_argument("--repo", metavar="PATH", default=default,
                        help="the monorepo (default: found from cwd)")  # fmt: skip
    flag("--json", help="machine-readable result on stdout")
    flag("-v", "--verbose", help="show commands, build steps, container logs")
    flag("-q", "--quiet", help="show only errors")
    flag("--timings", help="print the seconds per stage")


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, default=argparse.SUPPRESS)

    targets = argparse.ArgumentParser(add_help=False)
    targets.add_argument(
        "--local", action="store_true", help="use the embedded local stack (started if needed)"
    )
    targets.add_argument("--index", metavar="URL", help="package index base URL (not --local)")
    targets.add_argument("--registry", metavar="HOST", help="registry host[:port] (not --local)")

    top = argparse.ArgumentParser(
        prog="kiln",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"kiln {__version__}")
    _common_options(top)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers.release_parsers(sub, common, targets)
    parsers.workspace_parsers(sub, common)
    parsers.local_parsers(sub, common)
    return top


def main_inner(
    argv: Sequence[str] | None = None,
    report: Reporter | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    args = parser().parse_args(argv)
    args.options = Options.from_environment(env)
    args.report = report or Reporter()
    args.report.verbose, args.report.quiet = args.verbose, args.quiet
    args.report.timings, args.report.github_actions = args.timings, args.options.github_actions
    # A spinner for the running stage only where a person watches a terminal.
    args.report.live = sys.stderr.isatty() and not (
        args.verbose or args.quiet or args.options.github_actions
    )
    args.cleanup = []
    try:
        code: int = args.func(args)
        args.report.finish()
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


def _render(exc: KilnError, report: Reporter) -> int:
    """Print ``exc`` the one way kiln prints an error; its exit code."""
    report.finish()
    print(f"kiln: {exc.label}: {exc}{_failure_context(exc, report)}", file=sys.stderr)
    return exc.exit_code


class Terminated(BaseException):
    """SIGTERM, raised where kiln is (like KeyboardInterrupt for Ctrl-C), so the command
    it runs is killed with it (subprocess.run kills its child on any exception) and its
    cleanups run, instead of kiln dying at once and leaving pip or uv running."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def _unraisable(hook: Callable[[UnraisableHookArgs], object]) -> Callable[..., None]:
    """``hook``, except that a Terminated raised in a finalizer (Python swallows it there,
    and urllib3 closes its pools in weakref finalizers) ends kiln at once, as SIGTERM
    does by default, instead of being printed as a traceback and the SIGTERM lost.
    (Sent again to a Python handler, it would be raised inside this hook: a traceback.)"""

    def unraisable(args: UnraisableHookArgs) -> None:
        if args.exc_type is not Terminated:
            hook(args)
            return
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:  # not the main thread: no handler to take back
            os._exit(128 + signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    return unraisable


def _on_sigterm(handler: signal._HANDLER) -> signal._HANDLER:
    """Install ``handler`` for SIGTERM; the one it replaces (Python takes handlers in the
    main thread only: elsewhere, as when a test runs kiln in a thread, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> None:
    report = Reporter()
    hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(hook)
    previous: signal._HANDLER = None
    try:
        try:
            previous = _on_sigterm(_terminated)
            code = _run(argv, report)
        finally:
            # From here on (and while Python shuts down, running finalizers) SIGTERM
            # ends kiln at once: raised there, Terminated would be a traceback nobody
            # catches. Until then, wherever it lands (this line too), it is caught below.
            _on_sigterm(signal.SIG_DFL if previous is None else previous)
    except Terminated:
        print("kiln: terminated (SIGTERM); re-run the same command to finish", file=sys.stderr)
        code = 128 + signal.SIGTERM
    finally:
        sys.unraisablehook = hook
        report.close()
    sys.exit(code)


def _run(argv: Sequence[str] | None, report: Reporter) -> int:
    """The command's exit code: its errors rendered for a person (SIGTERM: see main)."""
    try:
        return main_inner(argv, report)
    except KilnError as exc:
        return _render(exc, report)
    except OSError as exc:
        # A full disk or a read-only path where kiln writes: the disk's fault, not the
        # input's, and no traceback (a flow that knows the path names it; else the error's).
        if exc.errno not in DISK_ERRNOS:
            raise
        return _render(disk_fault(exc), report)
    except KeyboardInterrupt:
        print("kiln: interrupted; re-run the same command to finish", file=sys.stderr)
        return 130
