"""What a newcomer meets, on real servers: short output, openable artifacts, dry runs
that change nothing, an altered index told apart from a source change, and a stale OS
lock named with its fix before anything is built."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import HELPERS, KILN_RUN, PROJECT, patch
from tests.e2e.tools import PRIVATE_PIP_ENV, Repo, by

pytestmark = pytest.mark.e2e


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _index_sha(repo: Repo, project: str, filename: str) -> str | None:
    page = requests.get(f"{repo.index_url}/simple/{project}/", timeout=10).text
    for line in page.splitlines():
        if f">{filename}<" in line and "#sha256=" in line:
            return line.split("#sha256=")[1].split('"')[0]
    return None


@KILN_RUN
def test_run_prints_a_line_per_task_and_openable_artifacts(
    repo: Repo, released: dict[str, Any]
) -> None:
    proc = repo.kiln("run", "contrast_compare")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr + proc.stdout
    assert proc.stderr.splitlines() == [
        "==> run contrast_compare with kfp.local.DockerRunner (network host)",
        "    make-sample-images: ok",
        "    enhance-contrast: ok",
        "    compare-images: ok",
    ]
    outputs = dict(line.split(" = ", 1) for line in proc.stdout.splitlines())
    page, kind = outputs["page"].split("  ")
    assert (kind, Path(page).suffix) == ("(HTML)", ".html")
    assert Path(page).read_text().lstrip().lower().startswith("<!doctype html>")
    png = Path(outputs["first_pair"].split("  ")[0])
    assert png.suffix == ".png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (repo.root / ".kiln" / "logs" / "run.log").read_text()
    assert "Executing task 'compare-images'" in log  # kfp.local's own logs are kept
    assert "have no effect in the current local runner" not in proc.stderr


@KILN_RUN
def test_a_failed_run_shows_the_tasks_error_without_escapes(
    repo: Repo, released: dict[str, Any]
) -> None:
    proc = repo.kiln("run", "contrast_compare", "--arg", "method=bogus")
    assert proc.returncode == 7
    assert "\x1b[" not in proc.stderr
    assert "kiln: run failed: pipeline contrast_compare" in proc.stderr
    assert "ValueError: method must be one of" in proc.stderr  # from the container's log
    assert f"full log: {repo.root / '.kiln' / 'logs' / 'run.log'}" in proc.stderr


def test_dry_run_leaves_the_machine_as_it_found_it(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    assert scratch.kiln("stack", "down").returncode == 0
    dist, index = _tree(scratch.root / "dist"), _tree(scratch.root / ".kiln" / "stack" / "index")
    edited = scratch.root / "helpers" / "imgproc" / "src" / "imgproc" / "__init__.py"
    source = edited.read_text()
    try:
        proc = scratch.kiln("release", "--local", "--dry-run")
        status = scratch.kiln("stack", "status", "--json")
        # The dev release's dry run of a changed helper: its plan, nothing published, the
        # stack it had to start stopped again.
        edited.write_text(source + "\n# work in progress\n")
        dev = scratch.kiln("release", "--dev", "--local", "--dry-run")
        dev_status = scratch.kiln("stack", "status", "--json")
    finally:
        edited.write_text(source)
        assert scratch.kiln("stack", "up").returncode == 0
    assert dev.returncode == 0, dev.stderr
    assert f"imgproc {patch(HELPERS['imgproc'])}.dev" in dev.stdout  # the dev versions named
    assert [s["running"] for s in json.loads(dev_status.stdout)] == [False, False]
    assert _tree(scratch.root / ".kiln" / "stack" / "index") == index
    assert proc.returncode == 0, proc.stderr
    wheel = f"acme_imgproc-{HELPERS['imgproc']}-py3-none-any.whl"
    assert f"  skip     {wheel}: on the index with identical bytes" in proc.stdout
    assert "  skip     image acme/base:" in proc.stdout
    assert "in the registry with the identical digest" in proc.stdout  # kiln-built images
    assert [s["running"] for s in json.loads(status.stdout)] == [False, False]
    assert _tree(scratch.root / "dist") == dist


def test_a_file_altered_on_the_index_is_reported_and_restorable(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    filename = f"acme_imgproc-{HELPERS['imgproc']}-py3-none-any.whl"
    recorded = by(scratch_released["manifest"]["wheels"], "filename")[filename]["sha256"]
    stored = scratch.root / ".kiln" / "stack" / "index" / filename
    original = stored.read_bytes()
    stored.write_bytes(original + b"tampered")
    try:
        proc = scratch.kiln("release", "--local")
        assert proc.returncode == 8, proc.stderr
        assert "kiln: published artifact altered on the server" in proc.stderr
        assert "Do not bump the version" in proc.stderr
        assert "bump version in helpers/imgproc" not in proc.stderr
        assert f"{stored.parent}/" in proc.stderr  # where the local stack keeps it
        # The fix, as the message gives it: delete the file and release again.
        stored.unlink()
        again = scratch.kiln("release", "--local", "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["uploaded"] == [filename]
    finally:
        if not stored.exists():
            stored.write_bytes(original)
    assert stored.read_bytes() == original
    assert _index_sha(scratch, "acme-imgproc", filename) == recorded


def test_a_changed_os_definition_stops_the_release_naming_the_lock(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    pyproject = scratch.root / "pyproject.toml"
    original = pyproject.read_text()
    pyproject.write_text(original.replace('"zlib1g",', '"zlib1g", "libgomp1",'))
    try:
        proc = scratch.kiln("release", "--local")
        check = scratch.kiln("lock", "--check")
    finally:
        pyproject.write_text(original)
    assert proc.returncode == 3, proc.stderr
    expected = (
        f"kiln: bad input: {scratch.root / 'images' / 'os.lock'}: stale: [tool.kiln.os] or an "
        "image's os-packages changed since it was written; run `kiln lock` and commit the result"
    )
    assert expected in proc.stderr
    assert "==> wheels" not in proc.stderr  # nothing was built
    assert check.returncode == 3
    assert "images/os.lock: stale" in check.stderr


def test_the_consumer_guides_commands_work(
    repo: Repo, released: dict[str, Any], tmp_path: Path
) -> None:
    guide = (PROJECT / "docs" / "consumer-guide.md").read_text()
    # The guide's pip command, against this run's index instead of the default port.
    (command,) = [
        line
        for line in guide.splitlines()
        if line.startswith("pip install --index") and "acme-imgproc" in line
    ]
    args = shlex.split(command.replace("http://127.0.0.1:8765", repo.index_url))[2:]
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--isolated", "--quiet", *args],
        env=PRIVATE_PIP_ENV,
        check=True,
    )
    subprocess.run([python, "-c", "import imgproc"], check=True)
    # The guide's local run, next to the component YAML it names.
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.DOTALL)
    (script,) = [b for b in blocks if "local.init" in b]
    component = by(released["manifest"]["components"], "name")["stretch_contrast_demo"]
    target = tmp_path / component["path"]  # the guide loads it from its committed path
    target.parent.mkdir(parents=True)
    shutil.copy(repo.root / component["path"], target)
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert 40.0 < float(run.stdout.strip().splitlines()[-1]) < 80.0
