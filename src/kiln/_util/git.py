"""What the release records about the source tree: revision and a credential-free source URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kiln._errors import CommandFailed, CommandNotFound
from kiln._util.cmd import ask


def git_output(root: Path, *args: str) -> str | None:
    """The standard output of ``git args`` in ``root``, as git wrote it; None when git
    fails (outside a checkout, an unknown revision) or is not installed."""
    try:
        proc = ask(["git", *args], cwd=root)
    except (CommandNotFound, OSError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_checked(root: Path, *args: str) -> str:
    """The standard output of ``git args`` in ``root``; a CommandFailed with git's message
    when it fails."""
    try:
        proc = ask(["git", *args], cwd=root)  # CommandNotFound says to install git
    except OSError as exc:
        raise CommandFailed(f"`git` cannot be run ({exc}): install git") from None
    if proc.returncode != 0:
        raise CommandFailed(f"`git {' '.join(args)}` failed in {root}: {proc.stderr.strip()}")
    return proc.stdout


def git_text(root: Path, *args: str) -> str | None:
    """``git args`` in ``root``, stripped; None when it fails or prints nothing."""
    return (git_output(root, *args) or "").strip() or None


def strip_credentials(url: str) -> str:
    """Drop ``user:token@`` from a URL: remotes often carry a token, labels must not."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def revision(root: Path) -> str | None:
    return git_text(root, "rev-parse", "HEAD")
