"""Write a synthetic kiln monorepo: N helpers, M images, K components.

    python -m bench.generate OUT --preset small        # 5 helpers, 2 images, 10 components
    python -m bench.generate OUT --preset scale        # 50 helpers, 10 images, 100 components
    python -m bench.generate OUT --helpers 20 --images 3 --components 40

Run it from kiln's repository root: it grows the repo out of ``tests/factory.py``'s
writers. Helpers are pure Python (no third-party dependency) except two in ten:
``h003``, ``h013``, ... use numpy, ``h004``, ``h014``, ... use pandas and matplotlib.
Each helper pins 0-2 earlier helpers exactly (``acme-h002==0.1.0``) and imports them;
no helper pins a pandas one, so pandas and matplotlib stay in the images that list a
pandas helper. Helper ``i`` goes in image ``i % M`` (kiln adds the siblings it needs);
component ``c`` imports one helper of image ``c % M`` and runs on that image (image
mode, ``IMAGE = "img03"``) or, one component in five (``c % 5 == 4``), in packages
mode (``PACKAGES = True``); each image gets one pipeline. With a numpy and a pandas
helper (N >= 5) the repo also gets four start-up probes besides the K components:
``s_np_image``, ``s_np_packages``, ``s_pd_image``, ``s_pd_packages`` (the first numpy
or pandas helper, in each pin mode), each with a one-step pipeline of the same name.
Images name no ``base``: they build on kiln's OS base. The repo gets this repository's
``[tool.kiln.os]`` and a copy of its ``images/os.lock`` (``os_lock``), so ``kiln lock``
finds that lock fresh and resolves nothing from Debian; its images are made for
``linux/amd64`` alone (the default); packages-mode components run on kiln's ``<org>/packages`` base.
The same seed writes the same bytes, so a generated repo can be released on the local
stack: its own ports (default 8865/5865) keep it apart from kiln's own repo.
"""

from __future__ import annotations

import argparse
import random
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from tests import factory

ROOT = Path(__file__).resolve().parents[1]
OS_LOCK = ROOT / "images" / "os.lock"  # this repository's: the generated repos share it


@dataclass(frozen=True)
class Shape:
    helpers: int
    images: int
    components: int


# n10 / n200 / n500 are the scale curve's other points (images capped at 10, K = 2N).
PRESETS = {
    "tiny": Shape(2, 1, 2),  # scenario 10's harness test (`--matrix 2`)
    "small": Shape(5, 2, 10),
    "n10": Shape(10, 2, 20),
    "scale": Shape(50, 10, 100),
    "n200": Shape(200, 10, 400),
    "n500": Shape(500, 10, 1000),
}
ORG = "acme"
VERSION = "0.1.0"
THIRD_PARTY_EVERY = 10  # helper i uses numpy when i % 10 == 3, pandas when i % 10 == 4
NUMPY_AT = 3
PANDAS_AT = 4
PACKAGES_EVERY = 5  # component c is in packages mode when c % 5 == PACKAGES_AT
PACKAGES_AT = 4
PROBES = ("s_np_image", "s_np_packages", "s_pd_image", "s_pd_packages")


def helper_name(i: int) -> str:
    return f"h{i:03d}"


def image_name(j: int) -> str:
    return f"img{j:02d}"


def component_name(c: int) -> str:
    return f"c{c:03d}"


def uses_numpy(i: int) -> bool:
    return i % THIRD_PARTY_EVERY == NUMPY_AT


def uses_pandas(i: int) -> bool:
    """pandas and matplotlib: the heavy helper of start-up scenario."""
    return i % THIRD_PARTY_EVERY == PANDAS_AT


def in_packages_mode(c: int) -> bool:
    return c % PACKAGES_EVERY == PACKAGES_AT


_HELPER_BODY = '''
__all__ = ["answer", "clip", "normalize"]


def answer() -> int:
    """Helper {i}: a number that depends on its siblings' numbers."""
    return {scale}{calls}


def clip(values: list[float], low: float, high: float) -> list[float]:
    return [min(max(v, low), high) for v in values]


def normalize(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return [(v - low) / span for v in values]
'''


def _helper_body(i: int, siblings: Sequence[int]) -> str:
    """A small, real module: imports its siblings and calls them."""
    imports = [f"from {helper_name(s)} import answer as _answer_{s}\n" for s in siblings]
    if uses_numpy(i):
        imports.insert(0, "import numpy as np\n")
        scale = f"int(np.arange({i + 2}).sum())"
    elif uses_pandas(i):
        imports[:0] = ["import matplotlib\n", "import pandas as pd\n"]
        scale = f"int(pd.Series(range({i + 2})).sum()) + len(matplotlib.__version__) * 0"
    else:
        scale = f"sum(range({i + 2}))"
    calls = "".join(f" + _answer_{s}()" for s in siblings)
    body = _HELPER_BODY.format(i=i, scale=scale, calls=calls)
    return "".join(imports) + ("\n" + body if imports else body.lstrip("\n"))


def _helper_test(name: str) -> str:
    return textwrap.dedent(
        f"""
        from {name} import clip, normalize


        def test_clip() -> None:
            assert clip([-1.0, 0.5, 2.0], 0.0, 1.0) == [0.0, 0.5, 1.0]


        def test_normalize() -> None:
            assert normalize([2.0, 4.0]) == [0.0, 1.0]
        """
    )


