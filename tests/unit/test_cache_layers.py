"""The layer cache: a blob that no longer has its digest (same size, altered; or
truncated) is discarded and its layer rebuilt, with one line saying so; a blob found
whole is not hashed again while its file is unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kiln._images.oci import cache as cache_module
from kiln._images.oci.assemble import python_layer
from kiln._images.oci.base_image import pull_base
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.compress import GZIP
from tests.damage import flip_a_byte, replace_file
from tests.unit.test_oci_base_sources import SourceRegistry, registry_of
from tests.unit.test_oci_install import HOST_PYTHON, SCHEME, tool_wheel

REF = "docker.test/library/python:3.11-slim"


class Layers:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "cache"
        self.lines: list[str] = []
        self.wheels = [tool_wheel(tmp_path)]

    def cache(self) -> LayerCache:
        """A new cache object on the same folder: as a new run of kiln sees it."""
        return LayerCache(self.root, note=self.lines.append)

    def build(self, cache: LayerCache | None = None) -> tuple[bool, Path, str]:
        built = python_layer(
            "third-party", self.wheels, scheme=SCHEME, cache=cache or self.cache(),
            compression=GZIP, what="image acme/t", compiler=HOST_PYTHON,
        )  # fmt: skip
        return built.cached, built.blob.path, built.blob.digest


def _sha(path: Path) -> str:
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


@pytest.mark.parametrize("in_place", [False, True])
def test_a_same_size_corrupted_blob_is_discarded_and_rebuilt(
    tmp_path: Path, in_place: bool
) -> None:
    layers = Layers(tmp_path)
    _cached, path, digest = layers.build()
    assert layers.build()[0]  # a hit, checked and stamped
    bad = flip_a_byte(path.read_bytes())
    if in_place:  # a write into the file, keeping its inode
        with path.open("r+b") as fh:
            fh.write(bad)
    else:
        replace_file(path, bad)
    assert path.stat().st_size == len(bad)
    cached, rebuilt, again = layers.build()
    assert not cached
    assert (rebuilt, again) == (path, digest)
    assert _sha(path) == digest
    assert len(layers.lines) == 1
    assert layers.lines[0].startswith(f"layer cache blob {path} did not match its digest")
    assert layers.lines[0].endswith("discarded, rebuilt")
    assert layers.build()[0]  # whole again, a hit
    assert len(layers.lines) == 1


def test_a_truncated_blob_is_rebuilt_with_one_line(tmp_path: Path) -> None:
    layers = Layers(tmp_path)
    _cached, path, digest = layers.build()
    replace_file(path, path.read_bytes()[:100])
    assert layers.build() == (False, path, digest)
    assert _sha(path) == digest
    assert len(layers.lines) == 1


def test_a_blob_found_whole_is_not_hashed_again_while_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layers = Layers(tmp_path)
    layers.build()  # written (hashed as it was written), its stamp recorded
    hashed: list[Path] = []
    real = cache_module.hash_file

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(cache_module, "hash_file", counting)
    for _run in range(3):
        assert layers.build()[0]
    assert hashed == []


def test_a_base_layer_altered_in_the_cache_is_pulled_again(tmp_path: Path) -> None:
    source = SourceRegistry(tmp_path)
    client, transport = registry_of(source)
    lines: list[str] = []
    base = pull_base(client, REF, LayerCache(tmp_path / "cache", note=lines.append))
    (layer,) = base.layers
    replace_file(layer.path, flip_a_byte(layer.path.read_bytes()))
    transport.seen.clear()

    again = pull_base(client, REF, LayerCache(tmp_path / "cache", note=lines.append))

    assert again == base
    assert _sha(layer.path) == layer.digest
    assert f"blobs/{layer.digest}" in " ".join(str(r.url) for r in transport.seen)  # fetched
    (line,) = lines
    assert line.startswith(f"layer cache blob {layer.path} did not match its digest")
