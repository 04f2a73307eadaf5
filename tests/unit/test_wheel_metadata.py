"""What kiln reads of a wheel's own files: its import packages and its Requires-Dist,
each wheel read once until it changes."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

from kiln._wheels.metadata import _read_wheel, import_packages, wheel_metadata


def wheel(path: Path, files: Sequence[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name in files:
            zf.writestr(name, "")
    return path


def test_import_packages_are_read_from_the_wheel(tmp_path: Path) -> None:
    files = [
        "h/__init__.py", "h/sub/x.py", "solo.py", "acme_h-0.1.0.dist-info/RECORD",
        "acme_h-0.1.0.data/scripts/tool", "acme_h.pth",
    ]  # fmt: skip
    found = import_packages(wheel(tmp_path / "acme_h-0.1.0-py3-none-any.whl", files))
    assert found == ("h", "solo")


def test_a_wheel_is_read_once_until_it_changes(tmp_path: Path) -> None:
    # A release asks for every wheel's import packages once per component.
    path = wheel(tmp_path / "acme_h-0.1.0-py3-none-any.whl", ["h/__init__.py"])
    before = _read_wheel.cache_info()
    assert import_packages(path) == ("h",)
    assert import_packages(path) == ("h",)
    after = _read_wheel.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    wheel(path, ["h/__init__.py", "other/__init__.py"])  # rewritten in place
    assert import_packages(path) == ("h", "other")


def test_requires_dist_is_read_from_the_metadata_as_written(tmp_path: Path) -> None:
    path = tmp_path / "acme_h-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("h/__init__.py", "")
        meta = (
            "Name: acme-h\nRequires-Dist: numpy>=1.26\n"
            "Requires-Dist: pywin32; sys_platform == 'win32'\n"
        )
        zf.writestr("acme_h-0.1.0.dist-info/METADATA", meta)
    found = wheel_metadata(path)
    assert found.requires == ("numpy>=1.26", "pywin32; sys_platform == 'win32'")
    assert found.packages == ("h",)


def test_a_wheel_without_metadata_requires_nothing(tmp_path: Path) -> None:
    path = wheel(tmp_path / "acme_h-0.1.0-py3-none-any.whl", ["h/__init__.py"])
    assert wheel_metadata(path).requires == ()
