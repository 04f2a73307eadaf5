"""A release of images kiln builds itself on a real stack and Docker Engine:
the dry run shows the digest components pin, the push lands exactly there, a second release
is a no-op, and a pipeline runs on the image pulled by that digest.

The copy of this repo keeps the ``base`` image only (the analytics image and what runs on
it are left out to keep this test short; tests/e2e/test_release_local.py has both)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from packaging.utils import canonicalize_name

from kiln._servers.registry import RegistryClient
from tests.e2e.conftest import BASE_IMAGE, copy_project, pip_list, untag

pytestmark = pytest.mark.e2e

# What runs on the analytics image: left out of the copy with it.
_ANALYTICS = (
    "images/analytics",
    "pipelines/components/compare.py",
    "pipelines/components/tables.py",
    "pipelines/contrast_compare.py",
    "pipelines/table_quality.py",
)


class KilnRepo:
    def __init__(self, root: Path, registry: str) -> None:
        self.root = root
        self.registry = registry

    def kiln(self, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KILN_BASE_IMAGE": BASE_IMAGE, "KILN_OFFLINE": "1", **env_vars}
        return subprocess.run(
            [sys.executable, "-m", "kiln", *args, "--repo", str(self.root)],
            env=env, capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip

    def json(self, *args: str, **env_vars: str) -> Any:
        proc = self.kiln(*args, "--json", **env_vars)
        assert proc.returncode == 0, f"kiln {' '.join(args)} failed:\n{proc.stderr}"
        return json.loads(proc.stdout)


def commit(root: Path, message: str) -> None:
    """A commit in the throwaway copy (a new revision for the release to see)."""
    git = ["git", "-C", str(root), "-c", "user.name=kiln", "-c", "user.email=kiln@example.invalid"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", message], check=True)


@pytest.fixture(scope="module")
def kiln_repo(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[KilnRepo]:
    """A copy of this repo, on its own stack, whose base image is kiln-built."""
    root = tmp_path_factory.mktemp("oci-release")
    _index_port, registry_port = copy_project(root)
    for rel in _ANALYTICS:
        target = root / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert not (root / "images" / "base" / "Dockerfile").exists()  # no OS base: none needed
    (root / ".gitignore").write_text(".kiln/\ndist/\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    commit(root, "the copy")
    repo = KilnRepo(root, f"127.0.0.1:{registry_port}")
    yield repo
    repo.kiln("stack", "down")
    untag(docker_client, repo.registry)


def check_sbom_and_smoke(
    kiln_repo: KilnRepo, docker_client: docker.DockerClient, record: dict[str, Any]
) -> None:
    """The SBOM lists exactly what ``pip list`` shows in the image beyond its base, each
    wheel with a hash; the base by its ID (KILN_BASE_IMAGE has no digest); and the
    release's log shows the smoke check that ran on the pushed image."""
    assert record["sbom"]["path"] == "dist/sbom/base.cdx.json"
    sbom_bytes = (kiln_repo.root / record["sbom"]["path"]).read_bytes()
    assert hashlib.sha256(sbom_bytes).hexdigest() == record["sbom"]["sha256"]
    sbom = json.loads(sbom_bytes)
    libraries = [c for c in sbom["components"] if c["type"] == "library"]
    listed = {(canonicalize_name(c["name"]), c["version"]) for c in libraries}
    assert len(listed) == len(libraries)
    assert all(c["purl"] == f"pkg:pypi/{c['name']}@{c['version']}" for c in libraries)
    assert all(len(c["hashes"][0]["content"]) == 64 for c in libraries)
    in_image = pip_list(docker_client, record["ref"])
    in_base = pip_list(docker_client, BASE_IMAGE)
    assert listed == in_image - in_base
    assert in_image == listed | in_base
    (base,) = [c for c in sbom["components"] if c["type"] == "container"]
    assert (base["name"], base["version"]) == (BASE_IMAGE, docker_client.images.get(BASE_IMAGE).id)
    assert sbom["metadata"]["component"]["hashes"][0]["content"] == record["digest"][7:]
    print(f"SBOM of the base image: {len(sbom_bytes)} bytes, {len(libraries)} distributions")

    log = (kiln_repo.root / ".kiln" / "logs" / "release.log").read_text()
    smoked = f"smoke check {record['ref']}"
    assert f"{smoked}: import imgproc, kfp; python3 -m pip check" in log
    assert f"{smoked}: ok" in log


