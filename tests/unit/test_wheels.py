from __future__ import annotations

import shlex
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import build
import pytest

import kiln._wheels.build
from kiln._cli import main
from kiln._context import Services
from kiln._errors import CommandFailed
from kiln._release.prepare import prepare
from kiln._util.files import sha256_file
from kiln._wheels.build import (
    NO_CACHE_ENV,
    build_wheel,
    build_wheels,
    cache_key,
    wheel_cache_dir,
)
from kiln._workspace.discovery import discover
from tests import factory
from tests.unit.fakes import FakeIndex, FakeRegistry


def test_wheel_is_byte_reproducible_and_ignores_outside_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = discover(factory.sample(tmp_path / "repo"))
    first = build_wheel(ws.helpers[0], tmp_path / "a")
    # A CI that exports the commit time must not change the bytes.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    second = build_wheel(ws.helpers[0], tmp_path / "b")
    assert first.filename == "acme_imgproc-0.1.0-py3-none-any.whl"
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()


def test_wheel_contents(tmp_path: Path) -> None:
    ws = discover(factory.sample(tmp_path / "repo"))
    wheel = build_wheel(ws.helpers[0], tmp_path / "out")
    with zipfile.ZipFile(wheel.path) as zf:
        names = set(zf.namelist())
        metadata = zf.read("acme_imgproc-0.1.0.dist-info/METADATA").decode()
        dates = {info.date_time for info in zf.infolist()}
    assert "imgproc/__init__.py" in names
    assert "Name: acme-imgproc\n" in metadata
    assert "Version: 0.1.0\n" in metadata
    assert "Requires-Dist: numpy>=1.26\n" in metadata
    assert dates == {(1980, 1, 1, 0, 0, 0)}


def test_changed_source_changes_the_bytes(tmp_path: Path) -> None:
    root = factory.sample(tmp_path / "repo")
    ws = discover(root)
    before = build_wheel(ws.helpers[0], tmp_path / "a")
    (root / "helpers" / "imgproc" / "src" / "imgproc" / "__init__.py").write_text("X = 2\n")
    after = build_wheel(ws.helpers[0], tmp_path / "b")
    assert before.filename == after.filename
    assert before.sha256 != after.sha256


def test_broken_helper_build_names_the_helper(tmp_path: Path) -> None:
    root = factory.sample(tmp_path / "repo")
    ws = discover(root)
    pyproject = root / "helpers" / "imgproc" / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('packages = ["src/imgproc"]', "packages = 3")
    )
    with pytest.raises(CommandFailed, match=r"building the wheel of .*helpers/imgproc failed"):
        build_wheel(ws.helpers[0], tmp_path / "out")


def test_a_failed_build_shows_the_backends_own_explanation(tmp_path: Path) -> None:
    root = factory.sample(tmp_path / "my repo")  # a space: the hint's path is quoted
    ws = discover(root)
    pyproject = root / "helpers" / "imgproc" / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('packages = ["src/imgproc"]', 'packages = "src/imgproc"')
    )
    with pytest.raises(CommandFailed) as err:
        build_wheel(ws.helpers[0], tmp_path / "out")
    message = str(err.value)
    # hatchling's words, not only build's "Backend subprocess exited ..."
    assert "Backend subprocess exited when trying to invoke build_wheel" in message
    assert "TypeError: Field `tool.hatch.build.targets.wheel.packages` must be an array" in message
    assert message.endswith(
        f"check with `python -m build --wheel {shlex.quote(str(ws.helpers[0].path))}`"
    )


# ---------------------------------------------------------------- the wheel cache
class CountingBuilder(build.ProjectBuilder):
    """The real backend, counted: how many builds a cache lookup let through."""

    calls = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).calls += 1
        super().__init__(*args, **kwargs)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> type[CountingBuilder]:
    monkeypatch.setattr(CountingBuilder, "calls", 0)
    monkeypatch.setattr(build, "ProjectBuilder", CountingBuilder)
    return CountingBuilder


def _no_backend(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the build backend ran on a cache hit")


def _entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir())


def test_a_cache_hit_copies_the_wheel_without_running_the_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = discover(factory.sample(tmp_path / "repo")).helpers[0]
    cache = tmp_path / "cache"
    first = build_wheel(helper, tmp_path / "a", cache_dir=cache)
    monkeypatch.setattr(build, "ProjectBuilder", _no_backend)
    second = build_wheel(helper, tmp_path / "b", cache_dir=cache)
    assert second.path == tmp_path / "b" / "acme_imgproc-0.1.0-py3-none-any.whl"
    assert second.path.read_bytes() == first.path.read_bytes()
    assert second.sha256 == first.sha256 == sha256_file(second.path)
    assert _entries(cache) == [cache_key(helper)]  # one entry, no temporary folder left


