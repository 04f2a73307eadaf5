"""One exception hierarchy; each user-facing class has its own exit code.

Only the CLI prints errors. Messages name the file or value at fault and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator


class KilnError(Exception):
    """Base class of every error kiln raises on purpose."""

    exit_code = 1
    label = "error"


class ConfigError(KilnError):
    """Bad input: a file or value in the repository is missing or malformed."""

    exit_code = 3
    label = "bad input"


class PublishedConflict(KilnError):
    """A version that is already published would change: bump it instead."""

    exit_code = 4
    label = "conflict with a published artifact"


class ServiceUnavailable(KilnError):
    """The index, the registry or Docker Engine cannot be reached."""

    exit_code = 5
    label = "service unavailable"


class CommandFailed(KilnError):
    """An external step (a build, pip, twine, docker) failed."""

    exit_code = 6
    label = "step failed"

    def __init__(self, message: str, *, returncode: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.output = output


class CommandNotFound(CommandFailed):
    """The program a step runs is not installed (the caller names the package)."""


class RunFailed(KilnError):
    """A pipeline or component run failed."""

    exit_code = 7
    label = "run failed"


class ArtifactAltered(KilnError):
    """A server holds other bytes than kiln published under a version: restore them."""

    exit_code = 8
    label = "published artifact altered on the server"


class AuthenticationFailed(KilnError):
    """The index or the registry refused kiln's credentials, or needs some and has none."""

    exit_code = 9
    label = "authentication failed"


class DiskFault(KilnError):
    """kiln could not write its own output or state: the disk is full, or the path is
    read-only or not kiln's to write. What was published stays published; free space or
    make the path writable, then re-run."""

    exit_code = 10
    label = "disk fault"


class PlanMismatch(KilnError):
    """A job of a release matrix built or found something other than its plan says (an
    image's digest, a wheel's sha256, the commit): nothing of the job was published."""

    exit_code = 11
    label = "does not match the plan"


class ReleaseIncomplete(KilnError):
    """The finalize step of a release matrix found an artifact of the plan not yet
    published: the job that publishes it failed or has not run. Nothing was written."""

    exit_code = 12
    label = "release incomplete"


# The errors a write to kiln's own files meets when the disk, not the input, is at fault.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_fault(exc: OSError, path: str | os.PathLike[str] | None = None) -> DiskFault:
    """``exc`` (one of ``DISK_ERRNOS``) met writing ``path`` (None: the file the error
    names), as a ``DiskFault`` naming it and the fix."""
    # The caller's path (what it was writing, not a temporary file beside it), else the
    # error's: a copy's names its source first and its destination second.
    where = next((w for w in (path, exc.filename2, exc.filename) if w is not None), None)
    named = f" {os.fsdecode(where)}" if where is not None else ""
    reason = exc.strerror or os.strerror(exc.errno or 0)
    if exc.errno in _FULL:
        fix = "free space on its filesystem"
    elif exc.errno == errno.EROFS:
        fix = "mount it writable or point kiln at a writable checkout"
    else:
        fix = "make it writable by this user"
    return DiskFault(
        f"cannot write{named} ({reason}): {fix}, then re-run the same command; "
        "what is already published is kept and skipped"
    )


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Inside: a disk error (``DISK_ERRNOS``) becomes a ``DiskFault`` naming ``path``;
    other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        raise disk_fault(exc, path) from exc


EXIT_CODES: dict[str, int] = {
    cls.label: cls.exit_code
    for cls in (
        ConfigError,
        PublishedConflict,
        ServiceUnavailable,
        CommandFailed,
        RunFailed,
        ArtifactAltered,
        AuthenticationFailed,
        DiskFault,
        PlanMismatch,
        ReleaseIncomplete,
    )
}
