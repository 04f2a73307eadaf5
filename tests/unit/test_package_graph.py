"""kiln's packages import each other one way, checked by reading kiln's source.

A package is a first-level name under ``kiln`` (``_lock``, ``_images``, ``_context``,
...). Every import of one from another, ``if TYPE_CHECKING:`` and function-level
imports included, is an arrow; the arrows must make no circle (so each package can
be read, tested and moved knowing only the ones below it), and none may point at
``_cli`` (library code never imports the CLI). Each check is also run on planted
source, so a scan that has stopped finding arrows fails too.
"""

from __future__ import annotations

import ast
import graphlib
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "kiln"

Graph = dict[str, set[str]]


def _imported(tree: ast.AST, module: str) -> Iterator[str]:
    """Every ``kiln`` module an import statement in ``module`` (dotted) names."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def package_graph(sources: Mapping[str, str]) -> Graph:
    """Package -> the other packages it imports, for sources by path under ``kiln/``."""
    graph: Graph = {}
    for rel, text in sources.items():
        parts = rel.removesuffix(".py").split("/")
        module = ".".join(["kiln", *parts])  # kiln._e.__init__: "from . import" is kiln._e
        package = parts[0]
        arrows = graph.setdefault(package, set())
        for name in _imported(ast.parse(text, filename=rel), module):
            dotted = name.split(".")
            if dotted[0] == "kiln" and len(dotted) > 1 and dotted[1] != package:
                arrows.add(dotted[1])
    return graph


def circles(graph: Graph) -> list[list[str]]:
    """Import circles, one per pass (the arrows of each found are cut, then look again);
    empty when there are none."""
    found: list[list[str]] = []
    left = {package: set(arrows) for package, arrows in graph.items()}
    while True:
        try:
            graphlib.TopologicalSorter(left).prepare()
        except graphlib.CycleError as error:
            circle: list[str] = error.args[1]
            found.append(circle)
            for here, there in itertools.pairwise(circle):  # either way round: cut both
                left[there].discard(here)
                left[here].discard(there)
        else:
            return found


def _kiln() -> Graph:
    return package_graph(
        {p.relative_to(SRC).as_posix(): p.read_text() for p in sorted(SRC.rglob("*.py"))}
    )


def test_kilns_packages_import_each_other_one_way() -> None:
    graph = _kiln()
    assert {"_cli", "_context", "_lock", "_locking", "_images", "_wheels"} <= graph.keys()
    assert circles(graph) == []


def test_no_library_package_imports_the_cli() -> None:
    graph = _kiln()
    assert sorted(p for p, arrows in graph.items() if "_cli" in arrows) == ["__main__"]


def test_the_scan_sees_each_kind_of_import() -> None:
    planted = {
        "_a/x.py": "from kiln._b.y import f",
        "_b/y.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kiln._c import z",
        "_c/z.py": "def f() -> None:\n    import kiln._d.w",
        "_d/w.py": "from kiln import _e",
        "_e/__init__.py": "from . import v\nfrom .._f import u",
        "_f/u.py": "from kiln._f import t\nimport os",
    }
    graph = package_graph(planted)
    assert graph == {
        "_a": {"_b"}, "_b": {"_c"}, "_c": {"_d"}, "_d": {"_e"}, "_e": {"_f"}, "_f": set(),
    }  # fmt: skip


def test_the_circle_check_finds_circles_apart() -> None:
    assert circles({"_a": {"_b"}, "_b": {"_c"}, "_c": set()}) == []
    two = circles({"_a": {"_b"}, "_b": {"_a", "_c"}, "_c": {"_d"}, "_d": {"_b"}})
    assert sorted(sorted(set(circle)) for circle in two) == [["_a", "_b"], ["_b", "_c", "_d"]]
