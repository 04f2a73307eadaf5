"""One lock per checkout: ``<checkout>/.kiln/lock``, held by a run that writes.

``kiln release`` (every mode), ``components``, ``lock``, ``bump``, ``new``, ``build``,
``publish``, ``bake`` and ``stack up``/``down`` hold it, so two of them in one checkout
never interleave: never two stacks started on one data folder, never a YAML read while
another run writes it, never two runs replacing one log. A second run waits for the
first, saying so in one line, up to ``WAIT_LIMIT`` seconds, then stops with the holder's
pid and command.

It is an ``flock``: the kernel releases it when its holder ends, however it ends
(SIGKILL too), so a lock is never stale; the file only tells a waiter who holds it. The
lock is re-entrant within a thread (``kiln release --local`` starts the stack under its
own hold), and its descriptor is not inherited by the programs kiln starts (a server
``stack up`` leaves running must not keep the checkout locked).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from kiln._errors import ServiceUnavailable

LOCK_NAME = "lock"
WAIT_LIMIT = 3600.0  # a cold release with several images can take a long while
_POLL = (0.05, 0.5)  # first and longest pause between tries

# (lock path, thread) -> how many nested holds, for re-entry
_HELD: dict[tuple[Path, int], int] = {}


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says ("pid N, `kiln release`")."""
    pid, _sep, what = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip().partition(" ")
    if not pid.isdigit():
        return "pid unknown"
    return f"pid {pid}, `{what}`" if what else f"pid {pid}"


@contextlib.contextmanager
def checkout_lock(
    state_dir: Path,
    what: str,
    *,
    echo: Callable[[str], None],
    wait: float = WAIT_LIMIT,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Hold ``state_dir``/lock (``state_dir`` made if missing) while the block runs;
    ``what`` (the command) is recorded for a waiter's message, ``echo`` says once that
    this run waits. ``ServiceUnavailable`` when the holder keeps it past ``wait`` s."""
    path = (state_dir / LOCK_NAME).resolve()  # one key however the path is spelled
    key = (path, threading.get_ident())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _acquire(fd, path, echo=echo, wait=wait, clock=clock)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
    finally:
        os.close(fd)  # releases the flock


def _acquire(
    fd: int, path: Path, *, echo: Callable[[str], None], wait: float, clock: Callable[[], float]
) -> None:
    if _try(fd):
        return
    holder = _holder(fd)
    echo(f"another kiln run holds {path} ({holder}); waiting")
    deadline, pause = clock() + wait, _POLL[0]
    while not _try(fd):
        if clock() >= deadline:
            raise ServiceUnavailable(
                f"another kiln run ({_holder(fd)}) still holds {path} after {wait:.0f} s; "
                "let it finish (or stop it), then run this command again"
            )
        time.sleep(pause)
        pause = min(pause * 2, _POLL[1])
