"""Following symlinks the way they are followed inside an image, wherever its tree lies;
and whether a path on this machine stays inside an unpacked tree."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

MAX_LINKS = 40  # as the kernel's ELOOP limit, roughly: more means a loop

# What a step of the path is: (it exists, its target when it is a symlink).
Look = Callable[[str], tuple[bool, str | None]]


def follow(path: str, look: Look) -> str | None:
    """``path`` (an image path) with every symlink on the way followed as inside the
    image, an absolute target starting again at its root; ``look(p)`` tells what the
    image path ``p`` is. The resolved path without its leading slash; None when a step is
    missing or the links loop."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        exists, target = look("/".join([*done, part]))
        if not exists:
            return None
        if target is not None:
            links += 1
            if links > MAX_LINKS:
                return None
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        done.append(part)
    return "/".join(done)


def stays_inside(path: Path, top: str) -> bool:
    """Whether ``path``, its symlinks resolved on this machine, is ``top`` or below it
    (``top`` a real path: ``os.path.realpath`` of the tree's folder)."""
    real = os.path.realpath(path)
    return real == top or real.startswith(top + os.sep)
