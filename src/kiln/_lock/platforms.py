"""One lock for several platforms: the same pins for each, every platform's wheel hashed.

``kiln lock`` resolves an image for its first platform (``platform``), then for each
other one of ``platforms`` with uv's ``--python-platform``, preferring the first one's
versions (uv keeps the versions of its output file). The locks must then agree: the
same projects at the same versions. A version that still differs, or a project needed
on some platforms only (a dependency behind a ``platform_machine`` marker), is an error
naming it: one lock pins one version of each project for every platform. Each pin
allows the union of the hashes the platforms' resolutions give (uv hashes every file
of a version, so they are the same in practice). A pin with no wheel for another
platform but an sdist is an error there: kiln builds sdists on this machine, which
cannot build a foreign platform's wheel without emulation; only a pure-Python wheel
kiln built for the first platform serves every platform.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import parse_wheel_filename

from kiln._errors import ConfigError
from kiln._lock.format import Built, Pin, locked_name, logical_lines, parse_pin
from kiln._lock.sources import Pages, sdist_only
from kiln._lock.tags import supported_tags


@dataclass(frozen=True)
class Resolved:
    """One platform's resolution: its OCI name, uv's platform, and the pins uv gave."""

    oci: str  # "linux/arm64"
    platform: str  # "aarch64-manylinux_2_28"
    pins: tuple[Pin, ...]


def merged_hashes(
    path: Path, first: Resolved, others: Sequence[Resolved]
) -> dict[str, tuple[str, ...]]:
    """Canonical name -> the hashes every platform's resolution allows, once the
    resolutions agree on every project and version (else a ConfigError naming it)."""
    fix = f"in {path.parent / 'image.toml'} `requirements`" if path.parent.name != "pipelines" \
        else "in a helper's dependencies"  # fmt: skip
    hashes = {p.name: list(p.hashes) for p in first.pins}
    mine = {p.name: p.version for p in first.pins}
    for other in others:
        theirs = {p.name: p.version for p in other.pins}
        for name in sorted(set(mine) | set(theirs)):
            if name in mine and name in theirs and mine[name] != theirs[name]:
                raise ConfigError(
                    f"{path}: {name} resolves to {mine[name]} on {first.platform} and to "
                    f"{theirs[name]} on {other.platform}: a lock pins one version for every "
                    f'platform. Pin one that both offer {fix} (e.g. "{name}=={mine[name]}"), '
                    f"or drop {other.oci} from platforms"
                )
            if name not in mine or name not in theirs:
                only, on = (first, mine[name]) if name in mine else (other, theirs[name])
                raise ConfigError(
                    f"{path}: {name}=={on} is required on {only.platform} only (a dependency "
                    "marker names the platform): kiln locks the same projects for every "
                    f"platform, not yet one for some platforms only; drop {other.oci} from "
                    f"platforms, or require {name} for every platform {fix}"
                )
        for pin in other.pins:
            hashes[pin.name].extend(h for h in pin.hashes if h not in hashes[pin.name])
    return {name: tuple(sorted(found)) for name, found in hashes.items()}


def with_hashes(path: Path, body: str, hashes: Mapping[str, tuple[str, ...]]) -> str:
    """``body`` (uv's output) with each pin whose hashes are not ``hashes[name]`` written
    again with those; every other line as it was."""
    lines = body.splitlines(keepends=True)
    for start, end, line, _ in reversed(list(logical_lines(body))):
        pin = parse_pin(path, start, line, False)
        if pin.name in hashes and tuple(sorted(pin.hashes)) != hashes[pin.name]:
            lines[start - 1 : end] = [Pin(pin.name, pin.version, hashes[pin.name]).lines() + "\n"]
    return "".join(lines)


def check_foreign_wheels(
    path: Path,
    pins: Sequence[Pin],
    pages: Pages,
    *,
    python: str,
    other: Resolved,
    built: Mapping[str, Built],
) -> None:
    """A ConfigError naming the requirement and the platform when one of ``pins`` has no
    wheel for ``other`` but an sdist, unless the wheel kiln built from that sdist for the
    first platform (``built``) installs there too (a pure-Python one)."""
    tags = supported_tags(python, other.platform)
    where = f"Python {python} on {other.platform}"
    for name, sdist in sorted(sdist_only(path, pins, pages, tags, where).items()):
        wheel = built.get(name)
        if wheel is not None and parse_wheel_filename(wheel.filename)[3] & tags:
            continue
        pin = next(p for p in pins if p.name == name)
        raise ConfigError(
            f"{path}: {pin.requirement} has no wheel for {where} ({other.oci}), only its sdist "
            f"{sdist[0]}: kiln cannot build it for a foreign platform without emulation. Pin "
            f"a version of {name} that ships such a wheel, or drop {other.oci} from platforms "
            f"(`kiln lock {locked_name(path)}` again after)"
        )
