"""What the folders kiln reads hold, checked before anything reads them.

A helper's files go into its wheel on the index and into every image that has it, so
a symbolic link there would publish whatever it points to (``/etc/passwd``, a CI
runner's ``~/.netrc``). A wheel holds no links (hatchling copies the file a link names),
so a helper holds none at all: a link inside the folder is a second copy of a file, one
leaving it a leak. Image folders and ``pipelines/`` are read (their TOML, locks and
modules), not packed: a link there may point inside its folder, never out of it, and
must lead somewhere. FIFOs, sockets and devices are refused everywhere (reading one
blocks or reads a device). The walk skips what never reaches a wheel, the same folders
the wheel cache skips: caches, virtual environments, VCS folders, build outputs.

Files above a size limit in a helper are reported, not refused: they are published and
baked into images, which is sometimes meant (a small model), often not.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kiln._errors import ConfigError
from kiln._util.paths import stays_inside

# Never part of a wheel: hatchling always skips these folders (plus test and packaging
# caches that .gitignore files exclude); build outputs only at the folder's top level,
# since a package may well have a `build` subpackage.
SKIP_DIRS = frozenset(
    {
        "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
        ".git", ".hg", ".venv", ".tox", ".nox", ".hatch", ".pixi",
    }
)  # fmt: skip
SKIP_TOP_DIRS = frozenset({"build", "dist"})
SKIP_SUFFIXES = (".pyc", ".pyo")  # hatchling excludes them too

DEFAULT_MAX_FILE_MIB = 10
MAX_FILE_SETTING = "max-file-size-mib"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Limit:
    """The size above which a helper's file is reported, and where to raise it."""

    mib: int
    setting: str  # e.g. "[tool.kiln] max-file-size-mib in pyproject.toml"


def entries(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry under ``root`` that can reach a wheel (links not followed), its path
    as a string, with its ``lstat``, in a fixed order: a folder's entries sorted by name,
    then each of its subfolders in that order (as ``os.walk`` goes, an unreadable folder
    skipped)."""
    return _walk(str(root), top=True)


def _walk(folder: str, *, top: bool) -> Iterator[tuple[str, os.stat_result]]:
    """``entries`` on paths as strings, from one ``scandir`` per folder: its entries
    carry their type, so no path object or second ``stat`` is made per file (9000 of
    them over 500 helpers, walked by every discovery)."""
    try:
        with os.scandir(folder) as scan:
            found = sorted(scan, key=lambda e: e.name)
    except OSError:
        return
    skip_top = SKIP_TOP_DIRS if top else frozenset()
    subfolders = []
    for entry in found:
        name = entry.name
        try:
            is_dir = entry.is_dir()  # through a link, as os.walk sorts names
        except OSError:
            is_dir = False
        if is_dir:
            if name in SKIP_DIRS or name in skip_top or name.endswith(".egg-info"):
                continue
            subfolders.append(entry)
        elif name.endswith(SKIP_SUFFIXES):
            continue
        yield entry.path, entry.stat(follow_symlinks=False)
    for entry in subfolders:
        if not entry.is_symlink():  # a link is yielded above, never followed
            yield from _walk(entry.path, top=False)


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def _link_target(path: Path, top: str) -> tuple[str, str | None]:
    """What the link ``path`` points to (as written) and, when it cannot be kept, why."""
    written = str(path.readlink())
    try:
        os.path.realpath(path, strict=True)
    except FileNotFoundError:
        return written, "which does not exist (a dangling link)"
    except OSError:
        return written, "which is a loop of links"
    if not stays_inside(path, top):
        return written, f"which resolves to {os.path.realpath(path)!r}, outside {top!r}"
    return written, None


def _special(path: Path, mode: int) -> ConfigError:
    kind = (
        "a FIFO" if stat.S_ISFIFO(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )  # fmt: skip
    return ConfigError(
        f"{_q(path)} is {kind}: kiln reads and publishes regular files only; delete it "
        f"(`rm {_q(path)}`) or move it out of the repository"
    )


def check_helper_tree(root: Path) -> tuple[tuple[str, int], ...]:
    """Refuse every link and special file under the helper folder ``root`` (itself no
    link); its files (paths as strings: 1500 at N=500, shown only when oversized) with
    their sizes."""
    refuse_link(root)
    top = os.path.realpath(root)
    files = []
    for name, st in entries(root):
        if stat.S_ISLNK(st.st_mode):
            path = Path(name)
            written, why = _link_target(path, top)
            where = (
                why
                or "inside the helper: a wheel holds no links, hatchling would copy the "
                "file it names twice"
            )
            raise ConfigError(
                f"{_q(path)} is a symbolic link to {written!r}, {where}; a helper's files "
                "are published in its wheel and baked into images, so kiln takes no links "
                f"there: remove it (`git rm {_q(path)}`) and commit the file it should ship "
                "in its place"
            )
        if stat.S_ISDIR(st.st_mode):
            continue
        if not stat.S_ISREG(st.st_mode):
            raise _special(Path(name), st.st_mode)
        files.append((name, st.st_size))
    return tuple(files)


def oversized(files: tuple[tuple[str, int], ...], limit: Limit) -> tuple[str, ...]:
    """A warning for each of a helper's ``files`` above ``limit``."""
    return tuple(
        f"{_q(path)} is {size / MIB:.1f} MiB, over the {limit.mib} MiB limit for a helper's "
        "file: it is published in the wheel and baked into every image with this helper; "
        f"move it out of the helper (fetch it at run time), or raise {limit.setting}"
        for path, size in files
        if size > limit.mib * MIB
    )


def refuse_link(folder: Path) -> None:
    """A folder kiln reads (``helpers/x``, ``images/``, ``pipelines/``) is no link."""
    if folder.is_symlink():
        raise ConfigError(
            f"{_q(folder)} is a symbolic link to {str(folder.readlink())!r}: kiln reads this "
            f"folder as committed files; replace the link with the folder (`git rm "
            f"{_q(folder)}`, then commit the folder itself)"
        )


def check_read_tree(root: Path) -> None:
    """Refuse links under ``root`` (an image folder, ``pipelines/``) that leave it, dangle
    or loop, and special files; ``root`` itself must not be a link."""
    refuse_link(root)
    if not root.is_dir():
        return
    top = os.path.realpath(root)
    for name, st in entries(root):
        if stat.S_ISLNK(st.st_mode):
            path = Path(name)
            written, why = _link_target(path, top)
            if why is not None:
                raise ConfigError(
                    f"{_q(path)} is a symbolic link to {written!r}, {why}; kiln reads "
                    "what it names into what it publishes: remove it (`git rm "
                    f"{_q(path)}`) and commit the file itself in its place"
                )
        elif not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):
            raise _special(Path(name), st.st_mode)
