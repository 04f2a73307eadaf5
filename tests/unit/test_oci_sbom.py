"""The SBOM of a kiln-built image: every distribution with its hash and purl, every Debian
package of kiln's OS base (or a registry base by digest), the same bytes for the same
inputs; written and recorded by a release."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from kiln._images.inputs import ImageInputs
from kiln._images.oci.sbom import image_sbom
from kiln._images.oci.sbom_cache import cached_sbom, sbom_key
from kiln._release.prepare import prepare
from tests.unit.fakes import Setup, release_setup

DIGEST = "sha256:" + "d" * 64


def inputs_of(setup: Setup) -> ImageInputs:
    (inputs,) = prepare(setup.ws, setup.services).images
    return inputs


def components(sbom: bytes) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in json.loads(sbom)["components"]}


def test_every_distribution_is_listed_with_its_wheel_hash_and_purl(tmp_path: Path) -> None:
    inputs = inputs_of(release_setup(tmp_path))
    sbom = image_sbom(inputs, DIGEST)

    wheels = {
        **{f"pkg:pypi/{w.name}@{w.version}": w.sha256 for w in inputs.wheelhouse.third_party},
        **{f"pkg:pypi/{w.distribution}@{w.version}": w.sha256 for w in inputs.wheelhouse.helpers},
    }
    assert set(wheels) == {
        "pkg:pypi/numpy@1.0",
        "pkg:pypi/kfp@2.17.3",
        "pkg:pypi/acme-imgproc@0.1.0",
    }
    found = components(sbom)
    libraries = {
        ref: c for ref, c in found.items() if c["type"] == "library" and "pkg:pypi/" in ref
    }
    assert {ref: c["purl"] for ref, c in libraries.items()} == {ref: ref for ref in wheels}
    assert {ref: c["hashes"] for ref, c in libraries.items()} == {
        ref: [{"alg": "SHA-256", "content": sha}] for ref, sha in wheels.items()
    }
    doc = json.loads(sbom)
    assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.6")
    image = doc["metadata"]["component"]
    assert image["hashes"] == [{"alg": "SHA-256", "content": "d" * 64}]
    assert image["purl"].startswith(f"pkg:oci/base@{DIGEST}?")
    (edges,) = [d for d in doc["dependencies"] if d["ref"] == image["bom-ref"]]
    assert set(edges["dependsOn"]) == set(found)
    assert str(tmp_path) not in sbom.decode()  # no local paths


def test_the_same_inputs_give_the_same_bytes_anywhere(tmp_path: Path) -> None:
    first = image_sbom(inputs_of(release_setup(tmp_path / "one")), DIGEST)
    second = image_sbom(inputs_of(release_setup(tmp_path / "two")), DIGEST)
    assert first == second
    doc = json.loads(first)
    assert doc["metadata"]["timestamp"].startswith("1980-01-01T00:00:00")
    serial = doc["serialNumber"]
    assert serial.startswith("urn:uuid:")
    other = json.loads(image_sbom(inputs_of(release_setup(tmp_path / "one")), "sha256:" + "e" * 64))
    assert other["serialNumber"] != serial  # derived from the image digest


def test_kiln_s_os_base_lists_debian_and_every_package_by_purl_and_deb_hash(
    tmp_path: Path,
) -> None:
    inputs = inputs_of(release_setup(tmp_path))
    found = components(image_sbom(inputs, DIGEST))
    (system,) = [c for c in found.values() if c["type"] == "operating-system"]
    assert (system["name"], system["version"]) == ("debian", "12.8")
    debs = {ref: c for ref, c in found.items() if ref.startswith("pkg:deb/")}
    purl = "pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=amd64&distro=debian-bookworm"
    assert list(debs) == [purl]
    assert debs[purl]["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    properties = {p["name"]: p["value"] for p in debs[purl]["properties"]}
    assert properties == {"org.kiln:layer": "os", "org.kiln:source-package": "glibc"}
    assert not [c for c in found.values() if c["type"] == "container"]


def test_a_registry_base_is_listed_by_digest(tmp_path: Path) -> None:
    inputs = inputs_of(release_setup(tmp_path))
    base_digest = "sha256:" + "b" * 64
    pinned = dataclasses.replace(inputs, base=f"mirror.invalid/python@{base_digest}")
    (base,) = [
        c for c in components(image_sbom(pinned, DIGEST)).values() if c["type"] == "container"
    ]
    assert (base["name"], base["version"]) == ("mirror.invalid/python", base_digest)
    assert base["hashes"] == [{"alg": "SHA-256", "content": "b" * 64}]
    assert base["purl"] == (
        f"pkg:oci/python@{base_digest}" + "?repository_url=mirror.invalid/python"
    )
    assert not [c for c in components(image_sbom(pinned, DIGEST)) if c.startswith("pkg:deb/")]


def _git_commit(root: Path) -> str:
    git = ["git", "-C", str(root), "-c", "user.name=k", "-c", "user.email=k@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_release_writes_the_sbom_and_records_it_with_the_pushing_revision(
    tmp_path: Path,
) -> None:
    setup = release_setup(tmp_path)
    rev = _git_commit(setup.ws.root)
    first = setup.release()
    (record,) = first.manifest.images
    assert (record.status, record.revision) == ("pushed", rev)
    assert record.sbom is not None
    path = setup.ws.root / record.sbom.path
    assert record.sbom.path == "dist/sbom/base.cdx.json"
    assert record.sbom.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.read_bytes() == image_sbom(inputs_of(setup), record.digest)
    row = json.loads(first.manifest_path.read_text())["images"][0]
    assert row["sbom"] == {"path": "dist/sbom/base.cdx.json", "sha256": record.sbom.sha256}
    assert row["revision"] == rev

    again = setup.release()  # unchanged: the same SBOM, no pushing revision
    (unchanged,) = again.manifest.images
    assert (unchanged.status, unchanged.revision, unchanged.sbom) == (
        "unchanged",
        None,
        record.sbom,
    )


def test_an_sbom_is_made_once_for_the_same_inputs_and_kept_whole(tmp_path: Path) -> None:
    """A no-op release made every image's SBOM again (N=500: 2.6 s for 11); the bytes are
    kept by a key over what they are made from, and are those image_sbom makes."""
    inputs = inputs_of(release_setup(tmp_path / "repo"))
    folder = tmp_path / "cache"
    made = image_sbom(inputs, DIGEST)
    assert cached_sbom(inputs, DIGEST, folder) == made
    (entry,) = folder.iterdir()
    assert entry.name == f"{sbom_key(inputs, DIGEST)}.cdx.json"
    stamp = entry.stat().st_mtime_ns
    assert cached_sbom(inputs, DIGEST, folder) == made
    assert entry.stat().st_mtime_ns == stamp  # served, not made again

    # Anything it is made from is in the key: another digest, tag, wheel, OS package.
    other = "sha256:" + "e" * 64
    wheel = dataclasses.replace(inputs.wheelhouse.third_party[0], sha256="f" * 64)
    house = dataclasses.replace(inputs.wheelhouse, third_party=(wheel,))
    keys = {
        sbom_key(inputs, DIGEST),
        sbom_key(inputs, other),
        sbom_key(dataclasses.replace(inputs, tag="0.9.9"), DIGEST),
        sbom_key(dataclasses.replace(inputs, wheelhouse=house), DIGEST),
    }
    assert len(keys) == 4
    assert cached_sbom(inputs, other, folder) == image_sbom(inputs, other)

    # An entry cut short is made again, whole.
    entry.write_bytes(entry.read_bytes()[:-20])
    assert cached_sbom(inputs, DIGEST, folder) == made
    assert entry.read_bytes().endswith(made)


def test_a_release_writes_its_sboms_through_the_cache(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    outcome = setup.release()
    (row,) = outcome.manifest.images
    assert row.sbom is not None
    written = (setup.ws.root / row.sbom.path).read_bytes()
    (entry,) = (setup.ws.state_dir / "cache" / "sbom").iterdir()
    assert entry.read_bytes().endswith(b"\n" + written)
    assert json.loads(written)["metadata"]["component"]["hashes"][0]["content"] == (
        row.digest.removeprefix("sha256:")
    )
