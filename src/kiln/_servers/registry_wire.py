"""The registry's wire: which manifest media types kiln asks for, the token scope a
request needs, the ``WWW-Authenticate`` challenge, and how a host is spoken to."""

from __future__ import annotations

import re
from urllib.request import parse_http_list

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)
# A base image's tag often names a list of per-platform manifests.
INDEX_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
_REPOSITORY_PATH = re.compile(r"/v2/(.+)/(?:manifests|blobs|tags)/")
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def scope(url: str, method: str = "GET") -> str:
    """The token scope a request needs (the cache key for its Bearer token)."""
    found = _REPOSITORY_PATH.search(url)
    if found:
        return f"repository:{found.group(1)}:{'pull,push' if method in WRITES else 'pull'}"
    return "registry:catalog:*" if "/v2/_catalog" in url else ""


def challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for item in parse_http_list(rest):  # splits on commas outside quotes
        key, sep, value = item.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().removeprefix('"').removesuffix('"')
    return scheme.lower(), params


def on_loopback(host: str) -> bool:
    """Whether the registry at ``host`` (HOST[:PORT], [IPv6][:PORT]) is on this machine's
    loopback: the local stack's."""
    name = host[1 : host.find("]")] if host.startswith("[") else host.partition(":")[0]
    return name in ("localhost", "127.0.0.1", "::1")


def default_scheme(host: str) -> str:
    """How a registry at ``host`` is spoken to, as Docker does: plain HTTP on this machine's
    loopback (the local stack), HTTPS everywhere else."""
    return "http" if on_loopback(host) else "https"
