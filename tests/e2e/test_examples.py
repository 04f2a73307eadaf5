"""The example helpers, images and pipelines end to end: each helper installs from the
private index alone (sibling pins included), and both example pipelines run in
kfp.local.DockerRunner on the pinned images and produce the expected artifacts."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from kiln._components.generate import _load_module
from tests.e2e.conftest import HELPERS, KILN_RUN, PROJECT
from tests.e2e.tools import Repo, pip_into, private_venv

pytestmark = pytest.mark.e2e

# Each helper, called in a fresh venv that has nothing but what the private index served.
SMOKE = {
    "imgproc": "import numpy as np, imgproc; "
    "print(imgproc.equalize_histogram(np.array([[10, 20], [30, 40]], np.uint8)).tolist())",
    "tabular": "import pandas as pd, tabular; "
    "print(tabular.impute(pd.DataFrame({'x': [1.0, None, 3.0]}))['x'].tolist())",
    "dataquality": "import pandas as pd, dataquality; "
    "print(dataquality.check(pd.DataFrame({'x': [1, None]}), "
    "{'columns': {'x': {'max_null_ratio': 0.0}}}).passed)",
    "viz": "import viz; print(viz.distribution_png([1.0, 2.0])[:4])",
}
SMOKE_OUTPUT = {
    "imgproc": "[[0, 85], [170, 255]]",
    "tabular": "[1.0, 2.0, 3.0]",
    "dataquality": "False",
    "viz": "b'\\x89PNG'",
}


@pytest.mark.parametrize("helper", sorted(HELPERS))
def test_each_helper_installs_from_the_private_index_alone(
    helper: str, repo: Repo, released: dict[str, Any], tmp_path: Path
) -> None:
    python = private_venv(tmp_path / "venv", repo.index_url, f"acme-{helper}=={HELPERS[helper]}")
    out = subprocess.run(
        [python, "-c", SMOKE[helper]], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == SMOKE_OUTPUT[helper]
    if helper == "viz":  # the sibling came in at exactly the pinned version
        freeze = pip_into(python, "freeze").stdout.split()
        assert f"acme-dataquality=={HELPERS['dataquality']}" in freeze


def _component_function(module: str, name: str) -> Any:
    """A component's Python function, to compute on the host what the pod should."""
    path = PROJECT / "pipelines" / "components" / f"{module}.py"
    return getattr(_load_module(path, "host"), name)


def _gaps_in_sample(tmp_path: Path, **args: Any) -> int:
    out = SimpleNamespace(path=str(tmp_path / "sample.csv"), metadata={})
    _component_function("tables", "make_sample_table")(**args, table=out)
    with Path(out.path).open(newline="") as handle:
        return sum(value == "" for row in csv.DictReader(handle) for value in row.values())


def _png_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()
        width, height = image.size
        return int(width), int(height)


@KILN_RUN
def test_table_quality_pipeline(repo: Repo, released: dict[str, Any], tmp_path: Path) -> None:
    args = {"seed": 5, "rows": 120, "missing_ratio": 0.2}
    outputs = repo.kiln_json("run", "table_quality", *[f"--arg={k}={v}" for k, v in args.items()])
    assert outputs["passed_before"] is False  # the sample has gaps
    assert outputs["passed_after"] is True  # imputation filled every one of them
    assert outputs["filled"] == _gaps_in_sample(tmp_path, **args) > 0

    summary = Path(outputs["summary"]["path"]).read_text()
    before, after = summary.split("## After imputation")
    assert "**FAILED:" in before
    assert "are null" in before
    assert "**PASSED:" in after
    page = Path(outputs["page"]["path"]).read_text()
    assert page.count("<!DOCTYPE html>") == 1
    assert page.count("<img ") == 2
    assert page.count('class="fail"') > 0
    width, height = _png_size(outputs["missing_map"]["path"])
    assert (width, height) > (100, 100)


@KILN_RUN
def test_contrast_compare_pipeline(repo: Repo, released: dict[str, Any]) -> None:
    outputs = repo.kiln_json("run", "contrast_compare", "--arg=count=2", "--arg=method=equalize")
    assert outputs["pairs"] == 2
    # Images squeezed into 40 grey levels spread over 0..255: the spread grows several-fold.
    assert outputs["std_gain"] > 3.0
    assert _png_size(outputs["first_pair"]["path"]) == (800, 720)
    page = Path(outputs["page"]["path"]).read_text()
    assert page.count("<img ") == 2
    assert page.count("<h1>Contrast: before / after</h1>") == 1
    assert "<h2>" not in page  # the title is not repeated
    assert Path(outputs["page"]["path"]).suffix == ".html"
