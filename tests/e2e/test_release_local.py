"""The walking skeleton end to end, on real servers: pypiserver, the CNCF registry,
Docker Engine and kfp.local.DockerRunner."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from kfp import components, local
from packaging.utils import canonicalize_name

from kiln._lock.format import parse_lock
from kiln._servers.registry import RegistryClient
from tests.e2e.conftest import HELPERS, IMAGES, KILN_RUN
from tests.e2e.tools import Repo, by, installed, private_venv

pytestmark = pytest.mark.e2e

# The platforms the example repository is made for (pyproject.toml), in its order, and
# what an OCI index says of each.
PLATFORMS = ("linux/amd64", "linux/arm64")
ARCHITECTURES = {
    "linux/amd64": {"architecture": "amd64"},
    "linux/arm64": {"architecture": "arm64", "variant": "v8"},
}
# A binary wheel's platform tag names the machine it is built for.
MACHINES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
DIGEST_REF = re.compile(r"^127\.0\.0\.1:\d+/acme/(base|analytics|packages)@sha256:[0-9a-f]{64}$")
# What the component computes, run on the host against the published wheel.
STRETCH_STD = """
import numpy as np
from imgproc import stretch_contrast
rng = np.random.default_rng(7)
image = rng.normal(128, 6, size=(64, 64)).clip(0, 255).astype(np.uint8)
print(float(stretch_contrast(image, 2.0, 98.0).std()))
"""


def index_state(repo: Repo) -> dict[str, Any]:
    page = requests.get(f"{repo.index_url}/simple/", timeout=10).text
    projects = sorted(re.findall(r'href="([^"]+)/?"', page))
    files = {p: requests.get(f"{repo.index_url}/simple/{p}", timeout=10).text for p in projects}
    return {"projects": projects, "files": files}


def registry_state(repo: Repo) -> dict[str, Any]:
    accept = ", ".join(
        [
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.oci.image.manifest.v1+json",  # kiln-built images
            "application/vnd.oci.image.index.v1+json",  # those made for several platforms
        ]
    )
    catalog = requests.get(f"http://{repo.registry}/v2/_catalog", timeout=10).json()
    state = {}
    for name in catalog["repositories"] or []:
        tags = requests.get(f"http://{repo.registry}/v2/{name}/tags/list", timeout=10).json()
        for tag in tags["tags"] or []:
            head = requests.head(
                f"http://{repo.registry}/v2/{name}/manifests/{tag}",
                headers={"Accept": accept},
                timeout=10,
            )
            state[f"{name}:{tag}"] = head.headers["Docker-Content-Digest"]
    return state


def check_index(repo: Repo, record: dict[str, Any]) -> None:
    """An image made for this repo's platforms (pyproject.toml's, amd64 then arm64): its
    row's digest is the index the registry holds at that digest, whose manifests are
    exactly the row's ``platforms``, each by its digest and for its platform, each with
    its own SBOM (the row's ``sbom``: the first platform's)."""
    platforms = record["platforms"]
    assert [p["platform"] for p in platforms] == list(PLATFORMS), record["name"]
    assert record["sbom"] == platforms[0]["sbom"]
    assert [p["sbom"]["path"] for p in platforms] == [
        f"dist/sbom/{record['name']}.{p.replace('/', '-')}.cdx.json" for p in PLATFORMS
    ]
    path = record["repository"].split("/", 1)[1]
    registry = RegistryClient(repo.registry)
    raw = registry.manifest(path, record["digest"], lists=True)
    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == record["digest"]
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    entries = [(m["digest"], m["platform"]) for m in index["manifests"]]
    assert entries == [
        (p["digest"], {"os": "linux", **ARCHITECTURES[p["platform"]]}) for p in platforms
    ], record["name"]
    for platform in platforms:
        sbom = repo.root / platform["sbom"]["path"]
        assert hashlib.sha256(sbom.read_bytes()).hexdigest() == platform["sbom"]["sha256"]
        described = json.loads(sbom.read_bytes())["metadata"]["component"]
        assert described["hashes"][0]["content"] == platform["digest"][7:]


def test_manifest_names_wheels_images_and_components(repo: Repo, released: dict[str, Any]) -> None:
    manifest = released["manifest"]
    assert released["uploaded"], "the first release uploads the helpers and the mirror"
    assert len(released["pushed"]) == len(IMAGES) + 1  # and packages mode's base

    wheels = by(manifest["wheels"], "filename")
    assert sorted(wheels) == [f"acme_{h}-{v}-py3-none-any.whl" for h, v in HELPERS.items()]
    for filename, wheel in wheels.items():
        built = repo.root / "dist" / "wheels" / filename
        assert wheel["sha256"] == hashlib.sha256(built.read_bytes()).hexdigest()
        project = filename.split("-")[0].replace("_", "-")
        page = requests.get(f"{repo.index_url}/simple/{project}/", timeout=10).text
        assert f"{filename}#sha256={wheel['sha256']}" in page

    images = by(manifest["images"], "name")
    for record in images.values():
        check_index(repo, record)
    packages = images.pop("packages")  # packages mode's base, tagged by its own digest
    assert packages["tag"] == f"py3.11-{packages['digest'][7:19]}"
    assert {name: image["version"] for name, image in images.items()} == IMAGES
    for image in images.values():
        assert DIGEST_REF.match(image["ref"]), image["ref"]
    # Other tests of the session may push later versions: these tags are what matters.
    held = registry_state(repo)
    for name, image in images.items():
        assert held[f"acme/{name}:{image['version']}"] == image["digest"]

    components = by(manifest["components"], "name")
    assert {"stretch_contrast_demo", "check_quality", "compare_images"} <= set(components)
    for component in components.values():
        yaml = (repo.root / component["path"]).read_text()
        pinned = set(re.findall(r"(?m)^\s+image: (\S+)$", yaml))
        if component.get("image"):  # image mode: the digest, and nothing installed at start
            assert pinned == {images[component["image"]]["ref"]}, component["name"]
            assert "pip install" not in yaml
        else:  # packages mode: kiln's base with pip, by digest, and hash-pinned installs
            assert pinned == {packages["ref"]}, component["name"]
            assert "'--require-hashes'" in yaml
        assert component["sha256"] == hashlib.sha256(yaml.encode()).hexdigest()
    for pipeline in manifest["pipelines"]:
        assert Path(repo.root / pipeline["path"]).is_file()
    assert released["on_disk"] == manifest


def _host_expected(tmp_path: Path, repo: Repo) -> float:
    """Install the helper from the private index only (fallback off) and compute."""
    python = private_venv(tmp_path / "venv", repo.index_url, f"acme-imgproc=={HELPERS['imgproc']}")
    out = subprocess.run(
        [python, "-c", STRETCH_STD], capture_output=True, text=True, check=True
    ).stdout
    return float(out)


@pytest.fixture(scope="module")
def expected(
    tmp_path_factory: pytest.TempPathFactory, repo: Repo, released: dict[str, Any]
) -> float:
    return _host_expected(tmp_path_factory.mktemp("client"), repo)


@KILN_RUN
def test_helper_installs_from_private_index_alone(expected: float) -> None:
    assert 40.0 < expected < 80.0  # a 6-sigma-wide image stretched over 0..255


def test_image_by_digest_contains_helper_and_kfp(
    docker_client: docker.DockerClient, repo: Repo, released: dict[str, Any]
) -> None:
    image = by(released["manifest"]["images"], "name")["base"]
    ref = image["ref"]
    repository, digest = ref.split("@")
    docker_client.images.pull(repository, tag=digest)
    out = docker_client.containers.run(
        ref,
        ["python3", "-c", "import imgproc, kfp, numpy; print(kfp.__version__, imgproc.__name__)"],
        network_mode="none",
        remove=True,
    )
    path = repo.root / "images" / "base" / "requirements.lock"
    (kfp,) = [p.version for p in parse_lock(path, path.read_text()).pins if p.name == "kfp"]
    assert out.decode().split() == [kfp, "imgproc"]
    labels = docker_client.images.get(ref).labels
    assert labels["org.kiln.helpers"] == f"acme-imgproc=={HELPERS['imgproc']}"
    # kiln builds it: its identity is the digest itself, no fingerprint label.
    assert "org.kiln.fingerprint" not in labels
    assert docker_client.images.get_registry_data(ref).id == digest


def test_each_image_holds_exactly_its_lock_and_helpers_and_its_sbom_says_so(
    repo: Repo, released: dict[str, Any], docker_client: docker.DockerClient
) -> None:
    """The distributions each example image's python3 finds (kiln's OS base has none) are
    the lock's pins plus the image's helpers at their versions (packages mode's base: the
    locked pip alone); each platform's SBOM lists exactly that, each with the hash of the
    wheel installed on that platform: a file the private index serves (the release
    mirrors every platform's), a binary one built for that platform's machine (numpy's
    aarch64 wheel in the arm64 SBOM), and its Debian packages of that architecture."""
    served = _served(repo)
    for record in released["manifest"]["images"]:
        if record["name"] == "packages":
            path = repo.root / "pipelines" / "requirements.lock"
            lock = parse_lock(path, path.read_text())
            expected = {(p.name, p.version) for p in lock.pins if p.name == "pip"}
        else:
            image = repo.root / "images" / record["name"]
            path = image / "requirements.lock"
            lock = parse_lock(path, path.read_text())
            helpers = {
                (canonicalize_name(h.split("==")[0]), h.split("==")[1]) for h in record["helpers"]
            }
            expected = {(p.name, p.version) for p in lock.pins} | helpers
        # The engine runs this machine's platform of the index (amd64).
        assert installed(docker_client, record["ref"]) == expected, record["name"]
        wheels: dict[str, dict[str, str]] = {}  # platform -> name -> wheel filename
        for platform in record["platforms"]:
            sbom = json.loads((repo.root / platform["sbom"]["path"]).read_bytes())
            libraries = [c for c in sbom["components"] if c.get("purl", "").startswith("pkg:pypi/")]
            assert {(canonicalize_name(c["name"]), c["version"]) for c in libraries} == expected
            machine = MACHINES[platform["platform"]]
            wheels[platform["platform"]] = {}
            for c in libraries:
                filename = served[c["hashes"][0]["content"]]  # a file of the private index
                tag = filename.removesuffix(".whl").rsplit("-", 1)[-1]
                assert tag == "any" or machine in tag, (platform["platform"], filename)
                wheels[platform["platform"]][canonicalize_name(c["name"])] = filename
            debs = [c for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/")]
            arch = platform["platform"].split("/")[1]
            archs = set(re.findall(r"\?arch=(\w+)&", " ".join(c["purl"] for c in debs)))
            assert archs == {arch, "all"}, (platform["sbom"]["path"], archs)
        amd64, arm64 = (wheels[p] for p in PLATFORMS)
        assert amd64.keys() == arm64.keys()
        binary = sorted(n for n in amd64 if amd64[n] != arm64[n])
        if record["name"] != "packages":  # pip alone: one pure wheel for both
            assert "numpy" in binary, (amd64, arm64)
            assert "aarch64" in arm64["numpy"], arm64["numpy"]
        print(
            f"{record['name']}: {len(expected)} distributions, as locked, in image and both "
            f"SBOMs; per platform: {', '.join(binary) or 'none'}"
        )


def _served(repo: Repo) -> dict[str, str]:
    """sha256 -> filename of every file the private index serves."""
    found: dict[str, str] = {}
    for page in index_state(repo)["files"].values():
        for filename, sha in re.findall(r'href="[^"#]*/([^"/#]+)#sha256=([0-9a-f]{64})"', page):
            found[sha] = filename
    return found


@KILN_RUN
def test_component_yaml_runs_in_docker_runner(
    repo: Repo, released: dict[str, Any], expected: float, tmp_path: Path
) -> None:
    path = (
        repo.root / by(released["manifest"]["components"], "name")["stretch_contrast_demo"]["path"]
    )
    component = components.load_component_from_file(str(path))
    # packages mode: the pod installs imgproc, numpy and kfp from the local index at start
    local.init(runner=local.DockerRunner(network_mode="host"), pipeline_root=str(tmp_path / "root"))
    task = component(seed=7, low_percentile=2.0, high_percentile=98.0)
    assert task.output == pytest.approx(expected, rel=1e-9)


@KILN_RUN
def test_kiln_run_runs_the_pipeline(repo: Repo, released: dict[str, Any], expected: float) -> None:
    outputs = repo.kiln_json("run", "contrast_demo")
    assert outputs["Output"] == pytest.approx(expected, rel=1e-9)


def test_second_release_uploads_and_pushes_nothing(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    before = (index_state(scratch), registry_state(scratch))
    proc = scratch.kiln("release", "--local", "--json")
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert (again["uploaded"], again["pushed"]) == ([], [])
    assert "everything is up to date" not in proc.stdout  # stdout is JSON only
    refs = [i["ref"] for i in scratch_released["manifest"]["images"]]
    assert [i["ref"] for i in again["manifest"]["images"]] == refs
    assert {i["status"] for i in again["manifest"]["images"]} == {"unchanged"}
    assert (index_state(scratch), registry_state(scratch)) == before
    text = scratch.kiln("release", "--local")
    assert "everything is up to date: nothing uploaded, nothing pushed" in text.stdout


def test_dry_run_prints_the_plan(scratch: Repo, scratch_released: dict[str, Any]) -> None:
    plan = scratch.kiln_json("release", "--local", "--dry-run")
    assert {f["action"] for f in plan["files"]} == {"skip"}
    assert [i["action"] for i in plan["images"]] == ["skip"] * (len(IMAGES) + 1)
    assert plan["refusals"] == []


# ---------------------------------------------------------------- bad input
def _edit(path: Path, old: str, new: str) -> str:
    original = path.read_text()
    assert old in original
    path.write_text(original.replace(old, new))
    return original


def test_unknown_helper_in_image_changes_nothing(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    before = (index_state(scratch), registry_state(scratch))
    config = scratch.root / "images" / "base" / "image.toml"
    original = _edit(config, 'helpers = ["imgproc"]', 'helpers = ["imgproc", "imgprock"]')
    try:
        proc = scratch.kiln("release", "--local")
    finally:
        config.write_text(original)
    assert proc.returncode == 3
    assert "images/base/image.toml" in proc.stderr
    assert "imgprock" in proc.stderr
    assert (index_state(scratch), registry_state(scratch)) == before


def test_malformed_helper_pyproject_changes_nothing(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    before = (index_state(scratch), registry_state(scratch))
    pyproject = scratch.root / "helpers" / "imgproc" / "pyproject.toml"
    original = _edit(pyproject, "[project]", "[project")
    try:
        proc = scratch.kiln("release", "--local")
    finally:
        pyproject.write_text(original)
    assert proc.returncode == 3
    assert "helpers/imgproc/pyproject.toml: not valid TOML" in proc.stderr
    assert (index_state(scratch), registry_state(scratch)) == before


def test_no_docker_engine_is_a_clear_error(scratch: Repo, scratch_released: dict[str, Any]) -> None:
    """A release with nothing to push needs no engine (the bases are known from before);
    one with an image to push stops before publishing anything: the engine smoke-checks
    what is pushed."""
    before = (index_state(scratch), registry_state(scratch))
    no_engine = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    proc = scratch.kiln("release", "--local", "--json", env=no_engine)
    assert proc.returncode == 0, proc.stderr
    assert (json.loads(proc.stdout)["uploaded"], json.loads(proc.stdout)["pushed"]) == ([], [])

    toml = scratch.root / "images" / "base" / "image.toml"
    original = _edit(toml, 'version = "', 'version = "9')  # a new version: to be pushed
    try:
        proc = scratch.kiln("release", "--local", env=no_engine)
    finally:
        toml.write_text(original)
    assert proc.returncode == 5
    assert "Docker Engine is not reachable at unix:///nonexistent/docker.sock" in proc.stderr
    assert (index_state(scratch), registry_state(scratch)) == before


def test_changed_helper_without_bump_is_refused(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    before = (index_state(scratch), registry_state(scratch))
    source = scratch.root / "helpers" / "imgproc" / "src" / "imgproc" / "_contrast.py"
    original = source.read_text()
    source.write_text(original + "\n# a change\n")
    try:
        proc = scratch.kiln("release", "--local")
    finally:
        source.write_text(original)
    assert proc.returncode == 4
    published = f"acme-imgproc {HELPERS['imgproc']} is already published with different bytes"
    assert published in proc.stderr
    assert "bump version in helpers/imgproc/pyproject.toml" in proc.stderr
    assert (index_state(scratch), registry_state(scratch)) == before