def test_a_hit_leaves_a_wheel_that_already_has_its_bytes_and_replaces_one_that_has_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A no-op release finds every wheel in its staging folder from the last run: copying
    # 500 of them out of the cache again cost 1.6 s of the no-op at N=500.
    helper = discover(factory.sample(tmp_path / "repo")).helpers[0]
    cache, out = tmp_path / "cache", tmp_path / "out"
    first = build_wheel(helper, out, cache_dir=cache)
    monkeypatch.setattr(build, "ProjectBuilder", _no_backend)
    with monkeypatch.context() as patch:
        patch.setattr(kiln._wheels.build, "_copy_hashing", _no_copy)
        assert build_wheel(helper, out, cache_dir=cache) == first
    first.path.write_bytes(b"not the wheel")  # what a stale or damaged copy holds
    fixed = build_wheel(helper, out, cache_dir=cache)
    assert fixed.sha256 == first.sha256 == sha256_file(fixed.path)


def test_a_cached_wheel_equals_a_cold_build_byte_for_byte(
    tmp_path: Path, builds: type[CountingBuilder]
) -> None:
    root = factory.sample(tmp_path / "repo")
    factory.helper(root, "tabular", deps=("acme-imgproc==0.1.0",))
    ws = discover(root)
    cache = tmp_path / "cache"
    build_wheels(ws.helpers, tmp_path / "warm", cache_dir=cache)
    hits = build_wheels(ws.helpers, tmp_path / "hit", cache_dir=cache)
    cold = build_wheels(ws.helpers, tmp_path / "cold")
    assert builds.calls == 4  # 2 to fill the cache, 0 for the hits, 2 cold
    assert [w.filename for w in hits] == [w.filename for w in cold]
    for hit, fresh in zip(hits, cold, strict=True):
        assert hit.path.read_bytes() == fresh.path.read_bytes()
        assert hit.sha256 == fresh.sha256


def _edit_source(helper: Path) -> None:
    (helper / "src" / "imgproc" / "__init__.py").write_text("def answer() -> int:\n    return 7\n")


def _edit_pyproject(helper: Path) -> None:
    pyproject = helper / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"numpy>=1.26"', '"numpy>=2"'))


def _add_module(helper: Path) -> None:
    (helper / "src" / "imgproc" / "extra.py").write_text("X = 1\n")


def _chmod_x(helper: Path) -> None:
    (helper / "src" / "imgproc" / "__init__.py").chmod(0o755)


@pytest.mark.parametrize("change", [_edit_source, _edit_pyproject, _add_module, _chmod_x])
def test_a_change_that_can_reach_the_wheel_rebuilds_it(
    tmp_path: Path, builds: type[CountingBuilder], change: Callable[[Path], None]
) -> None:
    helper = discover(factory.sample(tmp_path / "repo")).helpers[0]
    cache = tmp_path / "cache"
    build_wheel(helper, tmp_path / "before", cache_dir=cache)
    key = cache_key(helper)
    change(helper.path)
    after = build_wheel(helper, tmp_path / "after", cache_dir=cache)
    assert cache_key(helper) != key
    assert builds.calls == 2
    assert after.path.read_bytes() == build_wheel(helper, tmp_path / "cold").path.read_bytes()
    assert len(_entries(cache)) == 2


def test_the_backend_pin_is_part_of_the_key(tmp_path: Path) -> None:
    helper = discover(factory.sample(tmp_path / "repo")).helpers[0]
    before = cache_key(helper)
    pyproject = helper.path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("hatchling==1.33.0", "hatchling==1.34.0"))
    assert cache_key(helper) != before


def test_an_ignore_file_above_the_helper_is_part_of_the_key(tmp_path: Path) -> None:
    # hatchling reads the nearest .gitignore up to the repository root to choose files.
    root = factory.sample(tmp_path / "repo")
    (root / ".git").mkdir()
    helper = discover(root).helpers[0]
    before = cache_key(helper)
    (root / ".gitignore").write_text("*.txt\n")
    assert cache_key(helper) != before


