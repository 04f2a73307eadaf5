"""The benchmark's repo generator writes a monorepo kiln accepts, and the harness renders
what scenario 8 reads from a registry (no network, no release)."""

from __future__ import annotations

import ast
from pathlib import Path

import tomlkit
from bench.generate import OS_LOCK, PRESETS, generate
from bench.harness import Measurement, Outcome, markdown
from bench.os_base import layer_kind

from kiln._debian.lock import read_os_lock
from kiln._workspace.discovery import discover

PROJECT = Path(__file__).resolve().parents[2]


def test_the_small_preset_is_a_repo_kiln_discovers(tmp_path: Path) -> None:
    ws = discover(generate(tmp_path / "repo", PRESETS["small"]))

    assert [h.name for h in ws.helpers] == ["h000", "h001", "h002", "h003", "h004"]
    assert [i.name for i in ws.images] == ["img00", "img01"]
    # K components, and the four start-up probes (a numpy and a pandas helper, both modes)
    probes = ["s_np_image", "s_np_packages", "s_pd_image", "s_pd_packages"]
    assert sorted(c.name for c in ws.components) == [f"c{c:03d}" for c in range(10)] + probes
    assert [p.name for p in ws.pipelines] == ["p_img00", "p_img01", *probes]
    # Both pin modes: one component in five in packages mode.
    assert [c.name for c in ws.components if c.image is None] == [
        "c004",
        "c009",
        "s_np_packages",
        "s_pd_packages",
    ]
    assert (ws.stack.index_port, ws.stack.registry_port) == (8865, 5865)
    assert ws.upstream_index == "https://pypi.org/simple"
    # Every image on kiln's OS base: no registry base anywhere, packages mode included,
    # and this repository's OS lock, fresh there (with this repository's [tool.kiln.os]).
    assert [i.base for i in ws.locked] == [None, None, None]
    assert ws.packages is not None
    assert ws.os == discover(PROJECT).os
    assert OS_LOCK == PROJECT / "images" / "os.lock"
    assert (ws.root / "images" / "os.lock").read_bytes() == OS_LOCK.read_bytes()
    assert read_os_lock(ws.root).os == read_os_lock(PROJECT).os
    kiln = tomlkit.parse((ws.root / "pyproject.toml").read_text()).unwrap()["tool"]["kiln"]
    assert kiln["packages"] == {"python": "3.11"}
    project = tomlkit.parse((PROJECT / "pyproject.toml").read_text()).unwrap()["tool"]["kiln"]
    assert kiln["os"] == project["os"]
    assert "platforms" not in kiln  # its images: linux/amd64 alone
    # Pure Python but for numpy (h003) and pandas + matplotlib (h004); siblings pinned
    # exactly (discovery checks the pins), only ever earlier ones, at most two, never h004.
    third_party = {
        h.name: [d for d in h.dependencies if not d.startswith("acme-")] for h in ws.helpers
    }
    assert third_party == {
        "h000": [],
        "h001": [],
        "h002": [],
        "h003": ["numpy>=1.26"],
        "h004": ["pandas>=2.2", "matplotlib>=3.8"],
    }
    assert not any("h004" in h.siblings for h in ws.helpers)
    assert any(h.siblings for h in ws.helpers)
    for index, helper in enumerate(ws.helpers):
        assert len(helper.siblings) <= 2
        assert all(s < helper.name for s in helper.siblings), helper
        module = helper.path / "src" / helper.name / "__init__.py"
        imported = {
            n.module for n in ast.parse(module.read_text()).body if isinstance(n, ast.ImportFrom)
        }
        assert imported == set(helper.siblings), index
    # Every helper ships in some image, and each component imports a helper of its image.
    listed = [h for i in ws.images for h in i.helpers]
    assert sorted(listed) == [h.name for h in ws.helpers]
    for comp in ws.components:
        func = next(
            n
            for n in ast.parse(comp.path.read_text()).body
            if isinstance(n, ast.FunctionDef) and n.name == comp.name
        )
        used = {n.module for n in ast.walk(func) if isinstance(n, ast.ImportFrom)}
        assert len(used) == 1, comp.name
        if comp.image is not None:
            assert used <= set(ws.image(comp.image).helpers), comp.name


def test_the_same_seed_writes_the_same_repo(tmp_path: Path) -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    first = files(generate(tmp_path / "a", PRESETS["small"], seed=7))
    assert first == files(generate(tmp_path / "b", PRESETS["small"], seed=7))
    assert first != files(generate(tmp_path / "c", PRESETS["small"], seed=8))


def test_the_generator_copies_the_os_lock_it_is_given(tmp_path: Path) -> None:
    other = tmp_path / "os.lock"
    other.write_bytes(OS_LOCK.read_bytes().replace(b"# Written by", b"# (moved) Written by"))
    root = generate(tmp_path / "repo", PRESETS["small"], os_lock=other)
    assert (root / "images" / "os.lock").read_bytes() == other.read_bytes()


def test_layer_parts_are_named_from_the_config_history() -> None:
    assert layer_kind("kiln: OS layer: Debian bookworm 12.15, 43 packages (images/os.lock)") == "OS"
    assert layer_kind("kiln: third-party layer: numpy==2.4.6 kfp==2.17.3") == "third-party"
    assert layer_kind("kiln: helpers layer: acme-imgproc==0.2.0") == "helpers"
    assert layer_kind("kiln: gpu's os-packages: libgomp1") == "os-packages"
    assert layer_kind("Imported from -") == "OS (docker import)"


def test_sizes_and_setup_are_rendered_in_the_markdown() -> None:
    outcome = Outcome(8, "os base", "`base` <= 60 MB", rows=[Measurement("no-op", (0.5, 0.7))])
    outcome.sizes = [("base 0.3.0", "OS", 26_546_324), ("base 0.3.0", "total", 48_623_562)]
    outcome.figures = {"base MB": 48.6}
    outcome.judge(True, "read from the registry")
    result = {
        "date": "2000-01-02",
        "preset": "small",
        "shape": "N=5, M=2, K=10",
        "repeat": 2,
        "machine": {
            "cores": 2, "memory_gb": 1.0, "os": "Linux", "python": "3.11.7", "docker": "x",
            "kiln": "0.1.0", "kiln_revision": "abc", "kfp": "2.17.3",
        },
        "setup": {"os_base": "debian bookworm 12.15", "docker_base": "not used"},
        "scenarios": [outcome.as_json()],
    }  # fmt: skip
    text = markdown(result)
    assert "Built on: os base: debian bookworm 12.15; docker base: not used. Seconds:" in text
    assert "| 8 | os base | no-op | 0.50 / 0.60 / 0.70 | - |" in text
    assert "| 8 | base 0.3.0 | OS | 26,546,324 | 26.5 |\n" in text
    assert "| 8 | base 0.3.0 | total | 48,623,562 | 48.6 |\n" in text
    assert "| 8 | `base` <= 60 MB | **met** | base MB 48.60; read from the registry |" in text
