"""Authenticated servers, for real (conftest's ``servers``: pypiserver with an htpasswd
file and the registry with ``auth: htpasswd``, on loopback). Without credentials the
clients answer ``AuthenticationFailed``; with them, uploads, reads and pushes work; and a
full ``kiln release`` with the credentials only in its environment writes the password
nowhere (files, image, output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version as dist_version
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from kiln._errors import AuthenticationFailed
from kiln._images.oci.image import BuiltImage, canonical_json, image_manifest
from kiln._images.oci.push import push_image
from kiln._servers.credentials import Credentials, index_credentials, registry_credentials
from kiln._servers.index import IndexClient
from kiln._servers.registry import RegistryClient
from kiln._wheels.build import build_wheel
from kiln._workspace.discovery import discover
from tests import factory
from tests.e2e.conftest import PASSWORD, USER, OsPins, Servers, seed_os
from tests.e2e.runwide import untag
from tests.e2e.tools import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def engine(docker_client: docker.DockerClient, servers: Servers) -> Iterator[docker.DockerClient]:
    yield docker_client
    untag(docker_client, servers.registry)


def _tiny_wheel(tmp_path: Path, name: str) -> Path:
    root = factory.workspace(tmp_path / name)
    factory.helper(root, name, deps=())
    helper = discover(root).helper(name)
    return build_wheel(helper, tmp_path / "wheels").path


# ------------------------------------------------------------------ the clients
def test_index_needs_credentials_and_works_with_them(servers: Servers, tmp_path: Path) -> None:
    anonymous = IndexClient(servers.index_url)
    with pytest.raises(AuthenticationFailed, match=r"requires credentials .* found none"):
        anonymous.ping()
    with pytest.raises(AuthenticationFailed, match="requires credentials"):
        anonymous.files("acme-probe")

    wrong = Credentials(USER, "not-the-password", source="a test")
    with pytest.raises(AuthenticationFailed, match=f"refused user '{USER}'.*from a test"):
        IndexClient(servers.index_url, credentials=wrong).ping()

    creds = index_credentials(servers.index_url, servers.env(NETRC=str(tmp_path / "none")))
    assert creds is not None
    index = IndexClient(servers.index_url, credentials=creds)
    index.ping()
    wheel = _tiny_wheel(tmp_path, "probe")
    assert index.files("acme-probe") == {}
    index.upload([wheel])
    files = index.files("acme-probe")
    assert list(files) == [wheel.name]

    # Reads open, uploads not: twine's refusal is an authentication failure too.
    other = _tiny_wheel(tmp_path, "other")
    with pytest.raises(AuthenticationFailed, match="requires credentials"):
        anonymous.upload([other])


def test_registry_needs_credentials_and_a_push_with_them_works(
    servers: Servers, engine: docker.DockerClient, tmp_path: Path
) -> None:
    with pytest.raises(AuthenticationFailed, match=r"requires credentials .* found none"):
        RegistryClient(servers.registry).ping()
    wrong = Credentials(USER, "not-the-password", source="a test")
    with pytest.raises(AuthenticationFailed, match=f"refused user '{USER}'"):
        RegistryClient(servers.registry, credentials=wrong).ping()

    config = tmp_path / "docker"
    config.mkdir()  # an empty docker config: the environment is the only source
    creds = registry_credentials(servers.registry, servers.env(DOCKER_CONFIG=str(config)))
    assert creds is not None
    registry = RegistryClient(servers.registry, credentials=creds)
    registry.ping()
    assert registry.digest("kiln-e2e/tiny", "1") is None

    config_bytes = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    image = BuiltImage(config=config_bytes, manifest=_manifest(config_bytes), layers=())
    with pytest.raises(AuthenticationFailed, match="requires credentials"):
        push_image(RegistryClient(servers.registry), "kiln-e2e/tiny", "1", image)
    pushed = push_image(registry, "kiln-e2e/tiny", "1", image)
    assert registry.digest("kiln-e2e/tiny", "1") == pushed.digest == image.digest
    assert "kiln-e2e/tiny" in registry.catalog()


def _manifest(config: bytes) -> bytes:
    return canonical_json(image_manifest(config, (), {"org.kiln.e2e": "auth"}))


# ------------------------------------------------------------------ a full release
def _kiln(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiln", *args, "--repo", str(root)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def _files_holding(folder: Path, needle: bytes) -> list[str]:
    return [
        str(p.relative_to(folder))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and needle in p.read_bytes()
    ]


def test_release_with_credentials_only_in_the_environment_leaks_them_nowhere(
    servers: Servers, engine: docker.DockerClient, tmp_path: Path, os_pins: OsPins
) -> None:
    # Third-party wheels come from public PyPI (kfp alone: the helper has no dependencies).
    root = factory.workspace(
        tmp_path / "repo", index_port=free_port(), registry_port=free_port(),
        upstream="https://pypi.org/simple",
    )  # fmt: skip
    factory.helper(root, "authhelper", deps=())
    factory.image(root, "authimage", helpers=("authhelper",))
    factory.component(root, "maths.py", image_name="authimage")
    factory.write(  # packages mode: its YAML names the index, and must hold no credential
        root / "pipelines" / "components" / "light.py",
        "PACKAGES = True\n\n\ndef light(x: int) -> int:\n    from authhelper import answer\n\n"
        "    return x * answer()\n",
    )
    seed_os(root, os_pins)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    home = tmp_path / "home"  # no ~/.netrc, no ~/.docker: the environment is the only source
    home.mkdir()
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("KILN_INDEX_", "KILN_REGISTRY_"))
    }
    base_env = {
        **inherited,
        "HOME": str(home),
        "NETRC": str(home / "no-netrc"),
        "DOCKER_CONFIG": str(home / "no-docker"),
    }
    locked = _kiln(root, "lock", env=base_env)
    assert locked.returncode == 0, locked.stderr
    target = ("--index", servers.index_url, "--registry", servers.registry)

    refused = _kiln(root, "release", *target, env=base_env)
    assert refused.returncode == 9, refused.stderr
    assert f"kiln: authentication failed: package index {servers.index_url}/simple/" in (
        refused.stderr
    )
    assert "KILN_INDEX_USERNAME" in refused.stderr

    released = _kiln(root, "release", "-v", "--json", *target, env=base_env | servers.env())
    assert released.returncode == 0, released.stderr
    result = json.loads(released.stdout)
    # The helper, and kfp and pip (packages mode's base) mirrored from PyPI.
    uploaded = sorted(result["uploaded"])
    assert uploaded[:2] == [
        "acme_authhelper-0.1.0-py3-none-any.whl",
        f"kfp-{dist_version('kfp')}-py3-none-any.whl",
    ]
    assert [u.split("-")[0] for u in uploaded[2:]] == ["pip"]
    pushed, packages_base = result["pushed"]
    assert pushed.startswith(f"{servers.registry}/acme/authimage:0.1.0@sha256:")
    assert packages_base.startswith(f"{servers.registry}/acme/packages:py")

    canary = PASSWORD.encode()
    for output in (released.stdout, released.stderr, refused.stdout, refused.stderr):
        assert PASSWORD not in output
    log = (root / ".kiln" / "logs" / "release.log").read_text()
    assert "index credentials: the environment (KILN_INDEX_USERNAME/" in log
    assert _files_holding(root / ".kiln", canary) == []
    assert _files_holding(root / "dist", canary) == []
    generated = root / "pipelines" / "components" / "generated"
    assert _files_holding(generated, canary) == []  # YAMLs and the catalog
    spec = yaml.safe_load((generated / "light.yaml").read_text())
    (executor,) = spec["deploymentSpec"]["executors"].values()
    command = executor["container"]["command"][2]
    assert f"--index-url {servers.index_url}/simple/" in command
    assert f"'acme-authhelper @ {servers.index_url}/packages/acme_authhelper-0.1.0-py3" in command
    tagged, digest = pushed.split("@")
    image = engine.images.get(f"{tagged.rsplit(':', 1)[0]}@{digest}")  # the smoke check's pull
    assert PASSWORD not in json.dumps(image.attrs)
    assert PASSWORD not in json.dumps(image.history())
    registry = RegistryClient(servers.registry, credentials=Credentials(USER, PASSWORD))
    assert registry.digest("acme/authimage", "0.1.0") == digest
    assert PASSWORD not in json.dumps(registry.labels("acme/authimage", "0.1.0"))
