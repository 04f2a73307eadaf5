"""Caches are checked, not trusted (issue 18, defect 3 and the layer cache of defect 7),
end to end on a copy of this repo with its own, empty stack:

- the component-YAML cache entry of ``enhance_contrast`` edited to run
  ``docker.io/attacker/evil:latest`` (its sha256 line rewritten to match, as whoever
  edits it would): the release regenerates it, the committed YAML pins the image's real
  digest, and ``kiln components --check`` and ``kiln check`` pass;
- the base image's helper-layer blob altered at the same size: the release rebuilds the
  layer instead of pushing it (the registry refused it, DIGEST_INVALID, at every run).

The copy's caches are hard links to the run's cache (``kiln_cache``), in folders of its
own: a damaged entry is a new file renamed over the link, so the shared cache and the
other workers never see it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from kiln._components.generate import ENTRY_MAGIC, pinned_images
from tests.damage import flip_a_byte, replace_file
from tests.e2e.conftest import HELPERS, KilnCache, OsPins, copy_project, on_stack
from tests.e2e.tools import Repo, drop_analytics

pytestmark = pytest.mark.e2e

EVIL = "docker.io/attacker/evil:latest"


@pytest.fixture(scope="module")
def private(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    os_pins: OsPins,
    kiln_cache: KilnCache,
) -> Iterator[Repo]:
    """A copy of this repo (base image only) on its own stack, its .kiln/cache and
    .kiln/wheelhouse its own folders of hard links to the run's cache."""
    root = tmp_path_factory.mktemp("caches")
    index_port, registry_port = copy_project(root, os_pins, kiln_cache)
    drop_analytics(root)
    for name in ("cache", "wheelhouse"):
        link = root / ".kiln" / name
        link.unlink()  # a symlink to the run's cache
        shutil.copytree(kiln_cache.state / name, link, symlinks=True, copy_function=os.link)
    with on_stack(root, index_port, registry_port, docker_client) as repo:
        yield repo


def _poison_components(root: Path) -> list[Path]:
    """Every cached YAML of ``enhance_contrast`` made to run EVIL; the entries."""
    poisoned = []
    for entry in (root / ".kiln" / "cache" / "components").glob("*/*.yaml"):
        data = entry.read_bytes()
        if b"(enhance_contrast, image mode)" not in data:
            continue
        head, _, content = data.partition(b"\n")
        if not head.startswith(ENTRY_MAGIC):  # an entry of a kiln that stored no sha256
            head, content = b"", data
        evil = b"\n".join(
            line.split(b"image:")[0] + b"image: " + EVIL.encode() if b" image: " in line else line
            for line in content.split(b"\n")
        )
        if head:
            evil = ENTRY_MAGIC + hashlib.sha256(evil).hexdigest().encode() + b"\n" + evil
        replace_file(entry, evil)
        poisoned.append(entry)
    return poisoned


def _damage_helper_layers(root: Path) -> dict[Path, str]:
    """Every cached blob of the base image's helper layer (imgproc alone) altered at its
    size: blob path -> its digest."""
    wheel = f"acme_imgproc-{HELPERS['imgproc']}-py3-none-any.whl"
    oci = root / ".kiln" / "cache" / "oci"
    damaged = {}
    for entry in (oci / "layers").glob("*.json"):
        doc = json.loads(entry.read_text())
        if set(doc.get("files", {}).values()) != {wheel}:
            continue
        blob = oci / "blobs" / "sha256" / doc["digest"].removeprefix("sha256:")
        if blob in damaged:  # two entries (other inputs keys) may name one blob: flipping
            continue  # its byte twice would give the blob back whole
        replace_file(blob, flip_a_byte(blob.read_bytes()))
        damaged[blob] = doc["digest"]
    return damaged


def _sha256(path: Path) -> str:
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def test_a_poisoned_component_cache_and_a_damaged_layer_blob_are_rebuilt(
    private: Repo, kiln_cache: KilnCache
) -> None:
    warmed = private.kiln("components", "--local")  # this kiln's entries for this copy
    assert warmed.returncode == 0, warmed.stderr
    poisoned = _poison_components(private.root)
    damaged = _damage_helper_layers(private.root)
    assert poisoned
    assert damaged
    assert all(_sha256(blob) != digest for blob, digest in damaged.items())
    shared = kiln_cache.state / "cache" / "oci" / "blobs" / "sha256"
    assert all(_sha256(shared / blob.name) == digest for blob, digest in damaged.items())

    released = private.kiln("release", "--local")

    assert released.returncode == 0, released.stderr
    said = released.stderr.splitlines()
    assert [line for line in said if line.startswith("component cache entry ")]
    assert all("did not match its key" in line for line in said if "component cache" in line)
    rebuilt = [line for line in said if line.startswith("layer cache blob ")]
    assert rebuilt  # the blob this image uses, found altered and rebuilt
    for line in rebuilt:
        blob = Path(line.split()[3])
        assert _sha256(blob) == damaged[blob]
    yaml = private.root / "pipelines" / "components" / "generated" / "enhance_contrast.yaml"
    images = pinned_images(yaml.read_bytes())
    assert EVIL not in yaml.read_text()
    (image,) = images
    assert image.startswith(f"{private.registry}/acme/base@sha256:")
    manifest = json.loads((private.root / "dist" / "manifest.json").read_text())
    (base,) = [i for i in manifest["images"] if i["name"] == "base"]
    assert image == f"{base['repository']}@{base['digest']}"

    for check in (("components", "--local", "--check"), ("check", "--local")):
        proc = private.kiln(*check)
        assert proc.returncode == 0, f"kiln {' '.join(check)}: {proc.stderr}"
        assert EVIL not in proc.stdout + proc.stderr

    again = private.kiln("release", "--local")
    assert again.returncode == 0, again.stderr
    assert "did not match" not in again.stderr
    # The run's cache was never touched.
    assert all(_sha256(shared / blob.name) == digest for blob, digest in damaged.items())
