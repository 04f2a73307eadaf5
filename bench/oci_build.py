"""kiln's own image builder against a Docker build of the same image, in one run.

    python -m bench.oci_build [--runs N] [--image NAME] [--json]

Run it from kiln's repository root with the dev venv's Python and Docker Engine running.
``--image`` names the repo's image to build (default ``base``: its locked wheels and the
``imgproc`` helper; ``analytics`` is the big one). kiln builds on its OS base: the OS
layer written from the ``.deb`` files ``images/os.lock`` pins (fetched into the run's
.deb cache once, untimed). Docker builds FROM kiln's packages base, the same OS layer
and the locked pip (Debian's python3.11 has no pip, and the Dockerfile runs pip; no
image can be pulled here): kiln builds it, pushes it to a registry of its own and the
engine pulls it by digest, once, untimed. Each run starts a registry of its own
(Debian's docker-registry, on a free loopback port, stopped after the run), so neither
builder finds a blob it pushed in an earlier run. Each run times, for both builders:

- **cold**: build and push into an empty registry (kiln: an empty layer cache too, so
  the OS layer is written from the cached .debs; Docker: ``--no-cache``, its base
  already in the engine);
- **helper**: one helper changed (another wheel, same version), build and push again
  (kiln: layer cache warm; Docker: its build cache warm).

Docker builds the way kiln built images before it had its own builder: the wheelhouse
copied into the context, ``pip install --no-index`` in a ``RUN`` with no network, a
layer for the third-party wheels and one for the helper. Bytes are what each
repository holds after the cold push (the sum of its manifest's layer and config
sizes: what a cluster pulls), split into the base's layers (kiln: the OS layer;
Docker: the OS layer and pip, each as Docker compresses them) and the layers added on
top, and what the helper push sent. The time ratios are Docker over kiln (above 1:
kiln is faster), the byte ratios kiln over Docker (below 1: kiln is smaller).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import docker

from kiln._debian.archive import Mirrors
from kiln._debian.lock import OsLock, read_os_lock
from kiln._images.oci.assemble import KFP_ENV
from kiln._images.oci.builder import build_on
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.push import push_image
from kiln._images.os_layers import OsLayers, fetch_debs
from kiln._lock.format import read_lock
from kiln._release.prepare import PACKAGES_ENV
from kiln._servers.registry import RegistryClient
from kiln._servers.stack import LocalStack
from kiln._wheels.build import build_wheel
from kiln._wheels.wheelhouse import PipDownload, SimplePages, fetch_locked
from kiln._workspace.discovery import discover
from kiln._workspace.model import Image, StackConfig, Workspace

ROOT = Path(__file__).resolve().parents[1]
DOCKER_BASE = "kiln-bench/python:3.11-pip"  # kiln's packages base, tagged in the engine
DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 _KFP_RUNTIME=true
COPY third-party/ /tmp/wheelhouse/
RUN python3 -m pip install --no-index --no-deps /tmp/wheelhouse/*.whl && rm -rf /tmp/wheelhouse
COPY helpers/ /tmp/helpers/
RUN python3 -m pip install --no-index --no-deps /tmp/helpers/*.whl && rm -rf /tmp/helpers
"""


@dataclasses.dataclass
class Inputs:
    lock: OsLock
    debs: Path  # a .deb cache holding every package of the lock
    platform: str
    third: list[Path]
    helpers: list[Path]
    changed: list[Path]  # the helpers, the first with one line added
    docker_base: str
    docker_base_layers: int  # how many layers of a Docker-built image are its base's


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def registry_server(state: Path) -> Iterator[str]:
    config = StackConfig(index_port=free_port(), registry_port=free_port())
    stack = LocalStack(config, state)
    stack.up()
    try:
        yield config.registry
    finally:
        stack.down()


