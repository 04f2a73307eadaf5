"""`kiln lock` end to end: real uv against the upstream index, then a release that
refuses a lock whose hash no index serves, before anything is uploaded or pushed."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from kiln._lock.format import parse_lock
from tests.e2e.test_release_local import index_state, registry_state
from tests.e2e.tools import Repo

pytestmark = pytest.mark.e2e


def test_lock_pins_every_file_by_hash_and_is_deterministic(scratch: Repo) -> None:
    path = scratch.root / "images" / "base" / "requirements.lock"
    committed = path.read_text()
    try:
        first = scratch.kiln("lock", "base")
        assert first.returncode == 0, first.stderr
        text = path.read_text()
        second = scratch.kiln("lock", "base")
        assert second.returncode == 0, second.stderr
        assert path.read_text() == text  # same inputs, same bytes
    finally:
        path.write_text(committed)

    lock = parse_lock(path, text)  # refuses any line without a hash
    assert {p.name for p in lock.pins} >= {"numpy", "kfp"}
    assert all(p.hashes for p in lock.pins)
    assert [p.name for p in lock.pins if p.no_deps] == ["kfp"]
    # kfp's client dependencies are not locked: the executor needs none of them.
    assert not {"kubernetes", "google-cloud-storage", "kfp-server-api"} & {
        p.name for p in lock.pins
    }
    requirement_lines = [
        line for line in text.splitlines() if line and not line.startswith((" ", "#"))
    ]
    assert all(line.endswith(" \\") for line in requirement_lines)  # each has --hash lines
    assert str(scratch.root) not in text


def test_check_names_a_stale_lock_and_the_fix(scratch: Repo) -> None:
    assert scratch.kiln("lock", "--check").returncode == 0
    config = scratch.root / "images" / "base" / "image.toml"
    original = config.read_text()
    config.write_text(original.replace("requirements = []", 'requirements = ["six"]'))
    try:
        proc = scratch.kiln("lock", "--check")
        release = scratch.kiln("release", "--local", "--dry-run")
    finally:
        config.write_text(original)
    assert proc.returncode == 3
    assert "images/base/requirements.lock: stale" in proc.stderr
    assert "run `kiln lock base`" in proc.stderr
    assert release.returncode == 3
    assert "images/base/requirements.lock: stale" in release.stderr


def test_a_hand_edited_hash_stops_the_release_before_anything_is_written(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    path = scratch.root / "images" / "base" / "requirements.lock"
    committed = path.read_text()
    page = requests.get(f"{scratch.index_url}/simple/kfp/", timeout=10).text
    (kfp,) = [p.version for p in parse_lock(path, committed).pins if p.name == "kfp"]
    wheel = re.escape(f"kfp-{kfp}-py3-none-any.whl")
    (mirrored,) = re.findall(rf"{wheel}#sha256=([0-9a-f]{{64}})", page)
    assert mirrored in committed
    before = (index_state(scratch), registry_state(scratch))
    path.write_text(committed.replace(mirrored, "0" * 64))
    try:
        proc = scratch.kiln("release", "--local")
    finally:
        path.write_text(committed)
    assert proc.returncode == 3, proc.stderr
    assert f"images/base/requirements.lock: kfp=={kfp}" in proc.stderr
    assert f"sha256 {mirrored}" in proc.stderr
    assert "kiln lock base --upgrade kfp" in proc.stderr
    assert (index_state(scratch), registry_state(scratch)) == before