def _component(name: str, image: str | None, helper: str | None) -> str:
    """A lightweight component: its imports sit inside the function, as KFP needs.
    ``image`` None: packages mode."""
    body = (
        [f"    from {helper} import answer\n", "\n", "    return x + answer()\n"]
        if helper
        else ["    return 2 * x\n"]
    )
    where = f"on {image}" if image else "in packages mode"
    head = [
        f'IMAGE = "{image}"\n' if image else "PACKAGES = True\n",
        "\n\n",
        f"def {name}(x: int) -> int:\n",
        f'    """Component {name} {where}."""\n',
    ]
    return "".join(head + body)


def generate(
    root: Path,
    shape: Shape,
    *,
    seed: int = 0,
    index_port: int = 8865,
    registry_port: int = 5865,
    upstream_index: str = "https://pypi.org/simple",
    pin_modes: bool = True,
    os_lock: Path = OS_LOCK,
) -> Path:
    """Write the repo at ``root`` (which must not exist yet) and return it. Without
    ``pin_modes`` every component is in image mode and there are no start-up probes.
    ``os_lock`` is copied to ``images/os.lock`` (with this repository's
    ``[tool.kiln.os]``, whose lock it must be)."""
    if shape.helpers < 1 or shape.images < 1 or shape.components < 0:
        raise ValueError(f"{shape}: give at least one helper and one image")
    root.mkdir(parents=True)  # refuses an existing folder: never write over a repo
    rng = random.Random(seed)  # noqa: S311 (a reproducible repo, not a secret)
    pyproject = (
        factory.workspace(root, org=ORG, index_port=index_port, registry_port=registry_port)
        / "pyproject.toml"
    )
    doc = tomlkit.parse(pyproject.read_text())
    doc["tool"]["kiln"]["upstream-index"] = upstream_index
    packages = tomlkit.table()
    packages["python"] = "3.11"  # no base: kiln's <org>/packages (the OS layer and pip)
    doc["tool"]["kiln"]["packages"] = packages
    # This repository's [tool.kiln.os] (its architectures): the copied lock is fresh there.
    ours = tomlkit.parse((ROOT / "pyproject.toml").read_text())
    doc["tool"]["kiln"]["os"] = ours["tool"]["kiln"]["os"]
    pyproject.write_text(tomlkit.dumps(doc))
    factory.write(root / ".gitignore", ".kiln/\ndist/\n__pycache__/\n")
    (root / "images").mkdir()
    (root / "images" / "os.lock").write_bytes(os_lock.read_bytes())

    members: list[list[str]] = [[] for _ in range(shape.images)]
    for i in range(shape.helpers):
        pinnable = [s for s in range(i) if not uses_pandas(s)]
        count = rng.choice((0, 0, 1, 2))
        siblings = sorted(rng.sample(pinnable, min(len(pinnable), count)))
        deps = [f"{ORG}-{helper_name(s)}=={VERSION}" for s in siblings]
        if uses_numpy(i):
            deps.append("numpy>=1.26")
        elif uses_pandas(i):
            deps.extend(("pandas>=2.2", "matplotlib>=3.8"))
        name = helper_name(i)
        path = factory.helper(
            root, name, org=ORG, version=VERSION, deps=tuple(deps), body=_helper_body(i, siblings)
        )
        factory.write(path / "tests" / f"test_{name}.py", _helper_test(name))
        members[i % shape.images].append(name)

    for j, helpers in enumerate(members):
        factory.image(root, image_name(j), helpers=tuple(helpers), version=VERSION)

    first: dict[int, str] = {}
    for c in range(shape.components):
        j = c % shape.images
        helper = rng.choice(members[j]) if members[j] else None
        mode = None if pin_modes and in_packages_mode(c) else image_name(j)
        factory.write(
            root / "pipelines" / "components" / f"{component_name(c)}.py",
            _component(component_name(c), mode, helper),
        )
        first.setdefault(j, component_name(c))
    for j, comp in sorted(first.items()):
        factory.pipeline(root, f"p_{image_name(j)}", component_name=comp)
    if pin_modes and shape.helpers > PANDAS_AT:
        for probe, i in zip(PROBES, (NUMPY_AT, NUMPY_AT, PANDAS_AT, PANDAS_AT), strict=True):
            mode = None if probe.endswith("_packages") else image_name(i % shape.images)
            factory.write(
                root / "pipelines" / "components" / f"{probe}.py",
                _component(probe, mode, helper_name(i)),
            )
            factory.pipeline(root, probe, component_name=probe)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("out", type=Path, help="folder to create (must not exist)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--helpers", type=int, metavar="N", help="override the preset's N")
    parser.add_argument("--images", type=int, metavar="M", help="override the preset's M")
    parser.add_argument("--components", type=int, metavar="K", help="override the preset's K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-port", type=int, default=8865)
    parser.add_argument("--registry-port", type=int, default=5865)
    parser.add_argument("--upstream-index", default="https://pypi.org/simple")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    shape = Shape(
        args.helpers if args.helpers is not None else preset.helpers,
        args.images if args.images is not None else preset.images,
        args.components if args.components is not None else preset.components,
    )
    if args.out.exists():
        parser.error(f"{args.out} exists; give a new folder")
    generate(
        args.out,
        shape,
        seed=args.seed,
        index_port=args.index_port,
        registry_port=args.registry_port,
        upstream_index=args.upstream_index,
    )
    print(
        f"{args.out}: {shape.helpers} helpers, {shape.images} images, "
        f"{shape.components} components (stack ports {args.index_port}/{args.registry_port})"
    )


if __name__ == "__main__":
    main()
