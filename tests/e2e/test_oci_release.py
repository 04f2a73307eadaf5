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
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from packaging.utils import canonicalize_name

from kiln._debian.lock import read_os_lock
from kiln._servers.registry import RegistryClient
from tests.e2e.conftest import HELPERS, KilnCache, OsPins, copy_project
from tests.e2e.runwide import untag
from tests.e2e.tools import drop_analytics, installed

pytestmark = pytest.mark.e2e


class KilnRepo:
    def __init__(self, root: Path, registry: str) -> None:
        self.root = root
        self.registry = registry

    def kiln(self, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KILN_OFFLINE": "1", **env_vars}
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
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    os_pins: OsPins,
    kiln_cache: KilnCache,
) -> Iterator[KilnRepo]:
    """A copy of this repo, on its own stack, whose base image is kiln-built."""
    root = tmp_path_factory.mktemp("oci-release")
    _index_port, registry_port = copy_project(root, os_pins, kiln_cache)
    drop_analytics(root)
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
    """Each platform's SBOM (this repo makes its images for amd64 and arm64) lists exactly
    the distributions the image's python3 finds (kiln's OS base has none of its own), each
    wheel with a hash (arm64's numpy: another wheel than amd64's), and every Debian
    package of the OS lock for that architecture by purl and .deb sha256; and the
    release's log shows the smoke check that ran on each pushed platform's image."""
    platforms = record["platforms"]
    assert [p["platform"] for p in platforms] == ["linux/amd64", "linux/arm64"]
    assert record["sbom"] == platforms[0]["sbom"]  # the row's own: its first platform's
    log = (kiln_repo.root / ".kiln" / "logs" / "release.log").read_text()
    lock = read_os_lock(kiln_repo.root)
    numpy, found = set(), []
    for platform in platforms:
        suffix = platform["platform"].replace("/", "-")
        assert platform["sbom"]["path"] == f"dist/sbom/base.{suffix}.cdx.json"
        sbom_bytes = (kiln_repo.root / platform["sbom"]["path"]).read_bytes()
        assert hashlib.sha256(sbom_bytes).hexdigest() == platform["sbom"]["sha256"]
        sbom = json.loads(sbom_bytes)
        libraries = [c for c in sbom["components"] if c.get("purl", "").startswith("pkg:pypi/")]
        listed = {(canonicalize_name(c["name"]), c["version"]) for c in libraries}
        assert len(listed) == len(libraries)
        assert all(c["purl"] == f"pkg:pypi/{c['name']}@{c['version']}" for c in libraries)
        assert all(len(c["hashes"][0]["content"]) == 64 for c in libraries)
        found.append(listed)
        numpy |= {c["hashes"][0]["content"] for c in libraries if c["name"] == "numpy"}
        arch = platform["platform"].split("/")[1]
        os_set = lock.of(arch).os
        debs = {
            c["name"]: c for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/")
        }
        assert sorted(debs) == sorted(p.name for p in os_set.packages)
        for pin in os_set.packages:
            assert debs[pin.name]["hashes"] == [{"alg": "SHA-256", "content": pin.sha256}]
            assert debs[pin.name]["version"] == pin.version
            assert pin.architecture in (arch, "all")
            assert f"arch={pin.architecture}&" in debs[pin.name]["purl"]
        assert arch in {p.architecture for p in os_set.packages}
        (system,) = [c for c in sbom["components"] if c["type"] == "operating-system"]
        assert (system["name"], system["version"]) == ("debian", lock.release)
        assert sbom["metadata"]["component"]["hashes"][0]["content"] == platform["digest"][7:]
        print(
            f"SBOM of the base image for {platform['platform']}: {len(sbom_bytes)} bytes, "
            f"{len(libraries)} distributions, {len(debs)} Debian packages"
        )
        smoked = f"smoke check {record['repository']}@{platform['digest']}"
        assert f"{smoked}: import imgproc, kfp; requirements of every distribution" in log
        assert f"{smoked}: ok" in log
    assert len(numpy) == 2  # a wheel each
    # The engine runs amd64's image of the index; arm64's lists the same distributions.
    assert found == [installed(docker_client, record["ref"])] * 2