def _wheels(ws: Workspace, image: Image, cache: Path) -> list[Path]:
    pages = [(ws.upstream_index, SimplePages(ws.upstream_index))]
    found = fetch_locked(read_lock(image), pages=pages, cache_dir=cache, download=PipDownload())
    return [w.path for w in found]


def docker_base(work: Path, ws: Workspace, lock: OsLock, debs: Path) -> tuple[str, int]:
    """kiln's packages base (the OS layer and the locked pip), built by kiln, pushed to
    a registry of its own, pulled into the engine by digest and tagged ``DOCKER_BASE``;
    the tag and its number of layers."""
    if ws.packages is None:
        raise SystemExit(f"{ws.root}: no packages-mode component, so no pip is locked")
    pip = [w for w in _wheels(ws, ws.packages, work / "wheels") if w.name.startswith("pip-")]
    cache = LayerCache(work / "packages-cache")
    base = OsLayers(cache, debs, None).base_image(lock)
    image, _, _ = build_on(
        base, cache, (("third-party", pip),), platform=ws.packages.platform,
        env={**KFP_ENV, **dict(PACKAGES_ENV)}, labels={}, what="packages base",
    )  # fmt: skip
    with registry_server(work / "packages-stack") as registry:
        pushed = push_image(RegistryClient(registry), "bench/packages", "base", image)
        ref = f"{registry}/bench/packages@{pushed.digest}"
        for argv in (("docker", "pull", "-q", ref), ("docker", "tag", ref, DOCKER_BASE)):
            subprocess.run(argv, check=True, capture_output=True)
    return DOCKER_BASE, len(image.layers)


def inputs(work: Path, image: str) -> Inputs:
    ws = discover(ROOT)
    spec = ws.image(image)
    lock = read_os_lock(ROOT)
    debs = work / "debian"
    fetched = fetch_debs(lock.os.packages, Mirrors(ws.os), debs)
    if fetched.gone:
        gone = ", ".join(f"{p.name} {p.version}" for p in fetched.gone)
        raise SystemExit(f"no mirror serves {gone} any more: `kiln lock --upgrade-os` first")
    third = _wheels(ws, spec, work / "wheels")
    helpers = [build_wheel(ws.helper(name), work / "helpers").path for name in spec.helpers]
    first = ws.helper(spec.helpers[0])
    copy = work / f"{first.name}-changed"
    shutil.copytree(first.path, copy, ignore=shutil.ignore_patterns("__pycache__"))
    init = next(copy.glob("src/*/__init__.py"))
    init.write_text(init.read_text() + "\nBENCH_CHANGED = True\n")
    changed = build_wheel(dataclasses.replace(first, path=copy), work / "changed").path
    base, layers = docker_base(work, ws, lock, debs)
    return Inputs(lock, debs, spec.platform, third, helpers, [changed, *helpers[1:]], base, layers)


def stored_bytes(registry: RegistryClient, repository: str, tag: str) -> int:
    manifest = json.loads(registry.manifest(repository, tag))
    return int(manifest["config"]["size"]) + sum(int(x["size"]) for x in manifest["layers"])


def added_bytes(registry: RegistryClient, repository: str, tag: str, base_layers: int) -> int:
    """The bytes of the layers on top of the base's (config not counted)."""
    manifest = json.loads(registry.manifest(repository, tag))
    return sum(int(x["size"]) for x in manifest["layers"][base_layers:])


def kiln_push(
    cache: LayerCache, registry: RegistryClient, repo: str, tag: str, given: Inputs, *,
    helpers: Sequence[Path],
) -> int:  # fmt: skip
    """Build on kiln's OS base (its layer from ``cache``, else written from the cached
    .debs) and push with kiln's builder; the bytes sent."""
    base = OsLayers(cache, given.debs, None).base_image(given.lock)
    image, _, _ = build_on(
        base, cache, (("third-party", given.third), ("helpers", helpers)),
        platform=given.platform, env=KFP_ENV, labels={}, what=f"image {repo}",
    )  # fmt: skip
    return push_image(registry, repo, tag, image).uploaded_bytes


