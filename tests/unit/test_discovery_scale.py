"""Discovery's work grows with the repository, not with its square: what every
component is checked against (the helper of each import package, the helpers inside
each image) is worked out once per run, not once per component."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._workspace import sources
from kiln._workspace.discovery import discover
from kiln._workspace.model import Helper, sibling_closure
from tests import factory


def _repo(root: Path, helpers: int, components: int) -> Path:
    factory.workspace(root)
    names = [f"h{i}" for i in range(helpers)]
    for name in names:
        factory.helper(root, name, deps=())
    factory.image(root, "base", helpers=tuple(names))
    factory.image(root, "small", helpers=(names[0],))
    for i in range(components):
        factory.write(
            root / "pipelines" / "components" / f"c{i}.py",
            f"""
            IMAGE = "base"


            def step{i}(x: int) -> int:
                import h{i % helpers}

                return x
            """,
        )
    factory.pipeline(root, "demo", component_name="step0")
    return root


class _CountedPackages(tuple[str, ...]):
    """A helper's ``packages`` that counts how often they are gone through."""

    reads = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        _CountedPackages.reads += 1
        return super().__iter__()


def test_helper_lookups_are_made_once_per_run_not_per_component(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closures: list[tuple[str, ...]] = []

    def counting(helpers, names):  # type: ignore[no-untyped-def]
        closures.append(tuple(names))
        return sibling_closure(helpers, names)

    ws = discover(_repo(tmp_path, helpers=6, components=30))
    helpers = tuple(
        dataclasses.replace(h, packages=_CountedPackages(h.packages)) for h in ws.helpers
    )
    monkeypatch.setattr(sources, "sibling_closure", counting)
    components = sources.read_components(ws.root, ws.images, helpers)
    assert components == ws.components  # the same components, each with its helper
    assert {c.name: c.helpers for c in components} == {
        f"step{i}": (f"h{i % 6}",) for i in range(30)
    }
    # one closure per image and one pass over each helper's packages, however many
    # components there are (was one of each per component)
    assert len(closures) == len(ws.images) == 2
    assert _CountedPackages.reads == len(helpers)


def test_a_helper_missing_from_the_image_is_still_named(tmp_path: Path) -> None:
    root = _repo(tmp_path, helpers=3, components=3)
    factory.write(
        root / "pipelines" / "components" / "c9.py",
        """
        IMAGE = "small"


        def late(x: int) -> int:
            import h2

            return x
        """,
    )
    with pytest.raises(ConfigError) as err:
        discover(root)
    assert str(err.value) == (
        f"{root / 'pipelines' / 'components' / 'c9.py'}: late imports h2 (helper h2), which "
        'image small does not contain; images containing it: base; set IMAGE = "base" or '
        "add 'h2' to helpers in images/small/image.toml"
    )


def test_a_helper_is_found_by_name_without_a_search(tmp_path: Path) -> None:
    # kiln check looked helpers up by name ~6000 times at N=500, each a walk of 500.
    ws = discover(_repo(tmp_path, helpers=5, components=1))
    walks = []

    class Counted(tuple[Helper, ...]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            walks.append(1)
            return super().__iter__()

    counted = dataclasses.replace(ws, helpers=Counted(ws.helpers))
    found = [counted.helper(f"h{i % 5}") for i in range(100)]
    assert found == [ws.helpers[i % 5] for i in range(100)]
    assert len(walks) == 1
    with pytest.raises(KeyError):
        ws.helper("nope")


def test_the_component_folder_is_worked_out_once(tmp_path: Path) -> None:
    # A release asks for it once per component (1004 at N=500).
    ws = discover(_repo(tmp_path, helpers=1, components=1))
    assert ws.component_dir == tmp_path / "pipelines" / "components" / "generated"
    assert ws.component_dir is ws.component_dir
