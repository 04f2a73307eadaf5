"""One exception hierarchy; each user-facing class has its own exit code.

Only the CLI prints errors. Messages name the file or value at fault and the fix.
"""

from __future__ import annotations


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
    )
}