def test_a_kiln_built_image_is_pinned_before_the_push_and_runs(
    kiln_repo: KilnRepo, docker_client: docker.DockerClient
) -> None:
    plan = kiln_repo.json("release", "--local", "--dry-run")
    (image,) = plan["images"]
    assert (image["name"], image["action"]) == ("base", "build")
    predicted = image["digest"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", predicted)
    pins = {c["name"]: c["digest"] for c in plan["components"]}
    assert pins
    assert set(pins.values()) == {predicted}

    released = kiln_repo.json("release", "--local")
    (record,) = released["manifest"]["images"]
    assert record["digest"] == predicted
    assert released["pushed"] == [f"{record['repository']}:{record['tag']}@{predicted}"]
    path = record["repository"].split("/", 1)[1]
    registry = RegistryClient(kiln_repo.registry)
    assert registry.digest(path, record["tag"]) == predicted
    labels = registry.labels(path, record["tag"])
    assert labels["org.opencontainers.image.created"] == "1980-01-01T00:00:00Z"
    assert labels["org.kiln.helpers"] == "acme-imgproc==0.2.0"
    assert "org.opencontainers.image.revision" not in labels  # the manifest.json has it
    assert "org.kiln.fingerprint" not in labels
    assert released["manifest"]["revision"]
    assert record["revision"] == released["manifest"]["revision"]  # the release that pushed it
    check_sbom_and_smoke(kiln_repo, docker_client, record)
    image_mode = [c for c in released["manifest"]["components"] if c.get("image")]
    assert image_mode
    for component in image_mode:
        yaml = (kiln_repo.root / component["path"]).read_text()
        assert f"image: {record['repository']}@{predicted}" in yaml

    # Another commit, same inputs: same digest, nothing pushed.
    commit(kiln_repo.root, "another revision")
    again = kiln_repo.json("release", "--local")
    assert again["manifest"]["revision"] != released["manifest"]["revision"]
    assert (again["uploaded"], again["pushed"]) == ([], [])
    assert again["manifest"]["images"][0]["digest"] == predicted
    assert again["manifest"]["images"][0]["revision"] is None  # not pushed by this release
    assert again["manifest"]["images"][0]["sbom"] == record["sbom"]  # the same bytes

    # Runs in kfp.local.DockerRunner on the image pulled by digest from the local registry.
    outputs = kiln_repo.json("run", "contrast_demo")
    (std,) = outputs.values()
    assert std > 6.0 * 3  # the stretched image's spread: several times the input's (6)


def test_a_base_in_a_registry_gives_the_digest_with_no_engine_and_is_mounted(
    kiln_repo: KilnRepo, docker_client: docker.DockerClient
) -> None:
    """The base lives in the registry (pushed there by Docker, so its layer blobs are
    Docker's, not kiln's): `kiln components` computes the digest with no Docker Engine at
    all and pins it; the release then pushes exactly that, mounting the base's layers
    from the base's repository instead of uploading them."""
    assert kiln_repo.kiln("stack", "up").returncode == 0
    base_ref = f"{kiln_repo.registry}/kiln/python:3.11"
    docker_client.images.get(BASE_IMAGE).tag(f"{kiln_repo.registry}/kiln/python", "3.11")
    for line in docker_client.images.push(
        f"{kiln_repo.registry}/kiln/python", "3.11", stream=True, decode=True
    ):
        assert "error" not in line, line
    toml = kiln_repo.root / "images" / "base" / "image.toml"
    toml.write_text(re.sub(r'(?m)^version = ".*"$', 'version = "9.0.0"', toml.read_text()))
    commit(kiln_repo.root, "base 9.0.0 on the registry's base")

    no_engine = {"KILN_BASE_IMAGE": base_ref, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    pinned = kiln_repo.json("components", "--local", **no_engine)
    predicted = pinned["images"]["base"].split("@", 1)[1]
    for component in [c for c in pinned["components"] if c.get("image")]:
        yaml = (kiln_repo.root / component["path"]).read_text()
        assert f"image: {kiln_repo.registry}/acme/base@{predicted}" in yaml
    registry = RegistryClient(kiln_repo.registry)
    assert registry.digest("acme/base", "9.0.0") is None  # nothing pushed yet

    released = kiln_repo.json("release", "--local", KILN_BASE_IMAGE=base_ref)
    record = next(i for i in released["manifest"]["images"] if i["tag"] == "9.0.0")
    assert record["digest"] == predicted
    assert registry.digest("acme/base", "9.0.0") == predicted
    base_manifest = json.loads(registry.manifest("kiln/python", "3.11"))
    log = (kiln_repo.root / ".kiln" / "logs" / "release.log").read_text()
    for layer in base_manifest["layers"]:  # Docker's blobs, linked, not sent again
        assert f"{layer['digest'][:19]} mounted from kiln/python" in log
    sbom = json.loads((kiln_repo.root / record["sbom"]["path"]).read_bytes())
    (base,) = [c for c in sbom["components"] if c["type"] == "container"]
    base_digest = f"sha256:{hashlib.sha256(registry.manifest('kiln/python', '3.11')).hexdigest()}"
    assert (base["name"], base["version"]) == (base_ref, base_digest)
