"""What a team does by hand without kiln: rebuild and re-push everything, every time.

    python -m bench.naive REPO --registry HOST:PORT --wheelhouse DIR --out DIR --base-image IMG

Three phases, each timed, all serial as such a script is:

1. ``python -m build --wheel`` (isolated: a fresh environment with hatchling) per helper;
2. per image, ``docker build`` (Docker's build cache on, as a team's machine has it) of
   a Dockerfile that installs the image's third-party wheels and its helpers' wheels
   (siblings included) with ``pip install --no-index``, then ``docker push``;
3. one Python process that compiles every component with ``kfp.dsl.component`` and
   ``kfp.compiler`` (image mode: the image it runs on; packages mode: the base image
   and ``packages_to_install``), one YAML each.

``--wheelhouse DIR`` holds ``DIR/<image>/*.whl``, the image's locked third-party wheels
(prepared once, untimed: a favour to the naive side, which would download them).
``--base-image`` is what the Dockerfiles build FROM: a Python with pip in the engine (no
image can be pulled here; the bench gives kiln's packages base: Debian's python3.11, pip
and ``PIP_BREAK_SYSTEM_PACKAGES=1``). Prints the seconds per phase as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kiln._workspace.discovery import discover
from kiln._workspace.model import Workspace

DOCKERFILE = """\
FROM {base}
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY third-party/ /tmp/third-party/
RUN python3 -m pip install --no-index --no-deps /tmp/third-party/*.whl && rm -rf /tmp/third-party
COPY helpers/ /tmp/helpers/
RUN python3 -m pip install --no-index --no-deps /tmp/helpers/*.whl && rm -rf /tmp/helpers
"""

COMPILE = """\
import importlib.util, sys
from pathlib import Path
from kfp import compiler, dsl

jobs = [line.split("\\t") for line in sys.stdin.read().splitlines()]
for path, name, image, packages, out in jobs:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    func = getattr(module, name)
    comp = dsl.component(
        func, base_image=image, packages_to_install=packages.split(",") if packages else None
    )
    compiler.Compiler().compile(comp, out)
"""


def _call(argv: Sequence[str], **kwargs: object) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def closure(ws: Workspace, names: Sequence[str]) -> list[str]:
    """The helpers and, transitively, the siblings they pin."""
    seen: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.append(name)
            todo.extend(next(h for h in ws.helpers if h.name == name).siblings)
    return sorted(seen)


def build_wheels(ws: Workspace, out: Path) -> None:
    for helper in ws.helpers:
        _call([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(helper.path)])


def build_images(
    ws: Workspace, *, wheels: Path, wheelhouse: Path, registry: str, base: str, work: Path
) -> list[str]:
    pushed = []
    for image in ws.images:
        ctx = work / image.name
        shutil.rmtree(ctx, ignore_errors=True)
        (ctx / "helpers").mkdir(parents=True)
        shutil.copytree(wheelhouse / image.name, ctx / "third-party")
        for name in closure(ws, image.helpers):
            helper = next(h for h in ws.helpers if h.name == name)
            wheel = next(wheels.glob(f"{helper.wheel_stem}-*.whl"))
            shutil.copy2(wheel, ctx / "helpers")
        (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
        tag = f"{registry}/{ws.org}-naive/{image.name}:{image.version}"
        _call(["docker", "build", "-q", "-t", tag, str(ctx)])
        _call(["docker", "push", "-q", tag])
        pushed.append(tag)
    return pushed


def compile_components(ws: Workspace, registry: str, base: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    versions = {i.name: i.version for i in ws.images}
    dists = {h.name: h.distribution for h in ws.helpers}
    jobs = []
    for comp in ws.components:
        if comp.image is not None:
            image, packages = f"{registry}/{ws.org}-naive/{comp.image}:{versions[comp.image]}", ""
        else:
            image, packages = base, ",".join(dists[h] for h in comp.helpers)
        jobs.append(
            "\t".join((str(comp.path), comp.name, image, packages, f"{out}/{comp.name}.yaml"))
        )
    subprocess.run(
        [sys.executable, "-c", COMPILE],
        input="\n".join(jobs),
        text=True,
        check=True,
        capture_output=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.naive", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("repo", type=Path)
    parser.add_argument("--registry", required=True, metavar="HOST:PORT")
    parser.add_argument("--wheelhouse", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--base-image", required=True, help="the FROM image: a Python with pip in the engine"
    )
    args = parser.parse_args(argv)
    ws = discover(args.repo.resolve())
    shutil.rmtree(args.out, ignore_errors=True)
    phases: dict[str, float] = {}
    start = time.perf_counter()
    build_wheels(ws, args.out / "wheels")
    phases["wheels"] = time.perf_counter() - start
    mark = time.perf_counter()
    pushed = build_images(
        ws,
        wheels=args.out / "wheels",
        wheelhouse=args.wheelhouse,
        registry=args.registry,
        base=args.base_image,
        work=args.out / "ctx",
    )
    phases["images"] = time.perf_counter() - mark
    mark = time.perf_counter()
    compile_components(ws, args.registry, args.base_image, args.out / "yaml")
    phases["compile"] = time.perf_counter() - mark
    phases["total"] = time.perf_counter() - start
    print(json.dumps({"phases": phases, "helpers": len(ws.helpers), "pushed": pushed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
