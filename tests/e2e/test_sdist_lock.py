"""An sdist-only requirement end to end: `kiln lock` builds docopt 0.6.2 (PyPI has no
wheel of it) into a wheel twice and locks its sha256; a release on a throwaway stack
rebuilds it, mirrors its sdist and build backend, bakes it, and the image imports it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import docker
import docker.errors
import pytest
import requests

from kiln._lock.format import parse_lock
from tests import factory
from tests.e2e.conftest import OsPins, on_stack, seed_os
from tests.e2e.tools import Repo, free_port

pytestmark = pytest.mark.e2e

SDIST_ONLY = "docopt==0.6.2"  # pure Python, no dependencies, no wheel on PyPI
CLI = """\
from docopt import docopt


def parse(argv: list[str]) -> dict[str, object]:
    return dict(docopt("usage: cli [--fast] NAME", argv=argv))
"""


@pytest.fixture(scope="module")
def sdist_repo(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, os_pins: OsPins
) -> Iterator[Repo]:
    """One helper depending on docopt, one image holding it; PyPI as the upstream index."""
    root = tmp_path_factory.mktemp("sdist-repo")
    index_port, registry_port = free_port(), free_port()
    factory.workspace(
        root, index_port=index_port, registry_port=registry_port, upstream="https://pypi.org/simple"
    )
    factory.helper(root, "cli", deps=(SDIST_ONLY,), body=CLI)
    factory.image(root, "tools", helpers=("cli",))
    seed_os(root, os_pins)
    with on_stack(root, index_port, registry_port, docker_client) as repo:
        yield repo


def test_an_sdist_only_requirement_is_built_locked_released_and_imported(
    sdist_repo: Repo, docker_client: docker.DockerClient
) -> None:
    repo = sdist_repo
    path = repo.root / "images" / "tools" / "requirements.lock"
    first = repo.kiln("lock", "tools")
    assert first.returncode == 0, first.stderr
    text = path.read_text()
    assert "# format = 2\n" in text
    built = re.search(
        r"\n    # kiln: built (docopt-0\.6\.2-py2\.py3-none-any\.whl) sha256:([0-9a-f]{64}) "
        r"from sdist with (setuptools==[\w.]+)\n",
        text,
    )
    assert built, text
    (docopt,) = [p for p in parse_lock(path, text).pins if p.name == "docopt"]
    assert docopt.built is not None
    assert docopt.built.sha256 == built.group(2)
    # Locking again gives the same bytes, from the cache of the two identical builds.
    again = repo.kiln("lock", "tools", "-v")
    assert again.returncode == 0, again.stderr
    assert path.read_text() == text
    assert "build_wheel" not in again.stderr  # no backend ran

    released = repo.kiln("release", "--local", "--json")
    assert released.returncode == 0, released.stderr
    result = json.loads(released.stdout)
    (image,) = result["manifest"]["images"]
    assert {"docopt-0.6.2.tar.gz", f"{built.group(3).replace('==', '-')}-py3-none-any.whl"} <= set(
        result["manifest"]["mirrored"]
    )
    page = requests.get(f"{repo.index_url}/simple/docopt/", timeout=10).text
    assert "docopt-0.6.2.tar.gz" in page
    assert ".whl" not in page  # kiln's build stays in the image, not on the index

    out = docker_client.containers.run(
        f"{image['repository']}:{image['tag']}",
        ["python3", "-c", "import cli, docopt; print(docopt.__version__, cli.parse(['x']))"],
        network_mode="none",
        remove=True,
    )
    assert out.decode().strip() == "0.6.2 {'--fast': False, 'NAME': 'x'}"

    # A no-op release rebuilds nothing: the wheel comes from the cache.
    noop = repo.kiln("release", "--local", "-v")
    assert noop.returncode == 0, noop.stderr
    assert "docopt==0.6.2: docopt-0.6.2-py2.py3-none-any.whl from the cache" in noop.stderr
    assert "build_wheel" not in noop.stderr
