"""Verify before publishing (issue 18, defect 1), on a private copy of this repo with its
own stack and the real Docker Engine: a helper whose source does not compile stops the
release before anything is uploaded; an image whose smoke check fails is pushed by
digest only, never tagged, so a re-run checks it again instead of calling it up to
date, and `kiln check` does not pass; nor does it when a released tag is moved onto
another image. (A copy of its own, not ``scratch``: the versions the issue's `kiln bump
imgproc patch` gives are the ones other tests on ``scratch`` release.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import docker
import pytest

from kiln._servers.index import IndexClient
from kiln._servers.registry import RegistryClient
from tests.e2e.conftest import IMAGES, KilnCache, OsPins, copy_project, on_stack
from tests.e2e.tools import Repo

pytestmark = pytest.mark.e2e

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONTRAST = Path("helpers") / "imgproc" / "src" / "imgproc" / "_contrast.py"


def test_a_broken_helper_is_stopped_before_upload_and_a_failed_smoke_check_tags_nothing(
    tmp_path: Path, docker_client: docker.DockerClient, os_pins: OsPins, kiln_cache: KilnCache
) -> None:
    root = tmp_path / "monorepo"
    with on_stack(root, *copy_project(root, os_pins, kiln_cache), docker_client) as repo:
        released = repo.kiln("release", "--local")
        assert released.returncode == 0, released.stderr
        assert repo.kiln("check", "--local").returncode == 0
        saved = {
            p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".kiln" not in p.parts
        }
        smoke_failure = broken_helpers(repo)
        for path, data in saved.items():  # the released sources again
            path.write_bytes(data)
        assert repo.kiln("check", "--local").returncode == 0
        moved_tag_is_altered(repo, RegistryClient(repo.registry), smoke_failure)


def broken_helpers(repo: Repo) -> str:
    """The issue's reproduction, then a helper that compiles but raises at import; the
    second failure's stderr."""
    root = repo.root
    index, registry = IndexClient(repo.index_url), RegistryClient(repo.registry)
    on_index = dict(index.files("acme-imgproc"))
    bumped = repo.kiln("bump", "imgproc", "patch", "--json")
    assert bumped.returncode == 0, bumped.stderr
    changes = json.loads(bumped.stdout)["changes"]
    images = {
        c["path"].split("/")[1]: c["new_version"]
        for c in changes
        if c["path"].startswith("images/")
    }
    assert "base" in images
    source = root / CONTRAST
    good = source.read_bytes()

    # The reproduction: a byte that is not UTF-8 inside a string literal.
    broken = good.replace(b'"""Point-wise contrast operations."""', b'"""Contr\xe4st."""')
    assert broken != good
    source.write_bytes(broken)
    refused = repo.kiln("release", "--local")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert f"{CONTRAST}, line 1: SyntaxError: (unicode error)" in refused.stderr
    assert "nothing was published" in refused.stderr
    assert dict(index.files("acme-imgproc")) == on_index  # nothing uploaded
    for name, version in images.items():
        assert registry.digest(f"acme/{name}", version) is None

    # What compiles but fails at import: only the smoke check sees it.
    source.write_bytes(good + b'\nraise RuntimeError("boom")\n')
    smoke = repo.kiln("release", "--local")
    assert smoke.returncode == 6, smoke.stdout + smoke.stderr
    for name, version in images.items():
        assert registry.digest(f"acme/{name}", version) is None  # by digest only
    assert "import imgproc failed" in smoke.stderr
    assert "RuntimeError: boom" in smoke.stderr
    assert "Nothing was tagged" in smoke.stderr

    again = repo.kiln("release", "--local")
    assert again.returncode == 6, again.stdout + again.stderr
    assert "up to date" not in again.stdout + again.stderr
    assert "import imgproc failed" in again.stderr
    for name, version in images.items():
        assert registry.digest(f"acme/{name}", version) is None

    checked = repo.kiln("check", "--local")
    assert checked.returncode == 3, checked.stdout + checked.stderr  # never "up to date"
    assert f"acme/base:{images['base']} is not pushed yet" in checked.stdout
    return smoke.stderr


def moved_tag_is_altered(repo: Repo, registry: RegistryClient, failed: str) -> None:
    """The released analytics tag moved onto the image whose smoke check ``failed`` (by
    hand, or by an older kiln): `kiln check` reads the registry and calls it altered,
    and passes once the tag is put back."""
    broken = re.search(r"smoke check of \S+/acme/analytics@(sha256:[0-9a-f]{64}) failed", failed)
    assert broken is not None, failed
    tag = IMAGES["analytics"]
    released = registry.digest("acme/analytics", tag)
    assert released is not None
    # The released tag names an index (amd64 and arm64); the broken image is one platform's.
    original = registry.manifest("acme/analytics", released, lists=True)
    assert json.loads(original)["mediaType"] == OCI_INDEX
    moved = registry.manifest("acme/analytics", broken[1])
    registry.put_manifest("acme/analytics", tag, moved, json.loads(moved)["mediaType"])
    altered = repo.kiln("check", "--local")
    assert altered.returncode == 8, altered.stdout + altered.stderr
    assert (
        f"acme/analytics:{tag} points at {broken[1]}, but the last release pushed it as "
        f"{released} (dist/manifest.json): the tag was moved in the registry"
    ) in altered.stdout
    registry.put_manifest("acme/analytics", tag, original, OCI_INDEX)
    assert repo.kiln("check", "--local").returncode == 0
