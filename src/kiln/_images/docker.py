"""Docker Engine (``docker`` SDK): the client, and the builder of OS bases.

kiln builds every image itself. Docker builds only an image's optional OS base
(``images/<i>/Dockerfile``: OS packages, with the host's network for apt), once, at
`kiln lock`, which pushes it and pins its registry digest.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.constants
import docker.errors
import requests

from kiln._errors import CommandFailed, ServiceUnavailable
from kiln._servers.credentials import Credentials


def docker_client(where: str = "unix:///var/run/docker.sock") -> docker.DockerClient:
    """A client for the engine at ``where`` (DOCKER_HOST, which docker-py reads too), or a
    clear error."""
    fix = "start it (e.g. `sudo systemctl start docker`) or point DOCKER_HOST at a running engine"
    if where.startswith("unix://") and not Path(where.removeprefix("unix://")).exists():
        # Answer before docker-py: its unix transport leaks the socket of a failed connect.
        raise ServiceUnavailable(
            f"Docker Engine is not reachable at {where} (no such socket); {fix}"
        )
    # Ping with a fixed API version first: docker-py's auto-negotiation runs in its
    # constructor, where a failure leaves no client to close.
    probe = docker.DockerClient.from_env(version=docker.constants.MINIMUM_DOCKER_API_VERSION)
    try:
        probe.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise ServiceUnavailable(
            f"Docker Engine is not reachable at {where} ({exc.__class__.__name__}); {fix}"
        ) from None
    finally:
        probe.close()
    return docker.from_env()


# The legacy builder names each layer it commits as " ---> <short id>".
_LAYER_ID = re.compile(r"^ ---> ([0-9a-f]{12})$")


class OsBaseBuilder:
    """Builds an OS base from a Dockerfile and pushes it; ``credentials`` are the
    registry's, for pushes (sent to the engine per push, never stored in an image or a
    log)."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        log: Callable[[str], None] = lambda _line: None,
        credentials: Credentials | None = None,
    ) -> None:
        self._client = client
        self._log = log
        self._credentials = credentials

    def image_id(self, ref: str) -> str | None:
        try:
            image = self._client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        return str(image.id)

    def _stream(
        self, chunks: Iterator[dict[str, Any]], what: str, layers: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Consume a build or push stream; log it; collect committed layer IDs in ``layers``."""
        seen: list[dict[str, Any]] = []
        tail: list[str] = []
        for chunk in chunks:
            seen.append(chunk)
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message", chunk["error"])
                raise CommandFailed(f"{what} failed: {detail}\n" + "\n".join(tail[-20:]))
            for line in str(chunk.get("stream", "")).splitlines():
                if not line.strip():
                    continue
                tail.append(line)
                self._log(f"      {line}")
                match = _LAYER_ID.match(line)
                if match and layers is not None:
                    layers.append(match.group(1))
        return seen

    def _image_ids(self) -> set[str]:
        return {str(i.id) for i in self._client.images.list(all=True)}

    def _remove_new_layers(self, layers: list[str], before: set[str]) -> None:
        """After a failed build: remove the intermediate images it committed (newest first).

        Only IDs that did not exist before the build are touched, so cached layers of
        earlier builds and the base image stay."""
        new = self._image_ids() - before
        for short in reversed(layers):
            for full in [i for i in new if i.removeprefix("sha256:").startswith(short)]:
                with contextlib.suppress(docker.errors.APIError):
                    self._client.images.remove(full, noprune=False)

    def build(
        self, context: Path, tag: str, *, buildargs: dict[str, str], labels: dict[str, str]
    ) -> str:
        before = self._image_ids()
        layers: list[str] = []
        chunks = self._client.api.build(
            path=str(context), tag=tag, buildargs=buildargs, labels=labels,
            network_mode="host", rm=True, forcerm=True, pull=False, decode=True,
        )  # fmt: skip
        try:
            self._stream(chunks, f"docker build of {tag}", layers)
        except CommandFailed:
            self._remove_new_layers(layers, before)
            raise
        except docker.errors.APIError as exc:
            self._remove_new_layers(layers, before)
            raise CommandFailed(f"docker build of {tag} failed: {exc}") from None
        image_id = self.image_id(tag)
        if image_id is None:
            raise CommandFailed(f"docker build of {tag} reported success but left no image")
        return image_id

    def push(self, repository: str, tag: str) -> str:
        # Without credentials the SDK sends what docker's own config holds for the registry.
        auth = None
        if self._credentials is not None:
            auth = {"username": self._credentials.username, "password": self._credentials.password}
        try:
            chunks = self._stream(
                self._client.api.push(
                    repository, tag=tag, stream=True, decode=True, auth_config=auth
                ),
                f"docker push of {repository}:{tag}",
            )
        except docker.errors.APIError as exc:
            raise CommandFailed(f"docker push of {repository}:{tag} failed: {exc}") from None
        for chunk in chunks:
            digest = chunk.get("aux", {}).get("Digest")
            if digest:
                return str(digest)
        raise CommandFailed(f"docker push of {repository}:{tag} returned no digest")
