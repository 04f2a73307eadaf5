"""The wheelhouse of one platform of a lock for several: that platform's wheels, each
with a hash the lock allows for its pin, cached apart from the first platform's."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._lock.format import BasePin, Lock, Pin
from kiln._wheels.wheelhouse import PipDownload, fetch_locked
from tests.unit.fakes import UPSTREAM, FakeIndex, FakePip

AMD, ARM = "x86_64-manylinux_2_28", "aarch64-manylinux_2_28"


def _wheel(arch: str) -> tuple[str, bytes]:
    return f"numpy-1.0-cp311-cp311-manylinux_2_28_{arch}.whl", f"numpy for {arch}".encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _lock(tmp_path: Path, *, arm_hash: str | None = None) -> Lock:
    hashes = (_sha(_wheel("x86_64")[1]), arm_hash or _sha(_wheel("aarch64")[1]))
    return Lock(
        path=tmp_path / "images" / "base" / "requirements.lock",
        inputs="inputs",
        python="3.11",
        platform=AMD,
        kfp="2.17.3",
        base=BasePin(ref="debian", kind="os"),
        pins=(Pin("numpy", "1.0", tuple(sorted(hashes))),),
        sha256="ab" * 32,
        platforms=(AMD, ARM),
    )


def _pages() -> list[tuple[str, FakeIndex]]:
    index = FakeIndex(url=UPSTREAM)
    for arch in ("x86_64", "aarch64"):
        name, data = _wheel(arch)
        index.published.setdefault("numpy", {})[name] = _sha(data)
    return [(UPSTREAM, index)]


class PlatformDownload:
    """Writes the wheel of the platform the lock is read for (what pip's --platform
    options fetch), and records that platform."""

    def __init__(self) -> None:
        self.platforms: list[str] = []

    def __call__(self, lock: Lock, pins: Sequence[Pin], *, index_url: str, dest: Path) -> None:
        self.platforms.append(lock.platform)
        name, data = _wheel(lock.platform.partition("-")[0])
        (dest / name).write_bytes(data)


def test_each_platform_gets_its_own_wheels_hash_checked_and_cached_apart(
    tmp_path: Path,
) -> None:
    lock, cache, download = _lock(tmp_path), tmp_path / "cache", PlatformDownload()

    amd = fetch_locked(lock, pages=_pages(), cache_dir=cache, download=download)
    arm = fetch_locked(lock, pages=_pages(), cache_dir=cache, download=download, platform=ARM)

    assert [w.filename for w in amd] == [_wheel("x86_64")[0]]
    assert [w.filename for w in arm] == [_wheel("aarch64")[0]]
    assert arm[0].sha256 == _sha(_wheel("aarch64")[1]) != amd[0].sha256
    # The first platform's folder is named as it always was; the other one's adds its arch.
    assert sorted(p.name for p in cache.iterdir()) == [
        lock.sha256[:16],
        f"{lock.sha256[:16]}-aarch64",
    ]
    assert (
        fetch_locked(lock, pages=_pages(), cache_dir=cache, download=download, platform=ARM) == arm
    )
    assert (
        fetch_locked(lock, pages=_pages(), cache_dir=cache, download=download, platform=AMD) == amd
    )
    assert download.platforms == [AMD, ARM]  # each fetched once, then from its cache


def test_a_foreign_wheel_whose_hash_the_lock_does_not_allow_is_refused(tmp_path: Path) -> None:
    lock = _lock(tmp_path, arm_hash="0" * 64)  # the lock allows another aarch64 file
    pages = _pages()
    pages[0][1].published["numpy"][_wheel("aarch64")[0]] = "0" * 64  # as the index says
    with pytest.raises(ConfigError, match=r"numpy==1.0: fetched numpy-1.0-cp311-cp311-many"):
        fetch_locked(
            lock, pages=pages, cache_dir=tmp_path / "c", download=PlatformDownload(), platform=ARM
        )


def test_a_platform_the_lock_does_not_cover_names_the_lock_and_the_fix(tmp_path: Path) -> None:
    lock = _lock(tmp_path)
    with pytest.raises(
        ConfigError, match=r"not ppc64le-manylinux_2_28; add the platform.*kiln lock base"
    ):
        fetch_locked(
            lock, pages=_pages(), cache_dir=tmp_path / "c", download=PlatformDownload(),
            platform="ppc64le-manylinux_2_28",
        )  # fmt: skip


def test_pip_downloads_the_aarch64_wheels_of_an_arm64_wheelhouse(tmp_path: Path) -> None:
    lock, pip = _lock(tmp_path), FakePip()
    pages, cache = _pages(), tmp_path / "cache"
    with pytest.raises(ConfigError):  # FakePip writes a pure wheel, which the lock refuses
        fetch_locked(lock, pages=pages, cache_dir=cache, download=PipDownload(pip), platform=ARM)
    (argv,) = pip.calls
    platforms = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--platform"]
    assert platforms[0] == "manylinux_2_28_aarch64"
    assert all(p.endswith("_aarch64") for p in platforms)


def test_an_index_without_the_platform_s_wheel_is_named_before_anything_is_fetched(
    tmp_path: Path,
) -> None:
    lock, pages, download = _lock(tmp_path), _pages(), PlatformDownload()
    del pages[0][1].published["numpy"][_wheel("aarch64")[0]]  # only the x86_64 wheel
    with pytest.raises(ConfigError, match=r"numpy==1.0: no index .* on aarch64-manylinux_2_28"):
        fetch_locked(lock, pages=pages, cache_dir=tmp_path / "c", download=download, platform=ARM)
    assert download.platforms == []
    fetch_locked(lock, pages=pages, cache_dir=tmp_path / "c", download=download)  # amd64: fine
