"""Python layers through the layer cache, and the base read from a (fake) engine."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, cast

from kiln._images.oci.assemble import python_layer
from kiln._images.oci.base_image import BaseImage, probe_scheme
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


# ------------------------------------------------------------------ the base's scheme
def a_layer_tar(tmp_path: Path) -> bytes:
    (tmp_path / "tree" / "etc").mkdir(parents=True)
    (tmp_path / "tree" / "etc" / "os-release").write_text("ID=debian\n")
    out = io.BytesIO()
    write_tar(tmp_path / "tree", out)
    return out.getvalue()


class FakeBaseImagePython:
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
    cache = LayerCache(tmp_path / "cache")
    base = BaseImage("python@sha256:" + "a" * 64, "sha256:" + "b" * 64, {}, ())
    python = FakeBaseImagePython(root, probe)

    scheme = probe_scheme(base, cache, cast(Any, python))
    assert (scheme.purelib, scheme.executable, scheme.include) == (
        "/usr/local/lib/python3.11/site-packages",
        "/usr/local/bin/python3",
        "/usr/local/include/python3.11",
    )
    assert probe_scheme(base, cache, cast(Any, python)) == scheme
    assert len(python.runs) == 1  # the second time, from the cache
