"""What the release records about the source tree: revision and a credential-free source URL."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out else None


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
