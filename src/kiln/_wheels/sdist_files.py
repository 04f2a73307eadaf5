"""The files around an sdist build: unpacking the sdist, the pins a folder of backend
wheels holds, whether they meet a requirement, and how two built wheels differ."""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version


def pins_in(folder: Path) -> tuple[str, ...]:
    """``name==version`` of each wheel in ``folder``, sorted."""
    pins = []
    for path in sorted(folder.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(path.name)
        pins.append(f"{name}=={version}")
    return tuple(sorted(pins))


def satisfied(requirement: str, pins: Sequence[str]) -> bool:
    """Whether one of ``pins`` (``name==version``) meets ``requirement`` (or its marker
    leaves it out here)."""
    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate():
        return True
    versions = [p.split("==", 1) for p in pins]
    name = canonicalize_name(req.name)
    return any(
        canonicalize_name(n) == name and req.specifier.contains(Version(v), prereleases=True)
        for n, v in versions
    )


def unpack(sdist: Path, dest: Path) -> Path:
    """Unpack ``sdist`` into ``dest``; return the project folder (its one top folder)."""
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as archive:
            archive.extractall(dest)  # noqa: S202 - zipfile drops ".." and absolute paths
    else:
        with tarfile.open(sdist) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(dest, filter="data")
            else:  # pragma: no cover - Python 3.10 before 3.10.12
                archive.extractall(dest)  # noqa: S202 - the sdist's hash is the locked one
    tops = list(dest.iterdir())
    return tops[0] if len(tops) == 1 and tops[0].is_dir() else dest


def differences(first: Path, second: Path, limit: int = 5) -> list[str]:
    """What differs between two wheels, file by file (at most ``limit`` lines)."""
    try:
        with zipfile.ZipFile(first) as a, zipfile.ZipFile(second) as b:
            left = {i.filename: i for i in a.infolist()}
            right = {i.filename: i for i in b.infolist()}
            found = []
            for name in sorted(set(left) | set(right)):
                if name not in left or name not in right:
                    found.append(f"{name}: in one wheel only")
                elif a.read(name) != b.read(name):
                    found.append(f"{name}: content")
                elif (left[name].date_time, left[name].external_attr) != (
                    right[name].date_time, right[name].external_attr,
                ):  # fmt: skip
                    found.append(f"{name}: timestamp or mode")
            if not found and list(left) != list(right):
                found.append("the order of the files")
    except zipfile.BadZipFile:
        return ["not a zip file"]
    return found[:limit]
