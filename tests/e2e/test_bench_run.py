"""The benchmark harness runs on the `small` preset and writes its JSON and Markdown.

Benchmarks are not tests: this only checks that the harness works, with one repetition
and two scenarios: 3 (kiln's wheel stage against `python -m build`, which gets hatchling
from the package registry; no stack) and 7 (the dev loop: the generated repo locked,
released cold on its own stack on kiln's OS base, its .debs and OS layer seeded from the
run's (``--os-cache``), then `kiln release --dev` and `kiln run --dev`). `./noxw -s bench`
runs them all, fetching the .debs and building the OS layer as a user's run would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest

from kiln._debian.lock import read_os_lock
from tests.e2e.conftest import OsPins

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_the_harness_writes_results_on_the_small_preset(tmp_path: Path, os_pins: OsPins) -> None:
    argv = [sys.executable, "-m", "bench.run", "--preset", "small", "--repeat", "1"]
    argv += ["--scenarios", "3", "7", "--out", str(tmp_path / "results")]
    argv += ["--workdir", str(tmp_path / "work"), "--date", "2000-01-02"]
    if os_pins.fetchable:  # the run's .debs and OS layer: the harness fetches nothing
        argv += ["--os-cache", str(os_pins.cache)]
    proc = subprocess.run(argv, cwd=PROJECT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]

    result = json.loads((tmp_path / "results" / "2000-01-02.json").read_text())
    assert (result["preset"], result["repeat"]) == ("small", 1)
    assert result["shape"] == "N=5, M=2, K=10"
    machine = result["machine"]
    assert set(machine) >= {"cores", "memory_gb", "python", "docker", "kiln", "kfp"}
    assert machine["cores"] >= 1
    assert machine["kfp"] == dist_version("kfp")
    # Built on kiln's OS base from this repository's lock, only the .debs seeded.
    setup = result["setup"]
    assert setup["os_base"].startswith("debian bookworm "), setup
    assert f"{len(read_os_lock(PROJECT).os.packages)} packages" in setup["os_base"]
    if os_pins.fetchable:
        assert setup["os_seed"] == f".debs and the OS layer from {os_pins.cache}"
    else:
        assert setup["os_seed"].startswith(".debs only")
    assert setup["docker_base"] == "not used"  # neither scenario builds with Docker
    wheels, dev = result["scenarios"]
    assert wheels["number"] == 3
    # The status follows the figures: >= 5x and every wheel byte-identical, or not met.
    figures = wheels["figures"]
    reached = figures["speed-up"] >= 5 and figures["byte-identical"] == figures["wheels"] == 5
    assert wheels["status"] == ("met" if reached else "not met"), wheels
    assert [r["label"] for r in wheels["rows"]] == [
        "kiln build, wheel cache emptied (5 helpers)",
        "python -m build --wheel (isolated) per helper",
    ]
    for row in wheels["rows"]:
        assert len(row["seconds"]) == 1
        assert row["min"] == row["median"] == row["max"] > 0
    # kiln's wheels are the bytes `python -m build` writes with kiln's SOURCE_DATE_EPOCH.
    assert wheels["figures"]["wheels"] == wheels["figures"]["byte-identical"] == 5
    # `kiln release --dev` exists: the loop runs (a failure would be "failed").
    assert (dev["number"], dev["status"]) == (7, "measured"), dev
    [loop] = dev["rows"]
    assert loop["label"].startswith("edit h0"), loop
    assert loop["label"].endswith(", release --dev --local, run p_img00")
    assert len(loop["seconds"]) == 1
    assert loop["seconds"][0] > 0

    markdown = (tmp_path / "results" / "2000-01-02.md").read_text()
    assert markdown.startswith("# kiln benchmarks, 2000-01-02\n")
    assert f"Built on: os base: {setup['os_base']}; " in markdown
    assert "| 3 | wheel builds (cold) vs python -m build | kiln build" in markdown
    assert f"| 3 | {wheels['target']} | **{wheels['status']}** |" in markdown
    assert f"| 7 | {dev['target']} | **{dev['status']}** |" in markdown
    assert proc.stdout == markdown + "\n"


def test_the_matrix_scenario_runs_at_a_tiny_n(tmp_path: Path, os_pins: OsPins) -> None:
    """Scenario 10 on the `tiny` preset (2 helpers, 1 image), one repetition: one cold
    release against plan + 4 jobs at once + finalize, each in a fresh clone on a fresh
    stack; the rows, the ratio and the verdict it follows, the CPU count."""
    argv = [sys.executable, "-m", "bench.run", "--preset", "tiny", "--repeat", "1"]
    argv += ["--scenarios", "10", "--matrix", "2", "--out", str(tmp_path / "results")]
    argv += ["--workdir", str(tmp_path / "work"), "--date", "2000-01-03"]
    if os_pins.fetchable:
        argv += ["--os-cache", str(os_pins.cache)]
    proc = subprocess.run(argv, cwd=PROJECT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]

    result = json.loads((tmp_path / "results" / "2000-01-03.json").read_text())
    assert result["shape"] == "N=2, M=1, K=2"
    (matrix,) = result["scenarios"]
    assert matrix["number"] == 10
    assert matrix["status"] in ("met", "not met"), matrix  # it ran: a failure is "failed"
    rows = {r["label"]: r for r in matrix["rows"]}
    assert list(rows) == [
        "N=2: (a) one process: kiln release, cold",
        "N=2: (b) kiln plan --jobs 4",
        "N=2: (b) 4 x kiln release --job J at once (the slowest)",
        *(f"N=2: (b)   job {j}" for j in range(4)),
        "N=2: (b) kiln release --finalize",
        "N=2: (b) plan + jobs + finalize",
    ]
    assert all(len(r["seconds"]) == 1 and r["median"] > 0 for r in rows.values())
    for phase in ("(a) one process: kiln release, cold", "(b) kiln plan --jobs 4"):
        assert len(rows[f"N=2: {phase}"]["load_1min"]) == 1  # each phase's own load
    jobs = rows["N=2: (b) 4 x kiln release --job J at once (the slowest)"]["median"]
    assert jobs >= max(rows[f"N=2: (b)   job {j}"]["median"] for j in range(4))  # all at once
    parts = ("kiln plan --jobs 4", "4 x kiln release --job J at once (the slowest)")
    total = sum(rows[f"N=2: (b) {p}"]["median"] for p in (*parts, "kiln release --finalize"))
    assert rows["N=2: (b) plan + jobs + finalize"]["median"] == pytest.approx(total)
    one = rows["N=2: (a) one process: kiln release, cold"]["median"]
    figures = matrix["figures"]
    assert figures["(b) / (a)"] == round(total / one, 2)
    assert matrix["status"] == ("met" if total / one <= 0.4 else "not met")
    assert figures["cpu_count"] == result["machine"]["cores"]
    assert (figures["images"], figures["jobs with images"]) == (1, 1)
    assert not (tmp_path / "work" / "tiny-matrix").exists()  # every clone removed
