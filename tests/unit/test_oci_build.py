"""Python layers through the layer cache, and the base read from a (fake) engine."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import pytest

from kiln._errors import ConfigError, ServiceUnavailable
from kiln._images.oci.base import load_base, probe_scheme
from kiln._images.oci.build import python_layer
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.compress import GZIP
from kiln._images.oci.layers import write_tar
from tests.unit.test_oci_install import HOST_PYTHON, SCHEME, make_wheel, tool_wheel


def layer(name: str, wheels: list[Path], cache: LayerCache) -> Any:
    return python_layer(
        name, wheels, scheme=SCHEME, cache=cache, compression=GZIP, what="image acme/t",
        compiler=HOST_PYTHON,
    )  # fmt: skip


def test_a_layer_is_built_once_and_a_helper_change_leaves_the_third_party_layer(
    tmp_path: Path,
) -> None:
    cache = LayerCache(tmp_path / "cache")
    third = [tool_wheel(tmp_path / "a"), make_wheel(tmp_path / "a", "dep", "1.0", {"dep.py": b""})]
    helper = make_wheel(tmp_path / "a", "acme-h", "0.1.0", {"h/__init__.py": b"V = 1\n"})
    first = (layer("third-party", third, cache), layer("helpers", [helper], cache))
    assert [x.cached for x in first] == [False, False]

    # The same wheels elsewhere, copied in another order with other mtimes: the cache
    # answers by their content.
    moved = tmp_path / "b"
    moved.mkdir()
    for wheel in reversed(third):
        shutil.copy(wheel, moved / wheel.name)
        os.utime(moved / wheel.name, (1, 1))
    again = layer("third-party", sorted(moved.iterdir()), cache)
    assert again.cached
    assert again.blob == first[0].blob
    assert again.blob.files == first[0].blob.files  # kept for collision checks

    changed = make_wheel(tmp_path / "c", "acme-h", "0.1.0", {"h/__init__.py": b"V = 2\n"})
    helpers = layer("helpers", [changed], cache)
    assert not helpers.cached
    assert helpers.blob.digest != first[1].blob.digest
    assert layer("third-party", third, cache).cached


def test_a_damaged_cache_entry_is_rebuilt_to_the_same_bytes(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    wheels = [tool_wheel(tmp_path)]
    built = layer("third-party", wheels, cache)
    built.blob.path.write_bytes(b"truncated")
    rebuilt = layer("third-party", wheels, cache)
    assert not rebuilt.cached
    assert rebuilt.blob.digest == built.blob.digest
    assert f"sha256:{hashlib.sha256(rebuilt.blob.path.read_bytes()).hexdigest()}" == (
        rebuilt.blob.digest
    )


# ------------------------------------------------------------------ the base, from an engine
class FakeImage:
    def __init__(self, saved: bytes, image_id: str) -> None:
        self.id = image_id
        self._saved = saved
        self.saves = 0

    def save(self, named: bool = False) -> Iterator[bytes]:
        self.saves += 1
        for start in range(0, len(self._saved), 1000):  # the SDK streams chunks
            yield self._saved[start : start + 1000]


class FakeEngine:
    def __init__(self, image: FakeImage | None) -> None:
        self.images = self
        self._image = image

    def get(self, ref: str) -> FakeImage:
        if self._image is None:
            raise docker.errors.ImageNotFound(f"no such image: {ref}")
        return self._image


def docker_save(layer_tar: bytes, diff_id: str | None = None) -> tuple[bytes, str]:
    """A ``docker save`` archive (legacy format) of a one-layer image, and its ID."""
    diff_id = diff_id or f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["python3"]},
         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    ).encode()  # fmt: skip
    image_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{image_id}.json", "Layers": ["abc/layer.tar"]}])
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (
            ("abc/layer.tar", layer_tar),
            (f"{image_id}.json", config),
            ("manifest.json", manifest.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue(), f"sha256:{image_id}"


def a_layer_tar(tmp_path: Path) -> bytes:
    (tmp_path / "tree" / "etc").mkdir(parents=True)
    (tmp_path / "tree" / "etc" / "os-release").write_text("ID=debian\n")
    out = io.BytesIO()
    write_tar(tmp_path / "tree", out)
    return out.getvalue()


def test_the_base_is_saved_once_its_layers_compressed_and_reused_by_digest(
    tmp_path: Path,
) -> None:
    layer_tar = a_layer_tar(tmp_path)
    saved, image_id = docker_save(layer_tar)
    image = FakeImage(saved, image_id)
    engine = cast(docker.DockerClient, FakeEngine(image))
    cache = LayerCache(tmp_path / "cache")

    base = load_base(engine, "local/python:3.11", cache, GZIP)
    assert base.image_id == image_id
    assert base.config["config"] == {"Cmd": ["python3"]}
    (blob,) = base.layers
    assert blob.diff_id == f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"
    assert gzip.decompress(blob.path.read_bytes()) == layer_tar
    # Unpacked for the base's python3 in the same pass, from the uncompressed tar.
    rootfs = cache.root / "rootfs" / image_id.partition(":")[2]
    assert (rootfs / "etc" / "os-release").read_text() == "ID=debian\n"
    assert list((cache.root / "tmp").iterdir()) == []  # the spooled tars are gone

    assert load_base(engine, "local/python:3.11", cache, GZIP) == base
    assert image.saves == 1  # the second time, config and layers came from the cache


def test_a_saved_layer_that_is_not_its_diff_id_is_refused(tmp_path: Path) -> None:
    saved, image_id = docker_save(a_layer_tar(tmp_path), diff_id="sha256:" + "f" * 64)
    engine = cast(docker.DockerClient, FakeEngine(FakeImage(saved, image_id)))
    cache = LayerCache(tmp_path / "cache")
    with pytest.raises(ServiceUnavailable, match=r"sha256s are not the image's diff_ids"):
        load_base(engine, "local/python:3.11", cache, GZIP)
    assert list((cache.root / "rootfs").iterdir()) == []  # nothing unpacked is kept


def test_a_missing_base_is_named_with_the_fix(tmp_path: Path) -> None:
    engine = cast(docker.DockerClient, FakeEngine(None))
    with pytest.raises(ConfigError) as err:
        load_base(engine, "local/python:3.11", LayerCache(tmp_path), GZIP)
    assert str(err.value).startswith("base image 'local/python:3.11' is not on the Docker Engine")
    assert "KILN_BASE_IMAGE" in str(err.value)


class FakeBasePython:
    """What the probe asks of the base's interpreter: it prints paths under the folder
    the base is unpacked in; the scheme holds them as image paths."""

    def __init__(self, root: str, doc: dict[str, Any]) -> None:
        self.root = root
        self.doc = doc
        self.image_python = "/usr/local/bin/python3"
        self.runs: list[dict[str, str] | None] = []

    def run(self, script: str, args: Any = (), *, stdin: Any = None, env: Any = None) -> str:
        self.runs.append(env)
        return json.dumps(self.doc)

    def image_path(self, path: str) -> str:
        assert path.startswith(self.root + "/")
        return path[len(self.root) :]


def test_the_scheme_is_probed_once_per_base_and_read_as_image_paths(tmp_path: Path) -> None:
    saved, image_id = docker_save(a_layer_tar(tmp_path))
    root = "/cache/rootfs/abc"
    probe = {
        "python": "3.11",
        "cache_tag": "cpython-311",
        "paths": {
            "purelib": f"{root}/usr/local/lib/python3.11/site-packages",
            "platlib": f"{root}/usr/local/lib/python3.11/site-packages",
            "scripts": f"{root}/usr/local/bin",
            "data": f"{root}/usr/local",
            "include": f"{root}/usr/local/include/python3.11",
        },
    }
    engine = cast(docker.DockerClient, FakeEngine(FakeImage(saved, image_id)))
    cache = LayerCache(tmp_path / "cache")
    base = load_base(engine, "python:3.11-slim", cache, GZIP)
    python = FakeBasePython(root, probe)

    scheme = probe_scheme(base, cache, cast(Any, python))
    assert (scheme.purelib, scheme.executable, scheme.include) == (
        "/usr/local/lib/python3.11/site-packages",
        "/usr/local/bin/python3",
        "/usr/local/include/python3.11",
    )
    assert probe_scheme(base, cache, cast(Any, python)) == scheme
    assert len(python.runs) == 1  # the second time, from the cache
