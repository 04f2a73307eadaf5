"""The cache of wheels kiln built from sdists: keyed by what decides the wheel's bytes,
kept with the files each came from (its sdist, its backend's wheels), every file's
sha256 recorded and checked on each read: an entry that does not check out is
discarded and built again, with one line saying so.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import parse_sdist_filename, parse_wheel_filename

from kiln._errors import CommandFailed
from kiln._lock.format import Pin
from kiln._util.epoch import SOURCE_DATE_EPOCH
from kiln._util.files import sha256_file

CACHE_FORMAT = "1"
# What every build runs with, besides the venv: part of the cache key.
BUILD_ENV = {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONHASHSEED": "0"}
_RECORD = "record.json"


@dataclass(frozen=True)
class SourceFile:
    """A file a built wheel came from (its sdist, a backend wheel): mirrored at release."""

    name: str  # canonical project name
    version: str
    path: Path
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class SdistWheel:
    """A wheel kiln built from a pin's sdist, kept in the cache with its sources."""

    name: str
    version: str
    path: Path
    sha256: str
    sources: tuple[SourceFile, ...]


def cache_key(pin: Pin, python: str, backend: Sequence[str]) -> str:
    """sha256 over what decides the built wheel's bytes: the sdist (as the pin's locked
    hashes), the Python, the backend, the build environment and this cache's format."""
    env = [f"{k}={v}" for k, v in sorted(BUILD_ENV.items())]
    fields = ["kiln sdist wheel", CACHE_FORMAT, pin.name, pin.version, *sorted(pin.hashes)]
    fields += [python, *sorted(backend), *env]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


class SdistCache:
    """Built wheels by key (``cache_key``), each in its own folder with the files it came
    from and a record of every file's sha256; an entry whose files differ is a miss."""

    def __init__(self, cache_dir: Path, *, note: Callable[[str], None] | None = None) -> None:
        """``note``: where the one line goes that says a damaged entry was discarded."""
        self._cache_dir = cache_dir
        self._note = note or (lambda _line: None)

    def store(self, key: str, wheel: Path, sources: Sequence[Path]) -> SdistWheel:
        """Keep ``wheel`` and its ``sources`` under ``key`` (replaced whole); the entry."""
        entry = self._cache_dir / key
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".tmp-", dir=self._cache_dir) as tmp:
            staged = Path(tmp) / "entry"
            (staged / "sources").mkdir(parents=True)
            shutil.copy2(wheel, staged / wheel.name)
            for path in sources:
                shutil.copy2(path, staged / "sources" / path.name)
            record = {
                "wheel": [wheel.name, sha256_file(wheel)],
                "sources": sorted([p.name, sha256_file(p)] for p in sources),
            }
            (staged / _RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            shutil.rmtree(entry, ignore_errors=True)
            staged.rename(entry)
        kept = self.get(key)
        if kept is None:  # pragma: no cover - written just now
            raise CommandFailed(f"the sdist wheel cache {self._cache_dir} is not writable")
        return kept

    def get(self, key: str) -> SdistWheel | None:
        """The entry under ``key`` when every file in it has its recorded sha256; one that
        has not is discarded (to be built again), with one line saying so."""
        entry = self._cache_dir / key
        if not entry.is_dir():
            return None
        try:
            found = self._read(entry)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            found = f"{type(exc).__name__}: {exc}"
        if isinstance(found, SdistWheel):
            return found
        self._note(f"sdist wheel cache entry {entry} did not match its record ({found}); rebuilt")
        shutil.rmtree(entry, ignore_errors=True)
        return None

    @staticmethod
    def _read(entry: Path) -> SdistWheel | str:
        """The entry, or which of its files does not have its recorded sha256."""
        record = json.loads((entry / _RECORD).read_text(encoding="utf-8"))
        filename, sha = record["wheel"]
        sources = []
        for source, source_sha in record["sources"]:
            path = entry / "sources" / Path(source).name
            if sha256_file(path) != source_sha:
                return f"{path.name} has another sha256"
            sources.append(_source_file(path, source_sha))
        wheel = entry / Path(filename).name
        if sha256_file(wheel) != sha:
            return f"{wheel.name} has another sha256"
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
        return SdistWheel(str(name), str(version), wheel, sha, tuple(sources))


def _source_file(path: Path, sha256: str) -> SourceFile:
    if path.name.endswith(".whl"):
        name, version, _build, _tags = parse_wheel_filename(path.name)
    else:
        name, version = parse_sdist_filename(path.name)
    return SourceFile(str(name), str(version), path, sha256)
