"""Docker Engine (``docker`` SDK): the client.

kiln builds every image itself, Docker none: the engine runs containers (`kiln run`,
the smoke check of a pushed image).
"""

from __future__ import annotations

from pathlib import Path

import docker
import docker.constants
import docker.errors
import docker.utils
import requests

from kiln._errors import ServiceUnavailable


def _client(where: str, version: str) -> docker.DockerClient:
    """A client for ``where``, with the TLS settings docker's environment gives (as
    ``docker.from_env`` reads them), but never another engine than ``where``."""
    kwargs = docker.utils.kwargs_from_env()
    kwargs["base_url"] = where
    return docker.DockerClient(version=version, **kwargs)


def docker_client(where: str = "unix:///var/run/docker.sock") -> docker.DockerClient:
    """A client for the engine at ``where`` (``Options.docker_host``: DOCKER_HOST), or a
    clear error."""
    fix = "start it (e.g. `sudo systemctl start docker`) or point DOCKER_HOST at a running engine"
    if where.startswith("unix://") and not Path(where.removeprefix("unix://")).exists():
        # Answer before docker-py: its unix transport leaks the socket of a failed connect.
        raise ServiceUnavailable(
            f"Docker Engine is not reachable at {where} (no such socket); {fix}"
        )
    # Ping with a fixed API version first: docker-py's auto-negotiation runs in its
    # constructor, where a failure leaves no client to close.
    probe = _client(where, docker.constants.MINIMUM_DOCKER_API_VERSION)
    try:
        probe.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise ServiceUnavailable(
            f"Docker Engine is not reachable at {where} ({exc.__class__.__name__}); {fix}"
        ) from None
    finally:
        probe.close()
    return _client(where, "auto")
