"""Which wheels install on an image: its Python and platform as wheel tags."""

from __future__ import annotations

from collections.abc import Mapping

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename


def wheel_platforms(platform: str) -> list[str]:
    """Wheel platform tags that run on ``platform`` ("x86_64-manylinux_2_28"), best first."""
    arch, _, manylinux = platform.partition("-")
    glibc = int(manylinux.rsplit("_", 1)[1])
    plats = [f"manylinux_2_{m}_{arch}" for m in range(glibc, 4, -1)]
    legacy = (("manylinux2014", 17), ("manylinux2010", 12), ("manylinux1", 5))
    return plats + [f"{alias}_{arch}" for alias, minor in legacy if minor <= glibc]


def supported_tags(python: str, platform: str) -> frozenset[Tag]:
    """Wheel tags a CPython ``python`` on ``platform`` installs."""
    plats = wheel_platforms(platform)
    version = tuple(int(p) for p in python.split("."))
    return frozenset(
        [*cpython_tags(version, platforms=plats), *compatible_tags(version, platforms=plats)]
    )


def wheels_for(
    files: Mapping[str, str], name: str, version: str, tags: frozenset[Tag]
) -> dict[str, str]:
    """The files of ``name`` ``version`` among ``files`` (filename -> sha256) that are wheels
    installable with ``tags``."""
    found = {}
    for filename, sha in files.items():
        if not filename.endswith(".whl"):
            continue
        found_name, found_version, _build, wheel_tags = parse_wheel_filename(filename)
        if found_name == name and str(found_version) == version and wheel_tags & tags:
            found[filename] = sha
    return found