def test_tool_caches_and_build_outputs_do_not_change_the_key(tmp_path: Path) -> None:
    helper = discover(factory.sample(tmp_path / "repo")).helpers[0]
    before = cache_key(helper)
    for rel in (
        "src/imgproc/__pycache__/__init__.cpython-311.pyc",
        "tests/__pycache__/test_x.cpython-311-pytest-8.0.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/imgproc.json",
        ".ruff_cache/0.17.6/123",
        ".hypothesis/examples/abc",
        "src/acme_imgproc.egg-info/PKG-INFO",
        "build/lib/imgproc/__init__.py",
        "dist/acme_imgproc-0.1.0-py3-none-any.whl",
        "src/imgproc/legacy.pyc",
    ):
        factory.write(helper.path / rel, "noise\n")
    assert cache_key(helper) == before
    # ... but a package's own `build` subpackage is source.
    factory.write(helper.path / "src/imgproc/build/__init__.py", "X = 1\n")
    assert cache_key(helper) != before


def _truncate_wheel(entry: Path) -> None:
    wheel = next(entry.glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:100])


def _delete_wheel(entry: Path) -> None:
    next(entry.glob("*.whl")).unlink()


def _garble_record(entry: Path) -> None:
    (entry / "wheel.sha256").write_bytes(b"\xff\xfe not a record")


def _another_helpers_wheel(entry: Path) -> None:
    wheel = next(entry.glob("*.whl"))
    other = wheel.with_name("acme_other-0.1.0-py3-none-any.whl")
    wheel.rename(other)
    (entry / "wheel.sha256").write_text(f"{sha256_file(other)}  {other.name}\n")


@pytest.mark.parametrize(
    "corrupt", [_truncate_wheel, _delete_wheel, _garble_record, _another_helpers_wheel]
)
def test_a_corrupt_cache_entry_is_rebuilt_not_trusted(
    tmp_path: Path, builds: type[CountingBuilder], corrupt: Callable[[Path], None]
) -> None:
    helper = discover(factory.sample(tmp_path / "repo")).helpers[0]
    cache = tmp_path / "cache"
    good = build_wheel(helper, tmp_path / "a", cache_dir=cache)
    corrupt(cache / cache_key(helper))
    rebuilt = build_wheel(helper, tmp_path / "b", cache_dir=cache)
    assert builds.calls == 2
    assert rebuilt.filename == good.filename
    assert rebuilt.path.read_bytes() == good.path.read_bytes()
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [good.filename]
    # The entry is whole again: the next build is a hit.
    build_wheel(helper, tmp_path / "c", cache_dir=cache)
    assert builds.calls == 2


def test_a_failed_build_leaves_no_cache_entry(tmp_path: Path) -> None:
    root = factory.sample(tmp_path / "repo")
    helper = discover(root).helpers[0]
    pyproject = helper.path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('["src/imgproc"]', "3"))
    cache = tmp_path / "cache"
    with pytest.raises(CommandFailed, match="building the wheel of"):
        build_wheel(helper, tmp_path / "out", cache_dir=cache)
    assert _entries(cache) == []


def test_the_cache_can_be_turned_off(tmp_path: Path) -> None:
    assert wheel_cache_dir(tmp_path) == tmp_path / "cache" / "wheels"
    assert wheel_cache_dir(tmp_path, enabled=False) is None


def kiln_build(root: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["build", "--repo", str(root), "-q"])
    assert exc.value.code == 0


def test_kiln_build_and_a_release_share_the_cache_unless_disabled(
    tmp_path: Path, builds: type[CountingBuilder], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    root = factory.sample(tmp_path / "repo")
    ws = discover(root)
    kiln_build(root)
    assert builds.calls == 1
    # The release's prepare() finds the wheel `kiln build` stored, and stages a copy.
    services = Services(FakeIndex(), FakeRegistry())
    prepared = prepare(ws, services, images=False)
    assert builds.calls == 1
    (staged,) = prepared.wheels
    assert staged.path.read_bytes() == (root / "dist" / "wheels" / staged.filename).read_bytes()
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    kiln_build(root)  # the CLI reads the variable into Options
    prepare(ws, services, images=False, wheel_cache=False)
    assert builds.calls == 3


def _no_copy(*_args: object) -> None:
    raise AssertionError("a wheel was copied out of the cache again")


def test_the_staging_folder_keeps_this_runs_wheels_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = discover(factory.sample(tmp_path / "repo"))
    services = Services(FakeIndex(), FakeRegistry())
    (staged,) = prepare(ws, services, images=False).wheels
    monkeypatch.setattr(kiln._wheels.build, "_copy_hashing", _no_copy)
    staging = staged.path.parent
    (staging / "acme_gone-0.1.0-py3-none-any.whl").write_bytes(b"a helper removed since")
    (staging / ".acme_imgproc-0.1.0-py3-none-any.whl.part").write_bytes(b"half a copy")
    (staging / "left").mkdir()
    (again,) = prepare(ws, services, images=False).wheels
    assert again == staged
    assert sorted(p.name for p in staging.iterdir()) == [staged.filename]
