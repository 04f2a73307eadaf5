"""Issue 19's acceptance, end to end, on this repo released once for the run (``repo``):
each image's tag names an OCI index of a linux/amd64 and a linux/arm64 (v8) image, at
the digests the manifest records and the committed YAMLs pin; clients kiln did not write
read it (skopeo copies every platform checking each blob, umoci unpacks the arm64 one,
Docker Engine pulls the platform it is asked for); the arm64 rootfs, unpacked from the
registry, run under qemu-aarch64-static, imports every helper of its image and computes
what the amd64 image computes under the engine. Bad input: a registry that refuses OCI
indexes stops the release with nothing tagged or written; a YAML hand-edited to one
platform's digest is drift."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests

from kiln._errors import EXIT_CODES
from kiln._images.oci.image import sha256_digest
from kiln._images.oci.push import EMPTY_INDEX
from tests.e2e.conftest import (
    _WORKSPACE,
    KILN_RUN,
    PROJECT,
    KilnCache,
    OsPins,
    copy_project,
    on_stack,
    required_tool,
)
from tests.e2e.faults.proxy import FaultProxy
from tests.e2e.runwide import untag
from tests.e2e.tools import Repo, drop_analytics, kiln_here

pytestmark = pytest.mark.e2e

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
PLATFORMS = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
]
_PIN = re.compile(r"image: \S+/([\w.-]+)@(sha256:[0-9a-f]{64})$", re.MULTILINE)
_ELF_MACHINE = {62: "x86_64", 183: "aarch64"}
WORKSPACE_IMAGES = {i.name: i.helpers for i in _WORKSPACE.images}


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _pins(folder: Path) -> dict[str, set[str]]:
    """Image name -> the digests the component YAMLs in ``folder`` pin it at."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.yaml")):
        for name, digest in _PIN.findall(path.read_text()):
            found.setdefault(name, set()).add(digest)
    return found


@dataclasses.dataclass(frozen=True)
class Released:
    """One released image as the registry holds it, copied out by skopeo."""

    name: str
    tag: str  # registry/org/name:version
    row: dict[str, Any]  # the manifest's image row
    index: bytes  # what the tag names, as stored
    layout: Path  # an OCI layout: ``all`` (the index, both platforms) and ``arm64``
    rootfs: Path  # the arm64 image unpacked by umoci
    env: list[str]  # the arm64 image's environment, from umoci's runtime config
    cwd: str

    @property
    def children(self) -> dict[str, str]:
        """Platform ("linux/amd64") -> its image's digest, from the index."""
        return {
            f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
            for m in json.loads(self.index)["manifests"]
        }


