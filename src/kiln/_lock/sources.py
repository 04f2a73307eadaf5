"""Which upstream file a locked pin is installed from: a wheel the lock allows, or the
sdist kiln builds into one when the pin has no wheel for the image."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from packaging.tags import Tag
from packaging.utils import InvalidSdistFilename, parse_sdist_filename

from kiln._errors import ConfigError
from kiln._lock.format import Built, Lock, Pin, committed_path, locked_name
from kiln._lock.tags import wheels_for

SDIST_SUFFIXES = (".tar.gz", ".zip")


class Pages(Protocol):
    """An index's simple API: filename -> sha256 of every file of ``project``."""

    def files(self, project: str) -> Mapping[str, str]: ...


def locked_source(
    lock: Lock,
    pin: Pin,
    pages: Sequence[tuple[str, Pages]],
    select: Callable[[Mapping[str, str]], Mapping[str, str]],
    *,
    missing: str,
) -> tuple[str, str, str]:
    """(index URL, filename, sha256) of the first index of ``pages`` (url, client) serving a
    file of ``pin`` that ``select`` picks from its simple page and whose hash the lock
    allows. An index serving only other bytes for it means the lock was edited: an error
    naming it; no index serving any is ``missing``'s error."""
    for url, client in pages:
        files = select(client.files(pin.name))
        allowed = sorted((f, sha) for f, sha in files.items() if sha in pin.hashes)
        if allowed:
            return url, *allowed[0]
        if files:
            filename, sha = sorted(files.items())[0]
            raise ConfigError(
                f"{lock.path}: {pin.requirement}: {url} serves {filename} with sha256 {sha}, "
                f"which no --hash of the lock allows: the lock was edited or is corrupt. "
                f"Restore it (`git checkout -- {committed_path(lock.path)}`) "
                f"or re-lock the package with `kiln lock {locked_name(lock.path)} --upgrade "
                f"{pin.name}`"
            )
    where = ", ".join(url for url, _ in pages)
    raise ConfigError(f"{lock.path}: {pin.requirement}: no index ({where}) {missing}")


def sdists_for(files: Mapping[str, str], pin: Pin) -> dict[str, str]:
    """The source distributions of ``pin``'s version among ``files`` (filename -> sha256)."""
    found = {}
    for filename, sha in files.items():
        if filename.endswith(SDIST_SUFFIXES):
            try:
                name, version = parse_sdist_filename(filename)
            except InvalidSdistFilename:
                continue
            if name == pin.name and str(version) == pin.version:
                found[filename] = sha
    return found


def sdist_only(
    lock_file: Path, pins: Sequence[Pin], pages: Pages, tags: frozenset[Tag], where: str
) -> dict[str, tuple[str, str]]:
    """The pins with no wheel for the target whose locked files include an sdist:
    name -> (sdist filename, sha256). A pin with neither is an error naming it."""
    found = {}
    for pin in pins:
        files = pages.files(pin.name)
        wheels = wheels_for(files, pin.name, pin.version, tags)
        if any(sha in pin.hashes for sha in wheels.values()):
            continue
        sdists = sorted((f, sha) for f, sha in sdists_for(files, pin).items() if sha in pin.hashes)
        if not sdists:
            raise ConfigError(
                f"{lock_file}: {pin.requirement} has neither a wheel for {where} nor a source "
                f"distribution on the upstream index. Pin a version of {pin.name} that ships "
                f'one (in image.toml `requirements`, e.g. "{pin.name}<{pin.version}"), or drop it'
            )
        found[pin.name] = sdists[0]
    return found


class SdistBuilds(Protocol):
    """Builds a pin's sdist into a wheel for ``kiln lock`` (``kiln._wheels.sdist``)."""

    def lock(
        self, lock_file: Path, pin: Pin, sdist: tuple[str, str], *, python: str, platform: str,
        backend: tuple[str, ...] | None,
    ) -> Built:  # fmt: skip
        """Build ``sdist`` (filename, sha256) twice with ``backend`` (None: resolve the
        sdist's build requirements) and require identical wheels."""
        ...
