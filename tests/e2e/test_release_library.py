"""The tag and dev releases as library calls, no command line: a small repo (one helper,
no image) released as v0.1.0 on its own local stack, the typed result checked against the
index and the record on disk; the same tag again publishes nothing; a changed helper then
goes out as a dev release."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import docker
import pytest

from kiln._context import LOCAL, Context
from kiln._options import Options
from kiln._release.bundle import bundle_name
from kiln._release.components import components
from kiln._release.dev_release import release_dev
from kiln._release.tag import release_tag
from kiln._report import Reporter
from kiln._servers.index import IndexClient
from kiln._workspace.discovery import discover
from tests import factory
from tests.e2e.conftest import on_stack
from tests.e2e.tools import free_port

pytestmark = pytest.mark.e2e

GIT = ["git", "-c", "user.name=kiln-test", "-c", "user.email=kiln@example.invalid"]


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        [*GIT, "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_tag_release_is_a_function_with_a_typed_result(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    index_port, registry_port = free_port(), free_port()
    root = factory.workspace(tmp_path / "repo", index_port=index_port, registry_port=registry_port)
    factory.helper(root, "textstats", deps=())
    (root / ".gitignore").write_text(".kiln/\ndist/\n")
    ctx = Context(Options(), Reporter.null())
    with on_stack(root, index_port, registry_port, docker_client) as repo:
        # The committed tree a tag needs: its catalog, written by the components flow.
        written = components(discover(root), ctx, LOCAL)
        assert (written.components, written.pipelines) == ((), ())
        git(root, "add", "-A")
        git(root, "commit", "-qm", "one helper")
        git(root, "tag", "v0.1.0")

        result = release_tag(discover(root), ctx, LOCAL, "v0.1.0")

        wheel = "acme_textstats-0.1.0-py3-none-any.whl"
        bundle = "acme_components-0.1.0-py3-none-any.whl"
        assert (result.release, result.tag, result.previous) == ("0.1.0", "v0.1.0", None)
        assert result.revision == git(root, "rev-parse", "HEAD")
        assert result.uploaded == (wheel, bundle)
        assert result.pushed == ()
        assert result.bundle.filename == bundle
        index = IndexClient(repo.index_url)
        assert index.files(bundle_name("acme"))[bundle] == result.bundle.sha256
        assert wheel in index.files("acme-textstats")
        assert result.record == root / "dist" / "release"
        record = json.loads((result.record / "manifest.json").read_text())
        assert (record["release"], record["bundle"]) == ("0.1.0", bundle)
        assert (result.record / bundle).read_bytes() == result.bundle.path.read_bytes()
        assert result.summary == "release 0.1.0: uploaded 2 file(s), pushed 0 image(s)"

        again = release_tag(discover(root), ctx, LOCAL, "v0.1.0")
        assert (again.uploaded, again.pushed) == ((), ())
        assert again.bundle.sha256 == result.bundle.sha256
        assert again.summary.endswith("already published: nothing uploaded, nothing pushed")

        source = root / "helpers" / "textstats" / "src" / "textstats" / "__init__.py"
        source.write_text(source.read_text() + "\nVERSION = 2\n")
        dev = release_dev(discover(root), ctx, LOCAL)
        version = f"0.1.1.dev{dev.number}"
        assert (dict(dev.moved), dev.version) == ({"textstats": version}, version)
        wheels = (
            f"acme_textstats-{version}-py3-none-any.whl",
            f"acme_components-{version}-py3-none-any.whl",
        )
        assert (dev.uploaded, dev.pushed, dev.bundle) == (wheels, (), wheels[1])
        assert wheels[0] in index.files("acme-textstats")
        assert dev.components == root / "dist" / "dev" / "components"
        assert (dev.components / "README.md").is_file()
        # pypiserver's one-page listing (``files_of`` reads it for hundreds of helpers)
        # holds what the simple pages hold, with the same digests.
        pages = {**index.files("acme-textstats"), **index.files(bundle_name("acme"))}
        assert len(pages) == 4
        assert index.listing() == pages
