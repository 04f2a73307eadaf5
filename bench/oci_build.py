"""kiln's own image builder against a Docker build of the same image, in one run.

    python -m bench.oci_build [--runs N] [--json]

Run it from kiln's repository root with the dev venv's Python, Docker Engine running
and ``KILN_BASE_IMAGE`` naming the base (the repo's ``base`` image: its locked wheels
and the ``imgproc`` helper). A registry (Debian's docker-registry) is started on a
free loopback port and stopped at the end. Each run times, for both builders:

- **cold**: build and push into an empty repository (kiln: an empty layer cache too);
- **helper**: one helper changed (another wheel, same version), build and push again
  (kiln: layer cache warm; Docker: its build cache warm).

Docker builds the way kiln built images before it had its own builder: the wheelhouse
copied into the context, ``pip install --no-index`` in a ``RUN`` with no network, a
layer for the third-party wheels and one for the helper. Bytes are what each
repository holds after the cold push (the sum of its manifest's layer and config
sizes: what a cluster pulls), and what the helper push sent. The ratios are Docker
over kiln: above 1 means kiln is faster or smaller.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import docker

from kiln._images.oci.base import load_base
from kiln._images.oci.build import KFP_ENV
from kiln._images.oci.builder import build_on
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.compress import GZIP
from kiln._images.oci.push import push_image
from kiln._servers.registry import RegistryClient
from kiln._servers.stack import LocalStack
from kiln._wheels.build import build_wheel
from kiln._wheels.lock import read_lock
from kiln._wheels.wheelhouse import PipDownload, SimplePages, fetch_locked
from kiln._workspace.discovery import discover
from kiln._workspace.model import StackConfig

ROOT = Path(__file__).resolve().parents[1]
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
    base: str
    third: list[Path]
    helper: Path
    changed: Path  # the helper with one line added


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


def inputs(work: Path) -> Inputs:
    base = os.environ.get("KILN_BASE_IMAGE", "python:3.11-slim")
    ws = discover(ROOT)
    lock = read_lock(ws.image("base"))
    pages = [(ws.upstream_index, SimplePages(ws.upstream_index))]
    third = [w.path for w in fetch_locked(lock, pages=pages, cache_dir=work / "wheels",
                                         download=PipDownload())]  # fmt: skip
    imgproc = ws.helper("imgproc")
    helper = build_wheel(imgproc, work / "helper").path
    copy = work / "imgproc-changed"
    shutil.copytree(imgproc.path, copy, ignore=shutil.ignore_patterns("__pycache__"))
    init = copy / "src" / "imgproc" / "__init__.py"
    init.write_text(init.read_text() + "\nBENCH_CHANGED = True\n")
    changed = build_wheel(dataclasses.replace(imgproc, path=copy), work / "changed").path
    return Inputs(base, third, helper, changed)


def stored_bytes(registry: RegistryClient, repository: str, tag: str) -> int:
    manifest = json.loads(registry.manifest(repository, tag))
    return int(manifest["config"]["size"]) + sum(int(x["size"]) for x in manifest["layers"])


def kiln_push(
    client: docker.DockerClient, cache: LayerCache, registry: RegistryClient, repo: str,
    tag: str, *, third: Sequence[Path], helpers: Sequence[Path], base_ref: str,
) -> int:  # fmt: skip
    """Build and push with kiln's builder; the bytes sent."""
    base = load_base(client, base_ref, cache, GZIP)
    image, _, _ = build_on(
        base, cache, (("third-party", third), ("helpers", helpers)),
        platform="x86_64-manylinux_2_28", env=KFP_ENV, labels={}, what=f"image {repo}",
    )  # fmt: skip
    return push_image(registry, repo, tag, image).uploaded_bytes


def docker_push(
    client: docker.DockerClient, context: Path, ref: str, tag: str, *,
    third: Sequence[Path], helpers: Sequence[Path], base_ref: str,
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
        network_mode="none", rm=True,
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
    row["kiln cold s"], _ = timed(lambda: kiln_push(
        client, cache, reg, repo, "cold", third=given.third, helpers=[given.helper],
        base_ref=given.base))  # fmt: skip
    row["kiln bytes"] = stored_bytes(reg, repo, "cold")
    row["kiln helper s"], sent = timed(lambda: kiln_push(
        client, cache, reg, repo, "helper", third=given.third, helpers=[given.changed],
        base_ref=given.base))  # fmt: skip
    row["kiln helper bytes sent"] = float(sent)  # type: ignore[arg-type]  # an int

    ref = f"{registry}/bench/docker{run}"
    context = work / f"context-{run}"
    context.mkdir()
    row["docker cold s"], _ = timed(lambda: docker_push(
        client, context, ref, "cold", third=given.third, helpers=[given.helper],
        base_ref=given.base))  # fmt: skip
    row["docker bytes"] = stored_bytes(reg, f"bench/docker{run}", "cold")
    row["docker helper s"], _ = timed(lambda: docker_push(
        client, context, ref, "helper", third=given.third, helpers=[given.changed],
        base_ref=given.base))  # fmt: skip
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-oci-") as tmp:
        work = Path(tmp)
        given = inputs(work)
        with registry_server(work / "stack") as registry:
            # Docker's base layers are in its cache either way; kiln reads the base
            # once per cache (docker save + its own gzip), inside "cold".
            rows = [one_run(client, registry, work, given, run) for run in range(args.runs)]
    result = summary(rows)
    med = {k: v["median"] for k, v in result.items()}
    ratios = {
        "cold: docker / kiln": med["docker cold s"] / med["kiln cold s"],
        "helper changed: docker / kiln": med["docker helper s"] / med["kiln helper s"],
        "bytes stored: kiln / docker": med["kiln bytes"] / med["docker bytes"],
    }
    if args.json:
        print(json.dumps({"cases": result, "ratios": ratios}, indent=2))
        return 0
    print(f"{'case':28} {'min':>12} {'median':>12} {'max':>12}")
    for key, v in result.items():
        print(f"{key:28} {v['min']:12.2f} {v['median']:12.2f} {v['max']:12.2f}")
    for key, value in ratios.items():
        print(f"{key:34} {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
