"""Scenario 9's timed kiln builds, each in a process of its own (JSON on stdout).

    python -m bench.multiarch_build build --repo DIR --image NAME --cache DIR --debs DIR [--both]
    python -m bench.multiarch_build layer --repo DIR --image NAME --cache DIR --debs DIR
                                          --platform linux/arm64 --fresh DIR

``build``: the image of a repo set to ``platforms = ["linux/amd64", "linux/arm64"]``,
built with kiln's builder (``KilnBuilder``) for linux/amd64 alone, or with ``--both`` for
every platform and the index over them (``multiarch.build_index``), into the layer cache
``--cache`` (empty: cold; filled by an earlier build: warm); the OS layers from the
``.deb`` files in ``--debs`` (a ``.kiln/cache/debian`` folder; no mirror is asked). Before
the clock starts: the helpers' wheels are built and each platform's wheelhouse is read
from the repo's wheelhouse cache (fetched untimed by the scenario). Only the build is
timed. ``packages`` is packages mode's base (the OS layer and the locked pip), as a
release builds it.

``layer``: the third-party layer of one platform alone, written into the empty layer
cache ``--fresh``: the same wheels installed, compiled by the host's Python of the same
OS lock (its base from the warm ``--cache``) and compressed. Only that layer is timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import docker

from bench.os_base import layer_kind
from kiln._debian.lock import OsLock, read_os_lock
from kiln._images.inputs import ImageInputs, OsBase, image_inputs
from kiln._images.oci.assemble import python_layer
from kiln._images.oci.base_image import base_image_python, probe_scheme
from kiln._images.oci.builder import KilnBuilder
from kiln._images.oci.cache import Blob, LayerCache
from kiln._images.oci.compress import GZIP
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.multiarch import build_index, platform_wheelhouses
from kiln._images.os_layers import OsLayers
from kiln._images.os_tree import host_architecture
from kiln._lock.format import lock_path, read_lock
from kiln._lock.tags import supported_tags
from kiln._release.prepare import PACKAGES_ENV
from kiln._wheels.build import build_wheel
from kiln._wheels.wheelhouse import PipDownload, SimplePages, Wheelhouse, resolve_wheelhouse
from kiln._workspace.discovery import discover
from kiln._workspace.platforms import python_platform

REGISTRY = "127.0.0.1:5000"  # named in each image's repository; nothing is pushed


class TimedOsLayers(OsLayers):
    """kiln's OS layers, adding up the seconds spent getting them (written or cached)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds = 0.0
        self._depth = 0

    def layer(
        self, lock: OsLock, image: str | None = None, *, architecture: str | None = None
    ) -> Blob:
        self._depth += 1
        started = time.perf_counter()
        try:
            return super().layer(lock, image, architecture=architecture)
        finally:
            self._depth -= 1
            if self._depth == 0:  # one layer may need another's tree: counted once
                self.seconds += time.perf_counter() - started


def _no_engine() -> docker.DockerClient:
    raise SystemExit("a build needs no Docker Engine")


def inputs(repo: Path, name: str, work: Path) -> tuple[ImageInputs, dict[str, Wheelhouse]]:
    """The image's inputs (its first platform's wheelhouse) and every platform's
    wheelhouse, from the repo's wheelhouse cache."""
    ws = discover(repo)
    image = ws.packages if name == "packages" else ws.image(name)
    if image is None:
        raise SystemExit(f"{repo}: no packages-mode component, so no packages base")
    helpers = [build_wheel(ws.helper(h), work / "helpers") for h in image.helpers]
    lock = read_lock(image)
    pages = [(ws.upstream_index, SimplePages(ws.upstream_index))]

    def resolve(platform: str) -> Wheelhouse:
        return resolve_wheelhouse(
            ws, image, helpers, lock=lock, pages=pages, download=PipDownload(),
            platform=platform,
        )  # fmt: skip

    houses = platform_wheelhouses(image, resolve)
    base = OsBase.of(read_os_lock(repo), image)
    first = houses[image.platforms[0]]
    if image is not ws.packages:
        return image_inputs(
            image, registry=REGISTRY, org=ws.org, base=base, wheelhouse=first
        ), houses  # fmt: skip
    # As a release builds packages mode's base (_release/prepare._packages_base).
    for platform, house in houses.items():
        pip = tuple(w for w in house.third_party if w.name == "pip")
        houses[platform] = Wheelhouse(image=name, requirements=(), third_party=pip, helpers=())
    version = f"python{image.python}-pip{houses[image.platforms[0]].third_party[0].version}"
    found = ImageInputs(
        image=dataclasses.replace(image, version=version),
        repository=f"{REGISTRY}/{ws.org}/{name}", tag="unbuilt", base=base,
        wheelhouse=houses[image.platforms[0]], smoke=("pip",), env=PACKAGES_ENV,
    )  # fmt: skip
    return found, houses


