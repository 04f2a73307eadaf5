"""The wheel caches (wheelhouse, helper wheels, wheels built from sdists): an entry that
no longer has the sha256 it promises is discarded and fetched or built again, with one
line saying so; the lock is blamed only for a file fetched just now."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._util.files import sha256_file
from kiln._wheels.build import build_wheel, cache_key
from kiln._wheels.sdist_cache import SdistCache
from kiln._wheels.wheelhouse import fetch_locked
from kiln._workspace.discovery import discover
from kiln._workspace.model import Workspace
from tests import factory
from tests.damage import flip_a_byte, replace_file
from tests.unit.fakes import UPSTREAM, fake_sha, fake_upstream
from tests.unit.test_lock import RecordingDownload, _written


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return discover(factory.sample(tmp_path / "repo"))


# ------------------------------------------------------------------ the wheelhouse
@pytest.mark.parametrize("damage", ["truncated", "same size"])
def test_a_damaged_wheel_in_the_wheelhouse_is_downloaded_again(
    ws: Workspace, tmp_path: Path, damage: str
) -> None:
    lock = _written(ws)
    pages = [(UPSTREAM, fake_upstream(("numpy", "1.0"), ("kfp", "2.17.3")))]
    cache, download, lines = tmp_path / "cache", RecordingDownload(), list[str]()
    first = fetch_locked(lock, pages=pages, cache_dir=cache, download=download)
    numpy = next(w for w in first if w.name == "numpy")
    data = numpy.path.read_bytes()
    replace_file(numpy.path, data[:3] if damage == "truncated" else data[::-1])

    again = fetch_locked(lock, pages=pages, cache_dir=cache, download=download, note=lines.append)

    assert [(w.name, w.sha256) for w in again] == [
        ("kfp", fake_sha("kfp", "2.17.3")),
        ("numpy", fake_sha("numpy", "1.0")),
    ]
    assert len(download.asked) == 2  # fetched again, once
    (line,) = lines
    assert line.startswith(f"wheelhouse cache {cache / lock.sha256[:16]}: {numpy.filename} (")
    assert line.endswith("did not match the lock's sha256; discarded, downloading again")
    assert sorted(p.name for p in cache.iterdir()) == [lock.sha256[:16]]  # nothing left aside
    assert fetch_locked(lock, pages=pages, cache_dir=cache, download=download) == again
    assert len(download.asked) == 2


def test_a_wheel_fetched_just_now_that_the_lock_does_not_allow_blames_the_lock(
    ws: Workspace, tmp_path: Path
) -> None:
    lock = _written(ws)
    pages = [(UPSTREAM, fake_upstream(("numpy", "1.0"), ("kfp", "2.17.3")))]
    cache, lines = tmp_path / "cache", list[str]()
    fetch_locked(lock, pages=pages, cache_dir=cache, download=RecordingDownload())
    for wheel in (cache / lock.sha256[:16]).glob("numpy-*.whl"):
        replace_file(wheel, b"damaged")

    def serving_other_bytes(lock: object, pins: object, *, index_url: str, dest: Path) -> None:
        for name, version in (("numpy", "1.0"), ("kfp", "2.17.3")):
            (dest / f"{name}-{version}-py3-none-any.whl").write_bytes(b"other bytes")

    with pytest.raises(ConfigError, match=r"numpy==1.0: fetched numpy-1.0-py3-none-any.whl"):
        fetch_locked(
            lock, pages=pages, cache_dir=cache, download=serving_other_bytes, note=lines.append
        )
    assert len(lines) == 1  # the cache was blamed first, and discarded


# ------------------------------------------------------------------ helper wheels
@pytest.mark.parametrize("damage", ["truncated", "same size"])
def test_a_damaged_helper_wheel_in_the_cache_is_rebuilt_never_copied_out(
    tmp_path: Path, damage: str
) -> None:
    helper = discover(factory.sample(tmp_path / "repo")).helpers[0]
    cache, lines = tmp_path / "cache", list[str]()
    first = build_wheel(helper, tmp_path / "a", cache_dir=cache)
    entry = cache / cache_key(helper)
    kept = entry / first.filename
    data = kept.read_bytes()
    replace_file(kept, data[:100] if damage == "truncated" else flip_a_byte(data))

    again = build_wheel(helper, tmp_path / "b", cache_dir=cache, note=lines.append)

    assert again.path.read_bytes() == first.path.read_bytes()
    assert again.sha256 == first.sha256
    (line,) = lines
    assert line.startswith(f"wheel cache entry {entry} did not match its key ({first.filename}")
    assert line.endswith("); rebuilt")
    assert sha256_file(kept) == first.sha256  # the entry is whole again
    build_wheel(helper, tmp_path / "c", cache_dir=cache, note=lines.append)
    assert len(lines) == 1


# ------------------------------------------------------------------ wheels built from sdists
@pytest.mark.parametrize("damaged", ["wheel", "sdist"])
def test_a_damaged_sdist_cache_entry_is_discarded_with_one_line(
    tmp_path: Path, damaged: str
) -> None:
    made = tmp_path / "made"
    made.mkdir()
    wheel = made / "tiny-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes " * 100)
    sdist = made / "tiny-1.0.tar.gz"
    sdist.write_bytes(b"sdist bytes " * 100)
    lines: list[str] = []
    cache = SdistCache(tmp_path / "cache", note=lines.append)
    kept = cache.store("k" * 64, wheel, [sdist])
    assert cache.get("k" * 64) == kept
    path = kept.path if damaged == "wheel" else kept.sources[0].path
    replace_file(path, flip_a_byte(path.read_bytes()))

    assert cache.get("k" * 64) is None
    (line,) = lines
    entry = tmp_path / "cache" / ("k" * 64)
    assert line == (
        f"sdist wheel cache entry {entry} did not match its record ({path.name} has another "
        "sha256); rebuilt"
    )
    assert not entry.exists()  # discarded: the next store starts clean
    assert cache.get("k" * 64) is None
    assert len(lines) == 1


def test_a_fetch_sweeps_what_a_killed_kiln_left_a_day_ago_not_a_fetch_at_work(
    ws: Workspace, tmp_path: Path
) -> None:
    """SIGKILL runs no cleanup: the temporary folder of an interrupted fetch (~50 MB) was
    left in .kiln/wheelhouse for good. The next fetch removes those untouched for a day,
    and leaves a younger one alone (another kiln's, still fetching)."""
    lock = _written(ws)
    pages = [(UPSTREAM, fake_upstream(("numpy", "1.0"), ("kfp", "2.17.3")))]
    cache = tmp_path / "cache"
    killed, working = cache / ".tmp-0123456789abcdef-killed", cache / ".tmp-abc-working"
    for folder in (killed, working):
        (folder / "wheels").mkdir(parents=True)
        (folder / "wheels" / "numpy-1.0-py3-none-any.whl").write_bytes(b"half")
    day_ago = time.time() - 25 * 3600
    os.utime(killed, (day_ago, day_ago))

    fetch_locked(lock, pages=pages, cache_dir=cache, download=RecordingDownload())

    assert sorted(p.name for p in cache.iterdir()) == [working.name, lock.sha256[:16]]
