"""The Docker Engine image builder (``docker`` SDK, legacy builder).

Builds run with ``network_mode="none"``: everything an image installs comes
from the wheelhouse in its build context.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.constants
import docker.errors
import requests

from kiln._errors import CommandFailed, ServiceUnavailable


def docker_client() -> docker.DockerClient:
    """A client for the engine at DOCKER_HOST (or the default socket), or a clear error."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
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


class DockerBuilder:
    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        log: Callable[[str], None] = lambda line: print(f"      {line}", file=sys.stderr),
    ) -> None:
        self._client = client or docker_client()
        self._log = log

    def image_id(self, ref: str) -> str | None:
        try:
            image = self._client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        return str(image.id)

    def _stream(self, chunks: Iterator[dict[str, Any]], what: str) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        tail: list[str] = []
        for chunk in chunks:
            seen.append(chunk)
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message", chunk["error"])
                raise CommandFailed(f"{what} failed: {detail}\n" + "\n".join(tail[-20:]))
            text = str(chunk.get("stream", "")).rstrip()
            if text:
                tail.append(text)
                if text.startswith("Step "):
                    self._log(text)
        return seen

    def build(
        self, context: Path, tag: str, *, buildargs: dict[str, str], labels: dict[str, str]
    ) -> str:
        chunks = self._client.api.build(
            path=str(context), tag=tag, buildargs=buildargs, labels=labels,
            network_mode="none", rm=True, forcerm=True, pull=False, decode=True,
        )  # fmt: skip
        self._stream(chunks, f"docker build of {tag}")
        image_id = self.image_id(tag)
        if image_id is None:
            raise CommandFailed(f"docker build of {tag} reported success but left no image")
        return image_id

    def push(self, repository: str, tag: str) -> str:
        chunks = self._client.api.push(repository, tag=tag, stream=True, decode=True)
        for chunk in self._stream(chunks, f"docker push of {repository}:{tag}"):
            digest = chunk.get("aux", {}).get("Digest")
            if digest:
                return str(digest)
        raise CommandFailed(f"docker push of {repository}:{tag} returned no digest")