def _described(image: BuiltImage) -> dict[str, Any]:
    config = json.loads(image.config)
    history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    layers = json.loads(image.manifest)["layers"]
    return {
        "digest": image.digest,
        "architecture": config["architecture"],
        "manifest_bytes": len(image.manifest),
        "config_bytes": len(image.config),
        "layers": [
            {
                "kind": layer_kind(str(h.get("created_by", ""))),
                "digest": x["digest"],
                "size": int(x["size"]),
            }
            for h, x in zip(history, layers, strict=True)
        ],
    }


def build(repo: Path, name: str, cache: Path, debs: Path, *, both: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="multiarch-") as tmp:
        given, houses = inputs(repo, name, Path(tmp))
        os_layers = TimedOsLayers(LayerCache(cache), debs, None)  # no mirror: the seeded .debs
        builder = KilnBuilder(_no_engine, cache, cast(Any, None), os_layers=lambda: os_layers)
        started = time.perf_counter()
        if both:
            index = build_index(builder, given, houses, source=None)
            # By the image's platforms (the index says linux/arm64/v8).
            platforms = given.image.platforms
            images = {p: i for p, (_, i) in zip(platforms, index.images, strict=True)}
        else:
            images = {"linux/amd64": builder.build(given, source=None)[0]}
        seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "seconds": seconds,
        "os_layers_seconds": os_layers.seconds,
        "images": {p: _described(i) for p, i in images.items()},
        "wheel_dirs": {p: str(h.third_party[0].path.parent) for p, h in houses.items()},
        "lock": str(lock_path(given.image)),
    }
    if both:
        result["index"] = {"digest": index.digest, "bytes": len(index.index)}
    return result


def layer(repo: Path, name: str, cache: Path, debs: Path, *, platform: str, fresh: Path) -> Any:
    """Only ``platform``'s third-party layer, into the empty layer cache ``fresh``."""
    with tempfile.TemporaryDirectory(prefix="multiarch-") as tmp:
        given, houses = inputs(repo, name, Path(tmp))
        base = given.base
        if not isinstance(base, OsBase):
            raise SystemExit(f"{name}: built on {base}, not on kiln's OS base")
        warm = LayerCache(cache)
        host = OsLayers(warm, debs, None).base_image(
            base.lock, base.extras, architecture=host_architecture()
        )  # the base whose python3 compiles, as KilnBuilder's foreign build does
        python = base_image_python(host, warm)
        scheme = probe_scheme(host, warm, python)
        tags = supported_tags(scheme.python, python_platform(given.image.platform, platform))
        wheels = [w.path for w in houses[platform].third_party]
        started = time.perf_counter()
        made = python_layer(
            "third-party", wheels, scheme=scheme, cache=LayerCache(fresh), compression=GZIP,
            what=f"{name} for {platform}", compiler=python, tags=tags,
        )  # fmt: skip
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "digest": made.blob.digest, "size": made.blob.size,
            "wheels": len(wheels)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.multiarch_build", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("build", "layer"):
        one = sub.add_parser(command)
        one.add_argument("--repo", type=Path, required=True)
        one.add_argument("--image", required=True)
        one.add_argument("--cache", type=Path, required=True, help="a layer cache folder")
        one.add_argument("--debs", type=Path, required=True, help="a .kiln/cache/debian folder")
    sub.choices["build"].add_argument("--both", action="store_true", help="every platform")
    sub.choices["layer"].add_argument("--platform", required=True)
    sub.choices["layer"].add_argument("--fresh", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "build":
        result = build(args.repo, args.image, args.cache, args.debs, both=args.both)
    else:
        result = layer(
            args.repo, args.image, args.cache, args.debs, platform=args.platform, fresh=args.fresh
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
