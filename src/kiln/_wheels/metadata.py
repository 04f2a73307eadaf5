"""What a wheel says of itself, read from its zip: the top-level import packages and
modules it installs (from its file names) and its ``Requires-Dist`` (from its METADATA).

Each file is read once per process while its size and mtime stay the same: a release
asks for every wheel of the wheelhouse once per component.
"""

from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path


@dataclass(frozen=True)
class WheelMetadata:
    packages: tuple[str, ...]  # top-level import packages and modules, sorted
    requires: tuple[str, ...]  # its Requires-Dist lines as written (none without METADATA)


def wheel_metadata(wheel: Path) -> WheelMetadata:
    """The import packages and requirements of ``wheel`` (cached, see the module doc)."""
    stat = wheel.stat()
    return _read_wheel(str(wheel), stat.st_size, stat.st_mtime_ns)


def import_packages(wheel: Path) -> tuple[str, ...]:
    """The top-level import packages and modules ``wheel`` installs."""
    return wheel_metadata(wheel).packages


@functools.lru_cache(maxsize=16384)  # every wheel of a 500-helper repo's images
def _read_wheel(wheel: str, _size: int, _mtime_ns: int) -> WheelMetadata:
    found: set[str] = set()
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        text = zf.read(meta).decode("utf-8", errors="replace") if meta is not None else ""
    for name in names:
        first, slash, _rest = name.partition("/")
        if first.endswith((".dist-info", ".data")):
            continue
        if slash:
            found.add(first)
        elif first.endswith(".py"):
            found.add(first.removesuffix(".py"))
    requires = HeaderParser().parsestr(text).get_all("Requires-Dist") or []
    return WheelMetadata(tuple(sorted(found)), tuple(requires))
