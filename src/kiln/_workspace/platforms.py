"""The platforms an image is made for: ``platforms`` in ``[tool.kiln]``, image.toml or
``[tool.kiln.packages]``, as OCI platforms (``"linux/amd64"``), checked.

Each platform has a Debian architecture (its OS closure in images/os.lock) and a wheel
architecture (what ``kiln lock`` resolves for: ``uv pip compile --python-platform
<arch>-manylinux_2_<N>``, N from the image's ``platform``). The first platform is the
one the image's ``platform`` names; the others are locked too (every platform's wheels,
same versions), and images are still released for the first only (``_images.oci.multiarch``
builds each one, not wired into the release yet).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kiln._debian.config import OsConfig
from kiln._errors import ConfigError
from kiln._util.toml import get_str

# OCI platform -> (Debian architecture, wheel architecture).
PLATFORMS = {"linux/amd64": ("amd64", "x86_64"), "linux/arm64": ("arm64", "aarch64")}
DEFAULT_PLATFORMS = ("linux/amd64",)
# The platform an image's wheels are locked for (uv's --python-platform): glibc 2.28 wheels
# run on kiln's OS base (Debian bookworm: glibc 2.36) and on python:3.11-slim.
DEFAULT_PLATFORM = "x86_64-manylinux_2_28"
KEY = "platforms"


def read_platforms(
    table: dict[str, Any], path: Path, section: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    """``table``'s ``platforms`` (``default`` when absent): a non-empty list of platforms
    kiln builds, each once."""
    if KEY not in table:
        return default
    value = table[KEY]
    known = ", ".join(repr(p) for p in PLATFORMS)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{path}: [{section}] platforms = {value!r}: write a non-empty list of platforms, "
            f'e.g. platforms = ["linux/amd64", "linux/arm64"] (kiln builds {known})'
        )
    for platform in value:
        if platform not in PLATFORMS:
            raise ConfigError(
                f"{path}: [{section}] platforms lists {platform!r}, which kiln does not build; "
                f"use {known}"
            )
    doubled = sorted({p for p in value if value.count(p) > 1})
    if doubled:
        raise ConfigError(
            f"{path}: [{section}] platforms lists {', '.join(doubled)} more than once; "
            "list each platform once"
        )
    return tuple(value)


def wheel_arch(platform: str) -> str:
    """The wheel architecture of OCI ``platform``: "linux/arm64" -> "aarch64"."""
    return PLATFORMS[platform][1]


def python_platform(first: str, platform: str) -> str:
    """uv's ``--python-platform`` for OCI ``platform``, at the glibc of ``first`` (the
    image's ``platform``): ("x86_64-manylinux_2_28", "linux/arm64") -> "aarch64-manylinux_2_28"."""
    return f"{wheel_arch(platform)}-{first.partition('-')[2]}"


def image_platforms(
    table: dict[str, Any],
    config: Path,
    section: str,
    *,
    default: tuple[str, ...],
    os: OsConfig,
    base: str | None,
) -> tuple[str, tuple[str, ...]]:
    """(``platform``, ``platforms``) of an image's ``table`` (``default``: [tool.kiln]'s
    platforms), checked against each other and, on kiln's OS base (``base`` None), against
    the architectures images/os.lock locks."""
    platforms = read_platforms(table, config, section, default)
    # What the image's wheels are locked for (`kiln lock`): "<arch>-manylinux_2_<glibc minor>",
    # no newer than the base's glibc; the first platform's architecture.
    first = python_platform(DEFAULT_PLATFORM, platforms[0])
    platform = get_str(table, "platform", config, section, default=first)
    where = config if section == "image" else f"{config} [{section}]"
    if not re.fullmatch(r"(x86_64|aarch64)-manylinux_2_\d+", platform):
        raise ConfigError(
            f"{where}: platform = {platform!r}; use '<arch>-manylinux_2_<N>' with arch x86_64 "
            f"or aarch64 and N the base image's glibc minor version or lower, e.g. {first!r}"
        )
    check_platforms(platforms, platform, os, where, base)
    return platform, platforms


def check_platforms(
    platforms: tuple[str, ...], first: str, os: OsConfig, config: Path | str, base: str | None
) -> None:
    """A ConfigError naming ``config`` and the fix when the image's ``platform`` (``first``)
    is not the first platform's architecture, or, for an image on kiln's OS base (``base``
    None), a platform whose architecture images/os.lock does not lock."""
    arch = first.partition("-")[0]
    if arch != wheel_arch(platforms[0]):
        raise ConfigError(
            f"{config}: platform = {first!r} is for {arch}, and the first of platforms is "
            f"{platforms[0]!r} ({wheel_arch(platforms[0])}): make them agree (platform = "
            f"{python_platform(first, platforms[0])!r}, or put the {arch} platform first)"
        )
    if base is not None:
        return
    where = os.path if os.path is not None else "pyproject.toml"
    for platform in platforms:
        debian = PLATFORMS[platform][0]
        if debian not in os.architectures:
            locked = ", ".join(repr(a) for a in os.architectures)
            raise ConfigError(
                f"{config}: platforms lists {platform!r}, and kiln's OS base is locked for "
                f"{locked} only ({where} [tool.kiln.os] architectures): add {debian!r} to "
                f"architectures and run `kiln lock`, or drop {platform!r} from platforms"
            )
