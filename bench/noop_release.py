"""Time a no-op release on the real local stack, with the wheel cache and without it.

    python -m bench.noop_release [--repo PATH] [--runs N] [--measure release dry-run build]

Run it from kiln's repository root. It starts the repo's local stack when it is not
running (and stops it again at the end), runs a warm-up `kiln release --local` so
that everything is published, then runs each measured command N times with the
wheel cache on and with ``KILN_NO_WHEEL_CACHE=1`` (the baseline), interleaved so
that a busy machine slows both alike. `kiln build` is also timed cold (the cache
folder emptied before each run). Each `release` must be a no-op (nothing uploaded,
nothing pushed), or the benchmark stops. The environment is passed through to kiln.
The images build on kiln's OS base (``images/os.lock``): the warm-up release builds
(or finds) the OS layer, and the timed runs take it from kiln's cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln._wheels.build import NO_CACHE_ENV, wheel_cache_dir
from kiln._workspace.discovery import discover

ROOT = Path(__file__).resolve().parents[1]
KILN = (sys.executable, "-m", "kiln")  # the kiln this Python imports
COMMANDS = {
    "release": ("release", "--local", "--json"),
    "dry-run": ("release", "--local", "--dry-run", "--json"),
    "build": ("build", "--json"),
    "check": ("check", "--local", "--json"),
}
BASELINE = "off"


@dataclass(frozen=True)
class Timing:
    command: str  # a key of COMMANDS
    cache: str  # "on" (warm), "off" (KILN_NO_WHEEL_CACHE=1) or "cold" (emptied first)
    seconds: tuple[float, ...]

    @property
    def label(self) -> str:
        return "kiln " + " ".join(a for a in COMMANDS[self.command] if a != "--json")

    def summary(self) -> dict[str, float]:
        s = self.seconds
        return {"min": min(s), "median": statistics.median(s), "max": max(s)}


class BenchError(Exception):
    pass


def _env(cache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != NO_CACHE_ENV}
    if cache == "off":
        env[NO_CACHE_ENV] = "1"
    return env


def _kiln(
    repo: Path, args: Sequence[str], env: Mapping[str, str], kiln: Sequence[str] = KILN
) -> tuple[float, str]:
    """Run kiln on ``repo``; return the wall-clock seconds and its stdout."""
    argv = [*kiln, *args[:1], "--repo", str(repo), *args[1:]]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=dict(env), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.rstrip().splitlines()[-15:])
        raise BenchError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
    return seconds, proc.stdout


def _check_noop(stdout: str) -> None:
    result = json.loads(stdout)
    if result["uploaded"] or result["pushed"]:
        raise BenchError(
            f"not a no-op release: uploaded {result['uploaded']}, pushed {result['pushed']}; "
            "is the repo changing, or someone else releasing to its stack?"
        )


def _stack_running(repo: Path) -> bool:
    _seconds, out = _kiln(repo, ("stack", "status", "--json"), os.environ)
    return any(s["running"] for s in json.loads(out))


def measure(
    repo: Path, commands: Sequence[str], runs: int, cache_dir: Path, kiln: Sequence[str] = KILN
) -> tuple[Timing, ...]:
    modes = {c: ("on", "off", "cold") if c == "build" else ("on", "off") for c in commands}
    seconds: dict[tuple[str, str], list[float]] = {(c, m): [] for c in commands for m in modes[c]}
    for _ in range(runs):
        for command in commands:
            for cache in modes[command]:
                if cache == "cold":
                    shutil.rmtree(cache_dir, ignore_errors=True)
                took, out = _kiln(repo, COMMANDS[command], _env(cache), kiln)
                if command == "release":
                    _check_noop(out)
                seconds[command, cache].append(took)
    return tuple(Timing(c, m, tuple(s)) for (c, m), s in seconds.items())


def report(timings: Sequence[Timing]) -> str:
    lines = [f"{'command':34} {'wheel cache':12} {'min':>7} {'median':>7} {'max':>7}"]
    for t in timings:
        s = t.summary()
        lines.append(
            f"{t.label:34} {t.cache:12} {s['min']:7.2f} {s['median']:7.2f} {s['max']:7.2f}"
        )
    lines.append("")
    by_key = {(t.command, t.cache): t.summary()["median"] for t in timings}
    for (command, cache), median in by_key.items():
        if cache != "on":
            ratio = median / by_key[command, "on"]
            lines.append(f"{command}: {cache}/on = {ratio:.2f}x (medians)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.noop_release", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--repo", type=Path, default=ROOT, help="the monorepo (default: kiln's)")
    parser.add_argument("--runs", type=int, default=5, metavar="N", help="runs per case")
    parser.add_argument(
        "--measure",
        nargs="+",
        choices=sorted(COMMANDS),
        default=["release", "dry-run"],
        help="what to time (default: release dry-run); use dry-run and build only on a repo "
        "whose images you do not want built",
    )
    parser.add_argument(
        "--kiln",
        type=shlex.split,
        default=KILN,
        metavar="CMD",
        help=f"how to run kiln (default: {shlex.join(KILN)})",
    )
    parser.add_argument("--keep-stack", action="store_true", help="leave the local stack up")
    parser.add_argument("--json", action="store_true", help="print the timings as JSON")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    ws = discover(repo)
    cache_dir = wheel_cache_dir(ws.state_dir)
    if cache_dir is None:
        parser.error(f"unset {NO_CACHE_ENV}: the benchmark sets it itself for the baseline")
    print(
        f"{repo}: {len(ws.helpers)} helpers, {len(ws.images)} images, "
        f"{len(ws.components)} components; {args.runs} runs per case",
        file=sys.stderr,
    )
    uses_stack = bool({"release", "dry-run", "check"} & set(args.measure))
    was_running = uses_stack and _stack_running(repo)
    try:
        if uses_stack:
            _kiln(repo, ("stack", "up"), os.environ)
            warmup = COMMANDS["release" if "release" in args.measure else "dry-run"]
            took, _out = _kiln(repo, warmup, _env("on"), args.kiln)
            print(f"warm-up: kiln {' '.join(warmup[:-1])}: {took:.2f} s", file=sys.stderr)
        if "build" in args.measure:
            _kiln(repo, COMMANDS["build"], _env("on"), args.kiln)
        timings = measure(repo, args.measure, args.runs, cache_dir, args.kiln)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if uses_stack and not was_running and not args.keep_stack:
            _kiln(repo, ("stack", "down"), os.environ)
    if args.json:
        rows = [{"command": t.label, "cache": t.cache, **t.summary()} for t in timings]
        print(json.dumps(rows, indent=2))
    else:
        print(report(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