@pytest.fixture(scope="module")
def images(
    repo: Repo, released: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Released]:
    """Every image of the release: skopeo copies its index with both platforms (checking
    each blob's digest), then the arm64 image alone, which umoci unpacks."""
    skopeo, umoci = required_tool("skopeo"), required_tool("umoci")
    folder = tmp_path_factory.mktemp("clients")
    made = {}
    for row in released["manifest"]["images"]:
        started = time.monotonic()
        name = row["name"]
        tag = f"{row['repository']}:{row['tag']}"
        raw = subprocess.run(
            [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{tag}"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        layout = folder / f"{name}-oci"
        _run(skopeo, "copy", "--quiet", "--all", "--src-tls-verify=false",
             f"docker://{tag}", f"oci:{layout}:all")  # fmt: skip
        _run(skopeo, "copy", "--quiet", "--override-arch", "arm64", "--override-variant", "v8",
             f"oci:{layout}:all", f"oci:{layout}:arm64")  # fmt: skip
        bundle = folder / f"{name}-arm64"
        _run(umoci, "unpack", "--image", f"{layout}:arm64", str(bundle))
        process = json.loads((bundle / "config.json").read_text())["process"]
        print(f"{name}: skopeo copied both platforms, umoci unpacked arm64 in "
              f"{time.monotonic() - started:.1f} s")  # fmt: skip
        made[name] = Released(
            name, tag, row, raw, layout, bundle / "rootfs", process["env"], process["cwd"]
        )
    return made


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def _bytes_of(layout: Path, digest: str) -> int:
    """One platform's image: its manifest, config and layers (compressed), in bytes."""
    manifest = _blob(layout, digest)
    parsed = json.loads(manifest)
    return (
        len(manifest)
        + int(parsed["config"]["size"])
        + sum(int(x["size"]) for x in parsed["layers"])
    )


def _inside(root: Path, path: str) -> Path:
    """``path`` in the rootfs at ``root``, its symlinks followed inside it."""
    here = root
    for part in Path(path).relative_to("/").parts:
        here = here / part
        for _ in range(40):
            if not here.is_symlink():
                break
            target = here.readlink()
            here = root / target.relative_to("/") if target.is_absolute() else here.parent / target
    return here


def test_each_tag_is_an_index_of_amd64_and_arm64_at_the_pinned_digests(
    images: dict[str, Released], repo: Repo
) -> None:
    committed = _pins(PROJECT / "pipelines" / "components" / "generated")
    regenerated = _pins(repo.root / "pipelines" / "components" / "generated")
    assert set(images) == {"analytics", "base", "packages"}
    for name, image in images.items():
        index = json.loads(image.index)
        digest = "sha256:" + hashlib.sha256(image.index).hexdigest()
        # the tag names the index, at the digest kiln recorded and the YAMLs pin
        assert index["mediaType"] == OCI_INDEX, name
        assert digest == image.row["digest"] == image.row["ref"].split("@")[1], name
        assert committed[name] == {digest}, f"{name}: the committed YAMLs pin {committed[name]}"
        assert regenerated[name] == {digest}, name
        assert [m["platform"] for m in index["manifests"]] == PLATFORMS, name
        recorded = {p["platform"]: p["digest"] for p in image.row["platforms"]}
        assert image.children == recorded, name
        assert image.children["linux/amd64"] != image.children["linux/arm64"]
        # skopeo copied the index and both images, each blob checked against its digest
        layout = json.loads((image.layout / "index.json").read_text())["manifests"]
        tags = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in layout}
        assert tags["all"]["digest"] == digest, name
        assert tags["arm64"]["digest"] == recorded["linux/arm64"], name
        for platform, child in recorded.items():
            config = json.loads(_blob(image.layout, json.loads(_blob(image.layout, child))
                                      ["config"]["digest"]))  # fmt: skip
            assert f"{config['os']}/{config['architecture']}" == platform, name
        # umoci unpacked the arm64 one: its python is an aarch64 ELF file
        python = _inside(image.rootfs, "/usr/bin/python3")
        header = python.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", python
        assert _ELF_MACHINE.get(int.from_bytes(header[18:20], "little")) == "aarch64", name
        sizes = {p: _bytes_of(image.layout, d) for p, d in recorded.items()}
        each = ", ".join(f"{p} {d[:19]} {sizes[p]:,} bytes" for p, d in recorded.items())
        print(f"{name}: index {digest[:19]} ({len(image.index)} bytes); {each}")


# On the engine that runs `repo`'s pipelines: one at a time with them (a pipeline's pull of
# the same index raced this test's pulls and removal once: no such image).
@KILN_RUN
def test_the_engine_pulls_the_platform_it_is_asked_for(
    images: dict[str, Released], repo: Repo, docker_client: docker.DockerClient
) -> None:
    """`docker pull --platform linux/arm64` of the index gets the arm64 image, a pull with
    no platform the amd64 one. Pulled as ``localhost:PORT/...``, another name of the same
    registry, so that the engine's copies of ``repo``'s images, which other tests run,
    stay amd64; what was pulled is removed."""
    cli = required_tool("docker")
    image = images["base"]
    alias = f"localhost:{repo.registry.rsplit(':', 1)[1]}/{image.row['ref'].split('/', 1)[1]}"
    configs = {
        platform: json.loads(_blob(image.layout, child))["config"]["digest"]
        for platform, child in image.children.items()
    }
    try:
        for asked, platform in (("linux/arm64", "linux/arm64"), (None, "linux/amd64")):
            _run(cli, "pull", "-q", *(["--platform", asked] if asked else []), alias)
            seen = docker_client.images.get(alias).attrs
            assert f"{seen['Os']}/{seen['Architecture']}" == platform, asked
            assert seen["Id"] == configs[platform], asked
            assert alias in seen["RepoDigests"], seen["RepoDigests"]
            if asked:  # the arm64 image: nobody else's, removed before the next pull
                docker_client.images.remove(seen["Id"], force=True)
    finally:
        untag(docker_client, alias.split("/", 1)[0])
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(configs["linux/arm64"])


# Run in each image: import every helper given, compute one public function of each on
# fixed inputs, and what the standard library's native parts give (the packages image
# has Python and pip alone), print the results and their hash. Floats go through json's
# repr, which round-trips, so equal hashes mean bit-equal results.
_COMPUTE = r"""
import hashlib, importlib, io, json, math, platform, sqlite3, struct, sys, zlib
helpers = sys.argv[1:]
modules = {name: importlib.import_module(name) for name in helpers}
results = {"python": platform.python_version()}
# the standard library's native parts (libm, zlib, sqlite), on every image
with sqlite3.connect(":memory:") as db:
    total = db.execute("select sum(x * 0.1) from (select value as x from json_each('[1,2,3,4,5]'))")
    results["stdlib"] = {
        "exp": [math.exp(x / 7) for x in range(-20, 21)],
        "fsum": math.fsum(0.1 for _ in range(10)), "crc32": zlib.crc32(b"kiln" * 1000),
        "sqlite": total.fetchone()[0], "sha256": hashlib.sha256(b"kiln").hexdigest(),
    }
try:
    import numpy as np
except ImportError:  # the packages image: Python and pip, what the pod installs comes later
    import pip
    results["pip"] = pip.__version__
    np = None
png = None
values = [1.5, None, 4.25, 2.0, None, 8.0, 3.125]
if np is not None:
    results["numpy"] = np.__version__
    image = (np.arange(96, dtype=np.uint16).reshape(8, 12) * 37 % 251).astype(np.uint8)
    if "imgproc" in modules:
        imgproc = modules["imgproc"]
        results["imgproc.stretch_contrast"] = imgproc.stretch_contrast(image, 2.0, 98.0).tolist()
        results["imgproc.equalize_histogram"] = imgproc.equalize_histogram(image).tolist()
    if "tabular" in modules or "dataquality" in modules:
        import pandas as pd
        frame = pd.DataFrame({"x": values, "k": ["a", "b", None, "b", "a", "b", "c"]})
    if "tabular" in modules:
        def listed(frame):  # a frame's columns as lists, a null as None (NaN != NaN)
            return {c: [None if pd.isna(v) else v for v in frame[c].tolist()] for c in frame}
        tabular = modules["tabular"]
        results["tabular.impute_mean"] = listed(tabular.impute(frame, "mean"))
        results["tabular.impute_most_frequent"] = listed(tabular.impute(frame, "most_frequent"))
    if "dataquality" in modules:
        suite = {"columns": {"x": {"dtype": "float", "max_null_ratio": 0.2, "min": 0, "max": 5},
                             "k": {"allowed": ["a", "b"]}}}
        results["dataquality.check"] = modules["dataquality"].check(frame, suite).to_dict()
    if "viz" in modules:  # the picture's size, and the counts it plots
        present = [v for v in values if v is not None]
        png = modules["viz"].distribution_png(present, bins=5)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        results["viz.distribution_png"] = list(struct.unpack(">II", png[16:24]))
        counts, edges = np.histogram(present, bins=5)
        results["viz.plotted"] = [counts.tolist(), edges.tolist()]
text = json.dumps(results, sort_keys=True)
print(json.dumps({"machine": platform.machine(), "helpers": sorted(modules),
                  "png_sha256": png and hashlib.sha256(png).hexdigest(),
                  "results": results, "sha256": hashlib.sha256(text.encode()).hexdigest()}))
"""


def _helpers(name: str) -> list[str]:
    return sorted(WORKSPACE_IMAGES.get(name, ()))


def test_the_arm64_rootfs_under_qemu_computes_what_the_amd64_image_computes(
    images: dict[str, Released], docker_client: docker.DockerClient
) -> None:
    """qemu-aarch64-static runs the arm64 image's own python3 from the rootfs umoci
    unpacked (the rootfs as the ELF prefix, the image's environment and working folder):
    it imports every helper of the image and computes each one's result on fixed inputs;
    the amd64 image, run by the engine by the index's digest with no network, prints the
    same results, bit for bit (the hash of their JSON)."""
    qemu = required_tool("qemu-aarch64-static")
    for name, image in images.items():
        helpers = _helpers(name)
        python = _inside(image.rootfs, "/usr/bin/python3")
        env = dict(item.split("=", 1) for item in image.env)
        started = time.monotonic()
        proc = subprocess.run(
            [qemu, "-L", str(image.rootfs), str(python), "-c", _COMPUTE, *helpers],
            capture_output=True, text=True, env=env, cwd=_inside(image.rootfs, image.cwd),
            timeout=600, check=False,
        )  # fmt: skip
        emulated = time.monotonic() - started
        assert proc.returncode == 0, f"{name} under qemu:\n{proc.stderr}"
        arm64 = json.loads(proc.stdout.splitlines()[-1])
        started = time.monotonic()
        out = docker_client.containers.run(
            image.row["ref"], ["-c", _COMPUTE, *helpers], entrypoint=["python3"],
            network_mode="none", remove=True, stderr=False,
        ).decode()  # fmt: skip
        native = time.monotonic() - started
        amd64 = json.loads(out.splitlines()[-1])
        assert (arm64["machine"], amd64["machine"]) == ("aarch64", "x86_64"), name
        assert arm64["helpers"] == amd64["helpers"] == helpers, name
        assert arm64["results"] == amd64["results"], name
        assert arm64["sha256"] == amd64["sha256"], name
        png = {arm64["png_sha256"]: "same PNG bytes", None: "no PNG"}.get(
            amd64["png_sha256"], "PNG bytes differ (its size and plotted data are equal)"
        )
        print(
            f"{name}: helpers {helpers or 'none'}: results sha256 {amd64['sha256'][:16]} on "
            f"both; qemu arm64 {emulated:.1f} s, engine amd64 {native:.1f} s; {png}"
        )


@pytest.fixture(scope="module")
def own(
    docker_client: docker.DockerClient,
    os_pins: OsPins,
    kiln_cache: KilnCache,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Repo]:
    """A copy of this repo on a stack of its own (its caches: the run's, warm), with the
    analytics image and what runs on it removed: the bad-input tests need one image."""
    root = tmp_path_factory.mktemp("refused") / "monorepo"
    ports = copy_project(root, os_pins, kiln_cache)
    drop_analytics(root)
    with on_stack(root, *ports, docker_client) as made:
        up = made.kiln("stack", "up")
        assert up.returncode == 0, up.stderr
        yield made


def _files(root: Path) -> dict[str, bytes]:
    """Every file of the checkout (not kiln's .kiln state) and its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".kiln" not in p.relative_to(root).parts
    }


def test_a_registry_that_refuses_oci_indexes_stops_the_release_before_anything_is_published(
    own: Repo, docker_client: docker.DockerClient
) -> None:
    """A registry that answers the PUT of an OCI index with 400 MANIFEST_INVALID (as
    registries without index support do): the release probes it (the empty index, by
    digest) before it publishes anything, and exits with CommandFailed's code, naming the
    refusal, the registry's error and the fixes; nothing uploaded to the index, no blob,
    manifest or tag in the registry, no file of the checkout written."""
    refused: list[str] = []

    def refuse(method: str, path: str, headers: Any) -> tuple[int, bytes] | None:
        if method == "PUT" and headers.get("Content-Type", "").split(";")[0] == OCI_INDEX:
            refused.append(path)
            error = {"code": "MANIFEST_INVALID", "message": "manifest invalid",
                     "detail": "unsupported manifest media type"}  # fmt: skip
            return 400, json.dumps({"errors": [error]}).encode()
        return None

    proxy = FaultProxy(own.registry, answer=refuse)
    before = _files(own.root)
    try:
        proc = kiln_here(own.root, "release", "--index", own.index_url, "--registry",
                         proxy.address)  # fmt: skip
    finally:
        proxy.close()
        untag(docker_client, proxy.address)
    assert proc.returncode == EXIT_CODES["step failed"], proc.stderr
    assert "Traceback" not in proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("kiln: ")]
    assert error.startswith("kiln: step failed: "), proc.stderr
    assert f"registry {proxy.address} refuses OCI image indexes (" in error
    for said in ("MANIFEST_INVALID", "nothing was published", "stores OCI image indexes",
                 'platforms = ["linux/amd64"]'):  # fmt: skip
        assert said in error, error
    assert len(refused) == 1, refused  # the probe: the empty index, by its digest
    assert refused[0].endswith(f"/manifests/{sha256_digest(EMPTY_INDEX)}"), refused
    # nothing in the registry behind the proxy, asked directly, nor on the index
    registry = f"http://{own.registry}/v2"
    assert not requests.get(f"{registry}/_catalog", timeout=30).json()["repositories"]
    listing = requests.get(f"{own.index_url}/simple/", timeout=30)
    assert "acme" not in listing.text, listing.text
    # no file of the checkout written: no wheel in dist/, no YAML, no manifest, no SBOM
    assert _files(own.root) == before
    print(error)


def test_a_yaml_pinning_one_platform_s_image_is_drift(
    own: Repo, images: dict[str, Released]
) -> None:
    """A component YAML hand-edited from the base image's index digest to its linux/amd64
    image's digest (the one docker inspect shows on an amd64 machine): `kiln components
    --local --check` exits 3 naming that YAML alone, and says it pins one platform's
    image of the index."""
    wrote = own.kiln("components", "--local")  # the copy's YAMLs: its registry port
    assert wrote.returncode == 0, wrote.stderr
    generated = own.root / "pipelines" / "components" / "generated"
    index, amd64 = images["base"].row["digest"], images["base"].children["linux/amd64"]
    [path] = [p for p in sorted(generated.glob("*.yaml")) if f"/base@{index}" in p.read_text()]
    text = path.read_text()
    path.write_text(text.replace(f"/base@{index}", f"/base@{amd64}"))
    try:
        proc = own.kiln("components", "--local", "--check")
    finally:
        path.write_text(text)
    assert proc.returncode == 3, proc.stderr
    error = proc.stderr
    assert "1 component YAML(s) are stale" in error, error
    assert f"pipelines/components/generated/{path.name} differs" in error, error
    assert f"pins the linux/amd64 image {amd64}, not the index {index}" in error, error
    print(error.splitlines()[-1] if error else "")
