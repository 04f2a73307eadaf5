"""The walk of a helper folder (every discovery walks all 500 at N=500): one scandir per
folder, no path object or stat call of Python's per entry, and the entries, order and
refusals of the os.walk it replaced."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._workspace import tree
from kiln._workspace.tree import SKIP_DIRS, SKIP_SUFFIXES, SKIP_TOP_DIRS, entries


def _os_walk_entries(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """The walk as it was (os.walk, a Path and an lstat per entry): the reference."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        skip_top = SKIP_TOP_DIRS if here == root else frozenset()
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS and d not in skip_top and not d.endswith(".egg-info")
        )
        names = sorted([*dirnames, *(f for f in filenames if not f.endswith(SKIP_SUFFIXES))])
        for name in names:
            path = here / name
            yield path, path.lstat()


def _tricky(root: Path) -> Path:
    for rel in (
        "pyproject.toml", "src/pkg/__init__.py", "src/pkg/a.py", "src/pkg/a.pyc",
        "src/pkg/build/__init__.py", "src/pkg/Z.txt", "src/pkg/__pycache__/a.pyc",
        "build/lib/pkg.py", "dist/x.whl", "src/pkg.egg-info/PKG-INFO", ".venv/bin/python",
        "tests/test_a.py", "src/pkg/sub/deeper/x.py", "B.md", "a.md",
    ):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "src/pkg/link.py").symlink_to("a.py")
    (root / "src/pkg/dirlink").symlink_to("sub", target_is_directory=True)
    (root / "src/pkg/dangling").symlink_to("nowhere")
    return root


def test_the_walk_gives_what_os_walk_gave_in_its_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tricky(tmp_path / "helper")
    expected = [(p, (st.st_mode, st.st_size, st.st_ino)) for p, st in _os_walk_entries(root)]
    stats: list[object] = []
    real_stat = os.stat

    def counting(*args: object, **kwargs: object) -> os.stat_result:
        stats.append(args[0])
        return real_stat(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting)
    got = [(Path(p), (st.st_mode, st.st_size, st.st_ino)) for p, st in entries(root)]
    assert got == expected
    assert len(got) == 18
    assert stats == []  # each entry's lstat comes with its directory entry


def test_a_link_in_a_helper_is_still_refused_first(tmp_path: Path) -> None:

    root = _tricky(tmp_path / "helper")
    with pytest.raises(ConfigError, match=r"dangling is a symbolic link to 'nowhere'"):
        tree.check_helper_tree(root)
