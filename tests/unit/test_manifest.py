"""The manifest's JSON shape, and what a later release reads back from it."""

from __future__ import annotations

import dataclasses
import errno
import json
from pathlib import Path

import pytest

from kiln._components.yamls import FileRecord
from kiln._release.manifest import (
    ImageRecord,
    Manifest,
    PlatformRecord,
    SbomRecord,
    WheelRecord,
    recorded_wheels,
)

WHEEL = WheelRecord("acme-imgproc", "0.2.0", "acme_imgproc-0.2.0-py3-none-any.whl", "a" * 64, "x")
MANIFEST = Manifest(
    kiln="0.1.0",
    release=None,
    revision="abc",
    index="http://127.0.0.1:8765",
    registry="127.0.0.1:5765",
    kfp="2.17.3",
    wheels=(WHEEL,),
    mirrored=("numpy-2.0-py3-none-any.whl",),
    images=(
        ImageRecord(
            "base",
            "0.2.0",
            "r/acme/base",
            "0.2.0",
            "sha256:d",
            "r/acme/base@sha256:d",
            ("acme-imgproc==0.2.0",),
            "pushed",
        ),
    ),
    components=(FileRecord("stretch", "dist/components/stretch.yaml", "b" * 64, image="base"),),
    pipelines=(FileRecord("demo", "dist/pipelines/demo.yaml", "c" * 64),),
)


def test_json_shape(tmp_path: Path) -> None:
    path = tmp_path / "dist" / "manifest.json"
    MANIFEST.write(path)
    data = json.loads(path.read_text())
    assert data["images"][0]["helpers"] == ["acme-imgproc==0.2.0"]
    assert "fingerprint" not in data["images"][0]  # an image is identified by its digest
    assert data["components"][0] == {
        "name": "stretch",
        "path": "dist/components/stretch.yaml",
        "sha256": "b" * 64,
        "image": "base",
    }
    assert "image" not in data["pipelines"][0]
    assert data["wheels"][0]["filename"] == WHEEL.filename


def test_an_image_row_carries_its_sbom_and_pushing_revision_when_known(tmp_path: Path) -> None:
    kiln_built = dataclasses.replace(
        MANIFEST.images[0], sbom=SbomRecord("dist/sbom/base.cdx.json", "e" * 64), revision="abc"
    )
    path = tmp_path / "manifest.json"
    dataclasses.replace(MANIFEST, images=(kiln_built, MANIFEST.images[0])).write(path)
    rows = json.loads(path.read_text())["images"]
    assert rows[0]["sbom"] == {"path": "dist/sbom/base.cdx.json", "sha256": "e" * 64}
    assert rows[0]["revision"] == "abc"
    assert (rows[1]["sbom"], rows[1]["revision"]) == (None, None)


def test_recorded_wheels_only_for_the_same_index(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    MANIFEST.write(path)
    assert recorded_wheels(path, "http://127.0.0.1:8765") == {WHEEL.filename: "a" * 64}
    assert recorded_wheels(path, "https://pypi.example/simple") == {}
    assert recorded_wheels(tmp_path / "missing.json", "http://127.0.0.1:8765") == {}
    path.write_text("{not json")
    assert recorded_wheels(path, "http://127.0.0.1:8765") == {}


def test_a_full_disk_leaves_the_previous_manifest_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The next run reads it to tell a tampered index file (exit 8) from a changed helper.
    path = tmp_path / "dist" / "manifest.json"
    MANIFEST.write(path)
    before = path.read_bytes()

    def disk_full(self: Path, data: bytes | str, *args: object, **kwargs: object) -> int:
        with self.open("wb") as out:  # what a full disk leaves: the start of the bytes
            out.write((data if isinstance(data, bytes) else data.encode())[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        dataclasses.replace(MANIFEST, revision="def").write(path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]  # no temporary left


def test_an_image_of_several_platforms_records_each_one_s_digest_and_sbom(tmp_path: Path) -> None:
    sboms = [
        SbomRecord(f"dist/sbom/base.linux-{arch}.cdx.json", sha * 64)
        for arch, sha in (("amd64", "e"), ("arm64", "f"))
    ]
    platforms = (
        PlatformRecord("linux/amd64", "sha256:a", sboms[0]),
        PlatformRecord("linux/arm64", "sha256:b", sboms[1]),
    )
    several = dataclasses.replace(MANIFEST.images[0], sbom=sboms[0], platforms=platforms)
    path = tmp_path / "manifest.json"
    dataclasses.replace(MANIFEST, images=(several, MANIFEST.images[0])).write(path)
    rows = json.loads(path.read_text())["images"]
    assert rows[0]["digest"] == "sha256:d"  # the index's: what the YAMLs pin
    assert rows[0]["platforms"] == [
        {"platform": "linux/amd64", "digest": "sha256:a",
         "sbom": {"path": "dist/sbom/base.linux-amd64.cdx.json", "sha256": "e" * 64}},
        {"platform": "linux/arm64", "digest": "sha256:b",
         "sbom": {"path": "dist/sbom/base.linux-arm64.cdx.json", "sha256": "f" * 64}},
    ]  # fmt: skip
    assert rows[0]["sbom"] == rows[0]["platforms"][0]["sbom"]
    assert "platforms" not in rows[1]  # one platform: the shape it always had