def docker_push(
    client: docker.DockerClient, context: Path, ref: str, tag: str, *,
    third: Sequence[Path], helpers: Sequence[Path], base_ref: str, cold: bool,
) -> None:  # fmt: skip
    """Build and push with the Docker Engine (the old path, for comparison)."""
    for name, wheels in (("third-party", third), ("helpers", helpers)):
        folder = context / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for wheel in wheels:
            shutil.copy(wheel, folder / wheel.name)
    (context / "Dockerfile").write_text(DOCKERFILE)
    client.images.build(
        path=str(context), tag=f"{ref}:{tag}", buildargs={"BASE_IMAGE": base_ref},
        network_mode="none", rm=True, nocache=cold,
    )  # fmt: skip
    for line in client.images.push(ref, tag, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(line["error"])


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def one_run(
    client: docker.DockerClient, registry: str, work: Path, given: Inputs, run: int
) -> dict[str, float]:
    reg = RegistryClient(registry)
    row: dict[str, float] = {}
    cache = LayerCache(work / f"cache-{run}")
    repo = f"bench/kiln{run}"
    row["kiln cold s"], _ = timed(
        lambda: kiln_push(cache, reg, repo, "cold", given, helpers=given.helpers)
    )
    row["kiln bytes"] = stored_bytes(reg, repo, "cold")
    row["kiln added bytes"] = added_bytes(reg, repo, "cold", 1)  # on the OS layer
    row["kiln helper s"], sent = timed(
        lambda: kiln_push(cache, reg, repo, "helper", given, helpers=given.changed)
    )
    row["kiln helper bytes sent"] = float(sent)  # type: ignore[arg-type]  # an int

    ref = f"{registry}/bench/docker{run}"
    context = work / f"context-{run}"
    context.mkdir()
    row["docker cold s"], _ = timed(lambda: docker_push(
        client, context, ref, "cold", third=given.third, helpers=given.helpers,
        base_ref=given.docker_base, cold=True))  # fmt: skip
    row["docker bytes"] = stored_bytes(reg, f"bench/docker{run}", "cold")
    row["docker added bytes"] = added_bytes(
        reg, f"bench/docker{run}", "cold", given.docker_base_layers
    )
    row["docker helper s"], _ = timed(lambda: docker_push(
        client, context, ref, "helper", third=given.third, helpers=given.changed,
        base_ref=given.docker_base, cold=False))  # fmt: skip
    for tag in ("cold", "helper"):
        client.images.remove(f"{ref}:{tag}", force=True)
    return row


def summary(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        out[key] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default="base", help="the repo's image to build")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-oci-") as tmp:
        work = Path(tmp)
        given = inputs(work, args.image)
        rows = []
        for run in range(args.runs):
            # Docker's base layers are in its engine either way; kiln writes its OS layer
            # from the cached .debs once per layer cache, inside "cold".
            with registry_server(work / f"stack-{run}") as registry:
                rows.append(one_run(client, registry, work, given, run))
    result = summary(rows)
    med = {k: v["median"] for k, v in result.items()}
    ratios = {
        "cold: docker / kiln": med["docker cold s"] / med["kiln cold s"],
        "helper changed: docker / kiln": med["docker helper s"] / med["kiln helper s"],
        "bytes stored: kiln / docker": med["kiln bytes"] / med["docker bytes"],
        "bytes added to the base: kiln / docker": (
            med["kiln added bytes"] / med["docker added bytes"]
        ),
    }
    if args.json:
        print(json.dumps({"cases": result, "ratios": ratios}, indent=2))
        return 0
    print(f"{'case':28} {'min':>12} {'median':>12} {'max':>12}")
    for key, v in result.items():
        print(f"{key:28} {v['min']:12.2f} {v['median']:12.2f} {v['max']:12.2f}")
    for key, value in ratios.items():
        print(f"{key:40} {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
