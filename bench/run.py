"""Run kiln's benchmark scenarios on generated monorepos and write the results.

    python -m bench.run [--preset small|scale] [--repeat N] [--scenarios 1 3 2 ...]
                        [--curve 10 50 200 500] [--out bench/results] [--workdir DIR]

Run it from kiln's repository root (``./noxw -s bench -- --preset scale``) with Docker
Engine running; nothing is pulled from a public registry (the repos build on kiln's OS
base, the Docker baselines on kiln's packages base). Each generated repo gets its own
local stack on free loopback ports, stopped at the end. Writes
``<out>/<date>.json`` and ``<out>/<date>.md`` (machine info, min / median / max per case,
each scenario's target and whether it was met). A scenario that fails is reported as
failed with its error; the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import scenarios
from bench.generate import PRESETS
from bench.harness import ROOT, Bench, BenchError, Outcome, bench, write_results

CURVE_PRESETS = {10: "n10", 50: "scale", 200: "n200", 500: "n500"}
MATRIX_PRESETS = {2: "tiny", 5: "small", **CURVE_PRESETS}


def _run_one(b: Bench, number: int) -> Outcome:
    start = time.perf_counter()
    print(f"bench: scenario {number} ...", file=sys.stderr, flush=True)
    try:
        outcome = scenarios.ALL[number](b)
    except Exception as exc:  # any failure is this scenario's: the others still run
        title = scenarios.ALL[number].__name__.replace("_", " ")
        text = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
        outcome = Outcome(number, title, "-", status="failed", note=text[-800:])
    took = time.perf_counter() - start
    print(f"bench: scenario {number}: {outcome.status} ({took:.0f} s)", file=sys.stderr)
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="runs per case")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        type=int,
        choices=sorted(scenarios.ALL),
        default=list(scenarios.SCENARIOS),
        metavar="S",
        help="scenario numbers, run in the order given (default: 1 3 2 6 4 5 7 8; 9 and 10 "
        "on request)",
    )
    parser.add_argument(
        "--curve",
        nargs="+",
        type=int,
        choices=sorted(CURVE_PRESETS),
        default=[10, 50],
        metavar="N",
        help="scenario 6's repo sizes (default: 10 50; 200 and 500 on request)",
    )
    parser.add_argument(
        "--matrix",
        type=int,
        choices=sorted(MATRIX_PRESETS),
        default=200,
        metavar="N",
        help="scenario 10's repo size (default: 200, issue 20's; 2: the harness's test)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--workdir", type=Path, help="keep the generated repos here")
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument(
        "--os-cache",
        type=Path,
        metavar="DIR",
        help="a kiln cache (.kiln/cache) holding this repository's OS .debs and layer: each "
        "repo starts with them, nothing is fetched (the harness's own test; the results say so)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    curve = [CURVE_PRESETS[n] for n in sorted(args.curve)]
    matrix = MATRIX_PRESETS[args.matrix]
    with bench(args.workdir, args.preset, args.repeat, curve, args.os_cache, matrix=matrix) as b:
        outcomes = [_run_one(b, n) for n in args.scenarios]
        setup = b.setup()
    json_path, md_path = write_results(
        args.out, date=args.date, preset=args.preset, repeat=args.repeat, outcomes=outcomes,
        setup=setup,
    )  # fmt: skip
    print(md_path.read_text())
    print(f"bench: wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
