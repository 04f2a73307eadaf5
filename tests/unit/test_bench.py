"""The benchmark's repo generator writes a monorepo kiln accepts (no network, no release)."""

from __future__ import annotations

import ast
from pathlib import Path

from bench.generate import PRESETS, generate

from kiln._workspace.discovery import discover


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
