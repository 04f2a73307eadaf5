"""The wheel cache keyed by a clean helper's git tree: no file of it is read to make the
key, and any change git might not see (or that a build would read) keeps the file walk."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import build
import pytest

import kiln._wheels.build
import kiln._wheels.git_tree
from kiln._errors import ConfigError
from kiln._util import files, toml
from kiln._util.git import git_output
from kiln._wheels.build import build_wheel, build_wheels, cache_key
from kiln._wheels.git_tree import clean_trees
from kiln._workspace.discovery import discover
from kiln._workspace.model import Helper
from tests import factory
from tests.unit.fakes import git


def _committed(tmp_path: Path) -> Helper:
    root = factory.sample(tmp_path / "repo")
    factory.helper(root, "tabular")
    (root / ".gitignore").write_text(".kiln/\ndist/\n*.dat\n")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "sample")
    return next(h for h in discover(root).helpers if h.name == "imgproc")


def _no_walk(_root: Path) -> None:
    raise AssertionError("a clean helper's files were walked and hashed")


def test_a_clean_helper_is_keyed_by_its_tree_and_no_file_is_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = _committed(tmp_path)
    helpers = discover(helper.path.parent.parent).helpers
    tree = git(helper.path, "rev-parse", "HEAD:helpers/imgproc")
    trees = clean_trees([h.path for h in helpers])
    assert trees == {h.path: git(h.path, "rev-parse", f"HEAD:helpers/{h.name}") for h in helpers}
    monkeypatch.setattr(kiln._wheels.build, "_source_files", _no_walk)
    cache = tmp_path / "cache"
    first = build_wheels(helpers, tmp_path / "a", cache_dir=cache)
    assert cache_key(helper, tree) in {p.name for p in cache.iterdir()}
    monkeypatch.setattr(build, "ProjectBuilder", _no_backend)
    assert build_wheels(helpers, tmp_path / "b", cache_dir=cache)[0].sha256 == first[0].sha256


def _no_backend(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the build backend ran on a cache hit")


def _init(helper: Path) -> Path:
    return helper / "src" / "imgproc" / "__init__.py"


def _edit(helper: Path) -> None:
    _init(helper).write_text("X = 2\n")


def _staged(helper: Path) -> None:
    _edit(helper)
    git(helper, "add", "-A")


def _untracked(helper: Path) -> None:
    (helper / "src" / "imgproc" / "extra.py").write_text("X = 1\n")


def _ignored(helper: Path) -> None:  # hatchling may still ship it: the walk hashes it
    (helper / "src" / "imgproc" / "model.dat").write_bytes(b"weights")


def _deleted(helper: Path) -> None:
    _init(helper).unlink()


def _chmod_x(helper: Path) -> None:
    _init(helper).chmod(0o755)


def _skip_worktree(helper: Path) -> None:
    git(helper, "update-index", "--skip-worktree", "src/imgproc/__init__.py")
    _edit(helper)


def _assume_unchanged(helper: Path) -> None:
    git(helper, "update-index", "--assume-unchanged", "src/imgproc/__init__.py")
    _edit(helper)


def _text_attribute(helper: Path) -> None:
    (helper / ".gitattributes").write_text("*.py text eol=crlf\n")
    git(helper, "add", "-A")
    git(helper, "commit", "-qm", "attributes")


def _autocrlf(helper: Path) -> None:
    git(helper, "config", "core.autocrlf", "input")


def _file_mode_off(helper: Path) -> None:
    git(helper, "config", "core.fileMode", "false")


@pytest.mark.parametrize(
    "change",
    [
        _edit, _staged, _untracked, _ignored, _deleted, _chmod_x, _skip_worktree,
        _assume_unchanged, _text_attribute, _autocrlf, _file_mode_off,
    ],
)  # fmt: skip
def test_a_helper_git_cannot_vouch_for_is_hashed_file_by_file(
    tmp_path: Path, change: Callable[[Path], None]
) -> None:
    helper = _committed(tmp_path)
    tabular = helper.path.parent / "tabular"
    change(helper.path)
    trees = clean_trees([helper.path, tabular])
    assert helper.path not in trees
    if change not in (_autocrlf, _file_mode_off):  # these doubt the whole repository
        assert list(trees) == [tabular]  # the other helper is still clean
    # ... and its wheel is what a cold build of the folder makes.
    cache = tmp_path / "cache"
    build_wheels([helper], tmp_path / "before", cache_dir=cache)
    if change in (_edit, _staged, _skip_worktree, _assume_unchanged):
        _init(helper.path).write_text("X = 3\n")  # a second edit git may not see
    built = build_wheel(helper, tmp_path / "cached", cache_dir=cache)
    cold = build_wheel(helper, tmp_path / "cold")
    assert built.path.read_bytes() == cold.path.read_bytes()


def test_tool_caches_and_bytecode_keep_a_helper_clean(tmp_path: Path) -> None:
    helper = _committed(tmp_path)
    for rel in (
        "src/imgproc/__pycache__/__init__.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        "build/lib/imgproc/__init__.py",
        "src/acme_imgproc.egg-info/PKG-INFO",
    ):
        factory.write(helper.path / rel, "noise\n")
    assert helper.path in clean_trees([helper.path])


def test_outside_a_git_repository_every_helper_is_walked(tmp_path: Path) -> None:
    helper = discover(factory.sample(tmp_path / "repo")).helpers[0]
    assert clean_trees([helper.path]) == {}


def test_a_folder_named_like_a_pattern_is_a_path(tmp_path: Path) -> None:
    # A kiln repository inside a git repository, under a folder whose name is a glob.
    top = tmp_path / "top"
    root = factory.sample(top / "ml[1]")
    git(tmp_path, "init", "-q", str(top))
    git(top, "add", "-A")
    git(top, "commit", "-qm", "sample")
    helper = discover(root).helpers[0]
    assert clean_trees([helper.path]) == {
        helper.path: git(top, "rev-parse", "HEAD:ml[1]/helpers/imgproc")
    }
    _edit(helper.path)
    assert clean_trees([helper.path]) == {}


def test_a_run_of_cache_hits_reads_each_helper_once_and_the_ignore_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At N=500 a no-op release walked every helper folder again (discovery had), parsed
    # every pyproject.toml again and looked up and hashed the .gitignore above them 500
    # times: none of that decides anything on a hit keyed by the helper's git tree.
    helper = _committed(tmp_path)
    root = helper.path.parent.parent
    for name in ("a1", "a2", "a3"):
        factory.helper(root, name)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "more")
    helpers = discover(root).helpers
    cache = tmp_path / "cache"
    first = build_wheels(helpers, tmp_path / "a", cache_dir=cache)
    keys = [cache_key(h, git(root, "rev-parse", f"HEAD:helpers/{h.name}")) for h in helpers]
    assert sorted(keys) == sorted(p.name for p in cache.iterdir())  # the keys are as before

    walked: list[Path] = []
    hashed: list[Path] = []
    parsed: list[Path] = []

    def sha256_file(path: Path) -> str:
        hashed.append(path)
        return files.sha256_file(path)

    def load_toml(path: Path, **kwargs: Any) -> dict[str, Any]:
        parsed.append(path)
        return toml.load_toml(path, **kwargs)

    monkeypatch.setattr(kiln._wheels.build, "check_helper_tree", walked.append)
    monkeypatch.setattr(kiln._wheels.build, "sha256_file", sha256_file)
    monkeypatch.setattr(kiln._wheels.build, "load_toml", load_toml)
    monkeypatch.setattr(build, "ProjectBuilder", _no_backend)
    again = build_wheels(helpers, tmp_path / "b", cache_dir=cache)
    assert [w.path.read_bytes() for w in again] == [w.path.read_bytes() for w in first]
    assert walked == []
    assert parsed == []
    # (each wheel is hashed too: whether the copy in the output folder has its bytes)
    assert [p for p in hashed if p.suffix != ".whl"] == [root / ".gitignore"]


def test_a_miss_on_a_clean_helper_still_refuses_a_special_file(tmp_path: Path) -> None:
    # git does not list a FIFO: the build, which reads the folder, is preceded by the walk.
    helper = _committed(tmp_path)
    fifo = helper.path / "src" / "imgproc" / "pipe"
    os.mkfifo(fifo)
    assert clean_trees([helper.path]) == {
        helper.path: git(helper.path, "rev-parse", "HEAD:helpers/imgproc")
    }
    with pytest.raises(ConfigError, match=r"pipe is a FIFO"):
        build_wheel(helper, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_git_status_is_asked_about_the_folder_holding_the_helpers_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # git status matches each path against each pathspec: 500 helper folders as 500
    # pathspecs cost it 5x the CPU of their one parent folder at N=500.
    helper = _committed(tmp_path)
    helpers = discover(helper.path.parent.parent).helpers
    calls: list[tuple[str, ...]] = []

    def recording(top: Path, *args: str) -> str | None:
        calls.append(args)
        return git_output(top, *args)

    monkeypatch.setattr(kiln._wheels.git_tree, "git_output", recording)
    clean = {h.path: git(h.path, "rev-parse", f"HEAD:helpers/{h.name}") for h in helpers}
    assert clean_trees([h.path for h in helpers]) == clean
    status = next(c for c in calls if "status" in c)
    assert status[status.index("--") + 1 :] == ("helpers",)
    # What git says outside the helper folders leaves them clean; inside, dirty.
    (helper.path.parent / "NOTES.md").write_text("notes\n")
    (helper.path.parent / "_template").mkdir()
    (helper.path.parent / "_template" / "x.py").write_text("X = 1\n")
    assert clean_trees([h.path for h in helpers]) == clean
    _untracked(helper.path)
    assert helper.path not in clean_trees([h.path for h in helpers])
