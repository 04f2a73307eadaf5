"""Short-lived trees of many files go to memory when it has room, else the default."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from kiln._util import scratch


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder standing in for /dev/shm, a tmpfs with 2 GiB free."""
    folder = tmp_path / "shm"
    folder.mkdir()
    monkeypatch.setattr(scratch, "MEMORY", folder)
    monkeypatch.setattr(scratch, "_is_tmpfs", lambda f: f == folder)
    usage = shutil.disk_usage(tmp_path)

    def disk_usage(path: Any) -> Any:
        assert Path(path) == folder
        return usage._replace(free=2 << 30)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    return folder


def test_memory_is_taken_when_the_tree_fits_with_the_margin(memory: Path) -> None:
    assert scratch.scratch_folder(1 << 30, "kiln-smoke-") == memory
    assert scratch.scratch_folder((2 << 30) - scratch.MARGIN + 1, "kiln-smoke-") is None


def test_no_tmpfs_means_the_default_temporary_folder(
    memory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scratch, "_is_tmpfs", lambda _f: False)
    assert scratch.scratch_folder(1, "kiln-smoke-") is None


def test_a_killed_kiln_s_old_trees_are_removed_and_nothing_else(memory: Path) -> None:
    old, fresh, other = memory / "kiln-smoke-old", memory / "kiln-smoke-new", memory / "x-old"
    for folder in (old, fresh, other):
        (folder / "usr").mkdir(parents=True)
    hours_ago = time.time() - scratch.STALE_S - 60
    for folder in (old, other):
        os.utime(folder, (hours_ago, hours_ago))
    link = memory / "kiln-smoke-link"
    link.symlink_to(other)
    os.utime(link, (hours_ago, hours_ago), follow_symlinks=False)
    scratch.scratch_folder(1, "kiln-smoke-")
    assert sorted(p.name for p in memory.iterdir()) == [
        "kiln-smoke-link",
        "kiln-smoke-new",
        "x-old",
    ]
    assert (other / "usr").is_dir()


def test_mounts_are_read_for_a_tmpfs_at_that_folder(tmp_path: Path) -> None:
    mounts = Path("/proc/self/mounts").read_text()
    where = str(scratch.MEMORY)
    shm = any(line.split()[1:3] == [where, "tmpfs"] for line in mounts.splitlines())
    assert scratch._is_tmpfs(scratch.MEMORY) is shm
    assert scratch._is_tmpfs(tmp_path) is False
