"""Docker Engine (``docker`` SDK): the client.

kiln builds every image itself, Docker none: the engine runs containers (`kiln run`,
the smoke check of a pushed image, the local stack's registry:2 where no registry
binary is installed). kiln reaches an engine only through ``docker_client``, at
``Options.docker_host``.

``docker`` is imported by the functions that reach the engine, not by this module: it
takes about 0.1 s, which a command that starts no container (a no-op release, a check)
need not pay.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from kiln._errors import ServiceUnavailable

if TYPE_CHECKING:
    import docker


def _client(where: str, version: str) -> docker.DockerClient:
    """A client for ``where``, with the TLS settings docker's environment gives (as
    ``docker.from_env`` reads them), but never another engine than ``where``."""
    import docker  # noqa: PLC0415 - slow; only where the engine is reached
    import docker.utils  # noqa: PLC0415 - (see above)

    kwargs = docker.utils.kwargs_from_env()
    kwargs["base_url"] = where
    return docker.DockerClient(version=version, **kwargs)


def docker_client(where: str) -> docker.DockerClient:
    """A client for the engine at ``where`` (``Options.docker_host``: DOCKER_HOST), or a
    clear error."""
    fix = "start it (e.g. `sudo systemctl start docker`) or point DOCKER_HOST at a running engine"
    if where.startswith("unix://") and not Path(where.removeprefix("unix://")).exists():
        # Answer before docker-py: its unix transport leaks the socket of a failed connect.
        raise ServiceUnavailable(
            f"Docker Engine is not reachable at {where} (no such socket); {fix}"
        )
    import docker.constants  # noqa: PLC0415 - (see _client)
    import docker.errors  # noqa: PLC0415 - (see _client)

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


def start_container(
    where: str,
    image: str,
    *,
    name: str,
    environment: Mapping[str, str],
    volumes: Mapping[str, str],
) -> None:
    """Start ``image`` as ``name`` on the engine at ``where``, detached, on the host's
    network, ``volumes`` (host folder -> container folder) bound read-write; it removes
    itself when it stops. ``ServiceUnavailable`` says why the engine could not."""
    import docker.errors  # noqa: PLC0415 - (see _client)

    client = docker_client(where)
    try:
        client.containers.run(
            image, name=name, detach=True, network_mode="host", environment=dict(environment),
            volumes={host: {"bind": inside, "mode": "rw"} for host, inside in volumes.items()},
            remove=True,
        )  # fmt: skip
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise ServiceUnavailable(
            f"Docker Engine at {where} could not start {image} as {name}: {exc}"
        ) from None
    finally:
        client.close()


def stop_container(where: str, name: str) -> bool:
    """Stop the container ``name`` on the engine at ``where``; False when it no longer
    exists. ``ServiceUnavailable`` when the engine cannot be reached or refuses."""
    import docker.errors  # noqa: PLC0415 - (see _client)

    client = docker_client(where)
    try:
        client.containers.get(name).stop()
    except docker.errors.NotFound:
        return False
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise ServiceUnavailable(f"Docker Engine at {where} could not stop {name}: {exc}") from None
    finally:
        client.close()
    return True