def test_a_kiln_built_image_is_pinned_before_the_push_and_runs(
    kiln_repo: KilnRepo, docker_client: docker.DockerClient
) -> None:
    plan = kiln_repo.json("release", "--local", "--dry-run")
    images = {i["name"]: i for i in plan["images"]}
    assert sorted(images) == ["base", "packages"]  # packages mode's base is kiln's too
    image = images["base"]
    assert image["action"] == "build"
    predicted = image["digest"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", predicted)
    pins = {c["name"]: c["digest"] for c in plan["components"]}
    assert pins
    assert set(pins.values()) == {predicted}  # image mode's (packages mode pins its base)

    released = kiln_repo.json("release", "--local")
    (record,) = [i for i in released["manifest"]["images"] if i["name"] == "base"]
    assert record["digest"] == predicted
    assert f"{record['repository']}:{record['tag']}@{predicted}" in released["pushed"]
    path = record["repository"].split("/", 1)[1]
    registry = RegistryClient(kiln_repo.registry)
    assert registry.digest(path, record["tag"]) == predicted
    labels = registry.labels(path, record["tag"])
    assert labels["org.opencontainers.image.created"] == "1980-01-01T00:00:00Z"
    assert labels["org.kiln.helpers"] == f"acme-imgproc=={HELPERS['imgproc']}"
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
    (unchanged,) = [i for i in again["manifest"]["images"] if i["name"] == "base"]
    assert unchanged["digest"] == predicted
    assert unchanged["revision"] is None  # not pushed by this release
    assert unchanged["sbom"] == record["sbom"]  # the same bytes
    assert unchanged["platforms"] == record["platforms"]

    # Runs in kfp.local.DockerRunner on the image pulled by digest from the local registry.
    outputs = kiln_repo.json("run", "contrast_demo")
    (std,) = outputs.values()
    assert std > 6.0 * 3  # the stretched image's spread: several times the input's (6)


def test_a_base_in_a_registry_gives_the_digest_with_no_engine_and_is_mounted(
    kiln_repo: KilnRepo, docker_client: docker.DockerClient
) -> None:
    """A registry base (here kiln's own packages-mode base, pushed by the first release:
    any image in a registry will do): `kiln lock` pins its tag by digest, `kiln components`
    computes the image's digest with no Docker Engine at all and pins it, and the release
    pushes exactly that, mounting the base's layers from the base's repository instead of
    uploading them. A base named by a tag that cannot be pinned is refused."""
    released = kiln_repo.json("release", "--local")
    (python,) = [i for i in released["manifest"]["images"] if i["name"] == "packages"]
    base_ref = f"{python['repository']}:{python['tag']}"
    toml = kiln_repo.root / "images" / "base" / "image.toml"
    original = toml.read_text()
    on_registry = re.sub(r'(?m)^version = ".*"$', 'version = "9.0.0"', original)
    # kiln builds an image for several platforms on its OS base only (a registry base is
    # refused for more than one): this image is made for amd64 alone.
    on_registry = on_registry.replace("[image]\n", '[image]\nplatforms = ["linux/amd64"]\n')
    toml.write_text(on_registry.replace("[image]\n", f'[image]\nbase = "{base_ref}"\n'))

    unpinnable = f"{kiln_repo.registry}/acme/nothing:1"
    toml.write_text(on_registry.replace("[image]\n", f'[image]\nbase = "{unpinnable}"\n'))
    refused = kiln_repo.kiln("lock", "base")
    assert refused.returncode == 3, refused.stderr
    assert f"base {unpinnable} could not be pinned by its registry digest" in refused.stderr
    assert "images/base/requirements.lock" not in refused.stdout  # nothing written

    toml.write_text(on_registry.replace("[image]\n", f'[image]\nbase = "{base_ref}"\n'))
    locked = kiln_repo.kiln("lock", "base")
    assert locked.returncode == 0, locked.stderr
    header = (toml.parent / "requirements.lock").read_text()
    assert f'# base-digest = "{python["digest"]}"' in header
    commit(kiln_repo.root, "base 9.0.0 on a registry base")

    no_engine = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    pinned = kiln_repo.json("components", "--local", **no_engine)
    predicted = pinned["images"]["base"].split("@", 1)[1]
    for component in [c for c in pinned["components"] if c.get("image") == "base"]:
        yaml = (kiln_repo.root / component["path"]).read_text()
        assert f"image: {kiln_repo.registry}/acme/base@{predicted}" in yaml
    registry = RegistryClient(kiln_repo.registry)
    assert registry.digest("acme/base", "9.0.0") is None  # nothing pushed yet

    again = kiln_repo.json("release", "--local")
    record = next(i for i in again["manifest"]["images"] if i["tag"] == "9.0.0")
    assert record["digest"] == predicted
    assert registry.digest("acme/base", "9.0.0") == predicted
    log = (kiln_repo.root / ".kiln" / "logs" / "release.log").read_text()
    # The base is an index (amd64 and arm64): its amd64 image is what base 9.0.0 is built on.
    assert registry.digest("acme/packages", python["tag"]) == python["digest"]
    amd64 = python["platforms"][0]
    assert amd64["platform"] == "linux/amd64"
    base_manifest = json.loads(registry.manifest("acme/packages", amd64["digest"]))
    for layer in base_manifest["layers"]:  # the base's blobs: there already, never sent
        assert f"{layer['digest'][:19]} uploaded" not in log.split("acme/base:9.0.0")[-1]
    sbom = json.loads((kiln_repo.root / record["sbom"]["path"]).read_bytes())
    (base,) = [c for c in sbom["components"] if c["type"] == "container"]
    assert (base["name"], base["version"]) == (python["repository"], python["digest"])
    toml.write_text(original)
    (toml.parent / "requirements.lock").write_text(
        subprocess.run(
            ["git", "-C", str(kiln_repo.root), "show", "HEAD~1:images/base/requirements.lock"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    commit(kiln_repo.root, "back on kiln's OS base")
