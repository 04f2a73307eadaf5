"""The OS layer's filesystem as data: every entry (folder, file, symlink) by its path.

kiln never unpacks a ``.deb`` onto the build machine's disk to make the layer: the
entries of every package's ``data.tar`` and the files kiln writes itself go into one
``Tree``, which is checked (two packages shipping one path with different content is
an error naming both) and written as one deterministic tar. Paths are image paths
without the leading slash (``usr/bin/python3.11``); Debian's ``/bin``, ``/sbin``,
``/lib*`` are moved under ``/usr`` on the way in (merged /usr, as bookworm's
installations are), and the top-level links to them are entries like any other.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from kiln._util.paths import follow

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"

# Debian bookworm installs merged /usr: these top-level folders are links into /usr.
MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class Entry:
    """One path of the layer. ``owner`` is the package that ships it ("" for kiln)."""

    path: str
    kind: str
    mode: int  # permission bits, setuid/setgid/sticky included
    data: bytes = b""  # a file's content
    target: str = ""  # a symlink's target, as written
    uid: int = 0
    gid: int = 0
    owner: str = ""

    def same_content(self, other: Entry) -> bool:
        """Whether ``other`` puts the same thing at this path (its owner aside)."""
        return (self.kind, self.mode, self.data, self.target, self.uid, self.gid) == (
            other.kind,
            other.mode,
            other.data,
            other.target,
            other.uid,
            other.gid,
        )


def usr_merged(path: str) -> str:
    """``path`` (no leading slash) as a merged-/usr system holds it: ``bin/sh`` ->
    ``usr/bin/sh``, ``lib64`` -> ``usr/lib64`` (the top-level links are kiln's own
    entries, written after the packages' are moved)."""
    head = path.partition("/")[0]
    return f"usr/{path}" if head in MERGED else path


def normalize(name: str) -> str:
    """A tar member name (``./usr/bin/``) as an image path (``usr/bin``); "" for the root."""
    norm = posixpath.normpath("/" + name).lstrip("/")
    return "" if norm == "." else norm


def parents(path: str) -> Iterator[str]:
    """Every folder above ``path``, outermost first (``usr``, ``usr/bin`` for
    ``usr/bin/sh``)."""
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def resolve(tree: Mapping[str, Entry], path: str) -> str | None:
    """The path ``path`` leads to inside ``tree``, symlinks followed as they are inside
    the image (an absolute target starts again at the root); None when something on
    the way is missing or the links loop."""

    def look(here: str) -> tuple[bool, str | None]:
        entry = tree.get(here)
        if entry is None:
            return False, None
        return True, entry.target if entry.kind == SYMLINK else None

    return follow(path, look)
