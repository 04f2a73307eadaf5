"""Resolving a wheelhouse inside the base image (for a kiln whose Python is not the
image's) gives the same third-party set the host resolved for the baked image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest

from kiln._images.docker import DockerBuilder
from kiln._release.stages import kfp_version
from kiln._wheels.wheelhouse import resolve_third_party, third_party_requirements
from kiln._workspace.discovery import discover
from tests.e2e.conftest import BASE_IMAGE, Repo, by

pytestmark = pytest.mark.e2e


def test_in_image_resolution_matches_the_baked_image(
    repo: Repo, released: dict[str, Any], docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    workspace = discover(repo.root)
    image = next(i for i in workspace.images if i.name == "base")
    requirements = third_party_requirements(workspace, image, kfp_version())
    builder = DockerBuilder(docker_client, log=lambda line: None)
    wheels = resolve_third_party(
        requirements,
        upstream_index=workspace.upstream_index,
        cache_dir=tmp_path / "cache",
        python=image.python,
        pip_wheel=builder.pip_wheel_in(BASE_IMAGE),
    )
    resolved = sorted(f"{w.name}=={w.version}" for w in wheels)
    baked = by(released["manifest"]["images"], "name")["base"]
    labels = docker_client.images.get(baked["ref"]).labels
    assert resolved == sorted(labels["org.kiln.third-party"].split(","))
    # The wheels belong to the user who ran kiln, not to the container's root.
    assert {w.path.stat().st_uid for w in wheels} == {Path(tmp_path).stat().st_uid}
