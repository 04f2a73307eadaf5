"""Packages mode and the committed component tree on the released example repo: the YAML
installs exact, hash-checked files from the private index only; a file swapped on the
index stops the pod at pip install; a helper bump moves exactly the YAMLs that pin it,
which `kiln components --check` catches; the catalog renders in headless Chromium."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from kiln._lock.format import parse_lock
from kiln._workspace.discovery import discover
from tests.catalog_sample import CatalogDom
from tests.e2e.test_catalog_browser import dump_dom
from tests.e2e.tools import Repo

pytestmark = pytest.mark.e2e

GENERATED = Path("pipelines") / "components" / "generated"


def _command(path: Path) -> str:
    spec = yaml.safe_load(path.read_text())
    (executor,) = spec["deploymentSpec"]["executors"].values()
    return str(executor["container"]["command"][2])


def test_a_packages_mode_yaml_installs_hash_pinned_files_from_the_private_index(
    repo: Repo, released: dict[str, Any]
) -> None:
    command = _command(repo.root / GENERATED / "make_sample_table.yaml")
    port = repo.index_url.rsplit(":", 1)[1]
    assert f"--index-url {repo.index_url}/simple/ --trusted-host 127.0.0.1:{port} " in command
    assert "--extra-index-url" not in command
    pip_line = next(line for line in command.splitlines() if "pip install" in line)
    items = shlex.split(pip_line.split(f"--trusted-host 127.0.0.1:{port} ", 1)[1].split(" && ")[0])
    assert items[:2] == ["--no-deps", "--require-hashes"]
    requirements = [Requirement(item) for item in items[2:]]
    pins: dict[str, list[Requirement]] = {}
    for requirement in requirements:
        pins.setdefault(requirement.name, []).append(requirement)
    lock = parse_lock(
        repo.root / "pipelines" / "requirements.lock",
        (repo.root / "pipelines" / "requirements.lock").read_text(),
    )
    locked = {p.name: p for p in lock.pins}
    # numpy and pandas (the function imports them), what pandas requires, and kfp: all
    # from packages mode's lock, each by its file on the private index and its sha256.
    assert {"kfp", "numpy", "pandas", "python-dateutil"} <= set(pins) <= set(locked)
    for name, found in pins.items():
        for requirement in found:
            path, _, sha = str(requirement.url).partition("#sha256=")
            assert path.startswith(f"{repo.index_url}/packages/{name.replace('-', '_')}-")
            assert sha in locked[name].hashes, name
        # The repo is made for amd64 and arm64: a wheel that is one file everywhere (kfp,
        # pure Python) is one item; numpy's and pandas' differ: one item per machine.
        machines = [str(r.marker) if r.marker else None for r in found]
        if name in ("numpy", "pandas"):
            assert machines == ['platform_machine == "x86_64"', 'platform_machine == "aarch64"'], (
                name
            )
        elif name == "kfp":
            assert machines == [None], name
    # An image-mode YAML pins the image digest the release pushed, and installs nothing.
    assert "pip install" not in _command(repo.root / GENERATED / "check_quality.yaml")


def test_a_file_swapped_on_the_index_stops_the_pod_at_pip_install(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    storage = scratch.root / ".kiln" / "stack" / "index"
    (wheel,) = storage.glob("acme_imgproc-*.whl")
    original = wheel.read_bytes()
    other = sorted(storage.glob("acme_tabular-*.whl"))[0].read_bytes()
    committed = {p.name: p.read_bytes() for p in (scratch.root / GENERATED).iterdir()}
    wheel.write_bytes(other)  # same name, other bytes: what a tampered index serves
    try:
        proc = scratch.kiln("run", "contrast_demo")
    finally:
        wheel.write_bytes(original)
    assert proc.returncode == 7, proc.stderr
    log = (scratch.root / ".kiln" / "logs" / "run.log").read_text()
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in log
    assert {p.name: p.read_bytes() for p in (scratch.root / GENERATED).iterdir()} == committed
    again = scratch.kiln_json("run", "contrast_demo")  # restored: it runs again
    assert 40.0 < again["Output"] < 80.0


def test_a_helper_bump_moves_exactly_the_yamls_that_pin_it_and_check_catches_it(
    scratch: Repo, scratch_released: dict[str, Any], tmp_path: Path
) -> None:
    ws = discover(scratch.root)
    folder = scratch.root / GENERATED
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    touched = [*scratch.root.glob("helpers/*/pyproject.toml"), *scratch.root.glob("images/*/*")]
    saved = {p: p.read_bytes() for p in touched}
    expected = {
        f"{c.name}.yaml"
        for c in ws.components
        if (c.image is not None and "imgproc" in ws.image(c.image).helpers)
        or "imgproc" in c.helpers
    }
    try:
        assert scratch.kiln("bump", "imgproc", "patch").returncode == 0
        stale = scratch.kiln("components", "--local", "--check")
        assert stale.returncode == 3, stale.stderr
        for name in expected:
            assert f"{GENERATED}/{name} differs from what kiln generates now" in stale.stderr
        assert "+# Generated by kiln" not in stale.stderr  # only the pins move
        assert scratch.kiln("components", "--local").returncode == 0
        after = {p.name: p.read_bytes() for p in folder.iterdir()}
        changed = {n for n in after if n.endswith(".yaml") and after[n] != before.get(n)}
        assert changed == expected
        assert "make_sample_table.yaml" not in changed  # numpy + pandas only
        assert scratch.kiln("components", "--local", "--check").returncode == 0
    finally:
        for path, data in saved.items():
            path.write_bytes(data)
        shutil.rmtree(folder)
        folder.mkdir()
        for name, data in before.items():
            (folder / name).write_bytes(data)


def test_the_catalog_renders_in_chromium_with_every_component_and_its_pins(
    repo: Repo, released: dict[str, Any], tmp_path: Path
) -> None:
    ws = discover(repo.root)
    parser = CatalogDom()
    parser.feed(dump_dom(repo.root / GENERATED / "catalog.html", tmp_path / "profile"))
    images = {i["name"]: i["ref"] for i in released["manifest"]["images"]}
    for component in ws.components:
        section = f"component-{component.name}"
        assert section in parser.text, f"{section} is not on the rendered page"
        text = parser.text[section]
        assert ("pin mode", component.mode) in parser.rows[section]
        if component.image is not None:
            assert images[component.image] in text
        else:
            assert "acme-imgproc==" in text or "numpy==" in text
    print(f"catalog: {len(ws.components)} components rendered by chromium")
