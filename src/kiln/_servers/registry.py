"""The registry client: all registry traffic goes through ``RegistryClient``.

Identity of a pushed image is the manifest digest the registry returns
(``Docker-Content-Digest``), and its recorded inputs are the labels in its
config blob; kiln never guesses from error text.
"""

from __future__ import annotations

import json
from typing import Protocol

import requests

from kiln._errors import ServiceUnavailable

_TIMEOUT = 30.0
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


class Registry(Protocol):
    host: str

    def digest(self, repository: str, tag: str) -> str | None: ...

    def labels(self, repository: str, tag: str) -> dict[str, str]: ...


class RegistryClient:
    """A Docker Registry HTTP API v2 at ``host`` (``127.0.0.1:5765``), plain HTTP on loopback."""

    def __init__(self, host: str, *, scheme: str = "http") -> None:
        self.host = host
        self._base = f"{scheme}://{host}/v2"
        self._session = requests.Session()

    def _get(
        self, url: str, *, method: str = "GET", accept: str | None = None
    ) -> requests.Response:
        headers = {"Accept": accept} if accept else {}
        try:
            return self._session.request(method, url, headers=headers, timeout=_TIMEOUT)
        except requests.RequestException as exc:
            raise ServiceUnavailable(
                f"registry {self.host} is not reachable ({type(exc).__name__}); "
                "start it with `kiln stack up` or fix the registry address"
            ) from None

    def ping(self) -> None:
        resp = self._get(f"{self._base}/")
        if resp.status_code != 200:
            raise ServiceUnavailable(f"registry {self.host} answered /v2/ with {resp.status_code}")

    def digest(self, repository: str, tag: str) -> str | None:
        """The manifest digest behind ``repository:tag``, or None if the tag does not exist."""
        url = f"{self._base}/{repository}/manifests/{tag}"
        resp = self._get(url, method="HEAD", accept=MANIFEST_TYPES)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200 or "Docker-Content-Digest" not in resp.headers:
            raise ServiceUnavailable(
                f"registry {self.host}: HEAD {url} answered {resp.status_code} without a digest"
            )
        return resp.headers["Docker-Content-Digest"]

    def labels(self, repository: str, tag: str) -> dict[str, str]:
        """The labels recorded in the image config of ``repository:tag``."""
        resp = self._get(f"{self._base}/{repository}/manifests/{tag}", accept=MANIFEST_TYPES)
        resp.raise_for_status()
        config_digest = json.loads(resp.content)["config"]["digest"]
        blob = self._get(f"{self._base}/{repository}/blobs/{config_digest}")
        blob.raise_for_status()
        config = json.loads(blob.content).get("config") or {}
        return dict(config.get("Labels") or {})

    def catalog(self) -> list[str]:
        resp = self._get(f"{self._base}/_catalog")
        resp.raise_for_status()
        return list(resp.json().get("repositories") or [])
