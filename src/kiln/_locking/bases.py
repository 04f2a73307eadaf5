"""How ``kiln lock`` pins a registry base: the registry's manifest digest, else a repo
digest of the local Docker Engine's copy (``kiln._images.registry_base.resolve_base``
decides).

The registry is asked the way a release reads a base: with the registry's credentials
(the environment, docker's config) and the CA bundle (``Options.ca_bundle``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kiln._errors import KilnError, ServiceUnavailable
from kiln._images.registry_base import resolve_base
from kiln._lock.format import BasePin
from kiln._servers.registry import RegistryClient
from kiln._servers.registry_wire import on_loopback
from kiln._util.docker import docker_client


@dataclass
class BasePinner:
    """``pin(ref, where) -> (BasePin, how)`` for a registry base; a ConfigError naming
    ``where`` (the image.toml) when it cannot be pinned by digest.

    ``registry(host)``: the client for a base's registry (one per host, kept: a Bearer
    token is asked once). ``offline``: no registry but a loopback one is asked."""

    registry: Callable[[str], RegistryClient]
    docker_host: str
    log: Callable[[str], None] = lambda _line: None
    offline: bool = False
    _clients: dict[str, RegistryClient] = field(default_factory=dict, init=False, repr=False)

    def client(self, host: str) -> RegistryClient:
        if host not in self._clients:
            self._clients[host] = self.registry(host)
        return self._clients[host]

    def _registry_digest(self, host: str, repository: str, tag: str) -> str | None:
        if self.offline and not on_loopback(host):
            raise ServiceUnavailable(f"KILN_OFFLINE=1: {host} is not asked")
        return self.client(host).digest(repository, tag)

    def _local(self, ref: str) -> tuple[str, ...] | None:
        import docker.errors  # noqa: PLC0415 - slow; only a base not in its registry needs it

        try:
            image = docker_client(self.docker_host).images.get(ref)
        except (KilnError, docker.errors.DockerException) as exc:
            self.log(f"    {ref}: not on the local Docker Engine ({type(exc).__name__})")
            return None
        return tuple(image.attrs.get("RepoDigests") or ())

    def pin(self, ref: str, where: Path | str) -> tuple[BasePin, str]:
        return resolve_base(
            ref, where=str(where), registry_digest=self._registry_digest, local=self._local
        )
