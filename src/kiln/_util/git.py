"""What the release records about the source tree: revision and a credential-free source URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kiln._errors import CommandFailed
from kiln._util.cmd import call


def _git(root: Path, *args: str) -> str | None:
    """``git args`` in ``root``; None outside a git checkout or without git."""
    try:
        out = call(["git", *args], cwd=root, echo=False).strip()
    except CommandFailed:
        return None
    return out or None


def strip_credentials(url: str) -> str:
    """Drop ``user:token@`` from a URL: remotes often carry a token, labels must not."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def revision(root: Path) -> str | None:
    return _git(root, "rev-parse", "HEAD")


def source_url(root: Path) -> str | None:
    remote = _git(root, "config", "--get", "remote.origin.url")
    return strip_credentials(remote) if remote else None
