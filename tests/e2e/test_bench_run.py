"""The benchmark harness runs on the `small` preset and writes its JSON and Markdown.

Benchmarks are not tests: this only checks that the harness works, with one repetition
and two scenarios that need no stack and no image build (3: kiln's wheel stage against
`python -m build`, which gets hatchling from the package registry; 7: the dev loop,
"not available" until `kiln release --dev` exists). `nox -s bench` runs them all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_the_harness_writes_results_on_the_small_preset(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench.run", "--preset", "small", "--repeat", "1"]
    argv += ["--scenarios", "3", "7", "--out", str(tmp_path / "results")]
    argv += ["--workdir", str(tmp_path / "work"), "--date", "2000-01-02"]
    proc = subprocess.run(argv, cwd=PROJECT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]

    result = json.loads((tmp_path / "results" / "2000-01-02.json").read_text())
    assert (result["preset"], result["repeat"]) == ("small", 1)
    assert result["shape"] == "N=5, M=2, K=10"
    machine = result["machine"]
    assert set(machine) >= {"cores", "memory_gb", "python", "docker", "kiln", "kfp"}
    assert machine["cores"] >= 1
    assert machine["kfp"] == "2.17.3"
    wheels, dev = result["scenarios"]
    assert wheels["number"] == 3
    assert wheels["status"] in ("met", "not met")
    assert [r["label"] for r in wheels["rows"]] == [
        "kiln build, wheel cache emptied (5 helpers)",
        "python -m build --wheel (isolated) per helper",
    ]
    for row in wheels["rows"]:
        assert len(row["seconds"]) == 1
        assert row["min"] == row["median"] == row["max"] > 0
    # kiln's wheels are the bytes `python -m build` writes with kiln's SOURCE_DATE_EPOCH.
    assert wheels["figures"]["wheels"] == wheels["figures"]["byte-identical"] == 5
    assert dev["number"] == 7
    assert dev["status"] in ("not available", "measured")

    markdown = (tmp_path / "results" / "2000-01-02.md").read_text()
    assert markdown.startswith("# kiln benchmarks, 2000-01-02\n")
    assert "| 3 | wheel builds (cold) vs python -m build | kiln build" in markdown
    assert f"| 3 | {wheels['target']} | **{wheels['status']}** |" in markdown
    assert f"| 7 | {dev['target']} | **{dev['status']}** |" in markdown
    assert proc.stdout == markdown + "\n"
