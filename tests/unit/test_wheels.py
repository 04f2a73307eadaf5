from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from kiln._errors import CommandFailed
from kiln._wheels.build import build_wheel
from kiln._workspace.discovery import discover
from tests import factory


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
    root = factory.sample(tmp_path / "repo")
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
    assert message.endswith(f"check with `python -m build --wheel {ws.helpers[0].path}`")
