"""An image with OS packages: its Dockerfile is built by Docker into an OS base at
`kiln lock --local`, pushed and pinned by digest; kiln then builds the image on exactly
those bytes, with the digest known before the push and no engine needed to know it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from kiln._servers.registry import RegistryClient
from kiln._wheels.lock import parse_lock
from tests import factory
from tests.e2e.conftest import BASE_IMAGE, Repo, free_port, untag

pytestmark = pytest.mark.e2e

DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY motd.txt /etc/kiln-os-motd
RUN echo "os packages would be installed here" > /etc/kiln-os-marker
"""


@pytest.fixture(scope="module")
def os_repo(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[Repo]:
    """One helper, one image with an OS base Dockerfile; PyPI as the upstream index."""
    root = tmp_path_factory.mktemp("os-repo")
    index_port, registry_port = free_port(), free_port()
    factory.workspace(
        root, index_port=index_port, registry_port=registry_port, upstream="https://pypi.org/simple"
    )
    factory.helper(root, "tagger", body="def tag(x: str) -> str:\n    return f'[{x}]'\n")
    image = factory.image(root, "tools", helpers=("tagger",))
    (image / "Dockerfile").write_text(DOCKERFILE)
    (image / "motd.txt").write_text("hello from the OS base\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    repo = Repo(root, f"http://127.0.0.1:{index_port}", f"127.0.0.1:{registry_port}")
    yield repo
    repo.kiln("stack", "down")
    untag(docker_client, repo.registry)


def test_an_os_base_is_built_once_pinned_and_layered_on_by_kiln(
    os_repo: Repo, docker_client: docker.DockerClient
) -> None:
    repo = os_repo
    lock = repo.root / "images" / "tools" / "requirements.lock"

    # Without a registry to push the OS base to: a clear error, nothing written.
    nowhere = repo.kiln("lock", "tools")
    assert nowhere.returncode == 3, nowhere.stderr
    assert "give --local or --registry HOST[:PORT]" in nowhere.stderr
    assert not lock.exists()

    first = repo.kiln("lock", "tools", "--local")
    assert first.returncode == 0, first.stderr
    text = lock.read_text()
    base = parse_lock(lock, text).base
    assert base.ref.startswith(f"{repo.registry}/acme/tools-os:")
    assert base.kind == "digest"
    assert base.os_from == BASE_IMAGE  # built FROM KILN_BASE_IMAGE on this machine
    registry = RegistryClient(repo.registry)
    os_tag = base.ref.rsplit(":", 1)[1]
    assert registry.digest("acme/tools-os", os_tag) == base.value

    # Locking again from the same inputs keeps the pin and builds nothing.
    again = repo.kiln("lock", "tools", "--local", "-v")
    assert again.returncode == 0, again.stderr
    assert lock.read_text() == text
    assert "docker build" not in again.stderr
    assert repo.kiln("lock", "--check").returncode == 0

    # A file beside the Dockerfile changed: the lock is stale until locked again.
    motd = repo.root / "images" / "tools" / "motd.txt"
    motd.write_text("changed\n")
    stale = repo.kiln("lock", "--check")
    assert stale.returncode == 3, stale.stderr
    assert "requirements.lock: stale" in stale.stderr
    motd.write_text("hello from the OS base\n")

    # The image's digest is computed with no engine: the OS base is read from the registry.
    planned = repo.kiln(
        "components", "--local", "--json", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    )
    assert planned.returncode == 0, planned.stderr
    digest = json.loads(planned.stdout)["images"]["tools"].split("@", 1)[1]

    released = repo.kiln("release", "--local", "--json", "-v")
    assert released.returncode == 0, released.stderr
    (record,) = json.loads(released.stdout)["manifest"]["images"]
    assert record["digest"] == digest
    assert registry.digest("acme/tools", record["tag"]) == digest
    assert "mounted from acme/tools-os" in released.stderr  # OS base blobs: not uploaded

    python = "import tagger; print(tagger.tag('ok'))"
    script = f'cat /etc/kiln-os-motd /etc/kiln-os-marker; python3 -c "{python}"'
    out = docker_client.containers.run(
        f"{repo.registry}/acme/tools@{digest}",
        ["sh", "-c", script],
        network_mode="none",
        remove=True,
    )
    assert out.decode().splitlines() == [
        "hello from the OS base",
        "os packages would be installed here",
        "[ok]",
    ]
