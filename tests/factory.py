"""Write small kiln monorepos for tests."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

HATCHLING = "hatchling==1.33.0"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


UPSTREAM = "https://upstream.invalid/simple"  # unit tests' upstream: never reached


def workspace(
    root: Path,
    *,
    org: str = "acme",
    index_port: int = 8765,
    registry_port: int = 5765,
    upstream: str = UPSTREAM,
) -> Path:
    write(
        root / "pyproject.toml",
        f"""
        [project]
        name = "monorepo"
        version = "0"

        [tool.kiln]
        org = "{org}"
        upstream-index = "{upstream}"

        [tool.kiln.stack]
        index-port = {index_port}
        registry-port = {registry_port}
        """,
    )
    return root


def helper(
    root: Path,
    name: str,
    *,
    org: str = "acme",
    version: str = "0.1.0",
    deps: tuple[str, ...] = ("numpy>=1.26",),
    body: str = "def answer() -> int:\n    return 42\n",
) -> Path:
    path = root / "helpers" / name
    dep_list = ", ".join(f'"{d}"' for d in deps)
    write(
        path / "pyproject.toml",
        f"""
        [build-system]
        requires = ["{HATCHLING}"]
        build-backend = "hatchling.build"

        [project]
        name = "{org}-{name}"
        version = "{version}"
        requires-python = ">=3.10"
        dependencies = [{dep_list}]

        [tool.hatch.build.targets.wheel]
        packages = ["src/{name}"]
        """,
    )
    (path / "src" / name).mkdir(parents=True, exist_ok=True)
    (path / "src" / name / "__init__.py").write_text(body)
    return path


def image(
    root: Path,
    name: str,
    *,
    helpers: tuple[str, ...],
    version: str = "0.1.0",
    requirements: tuple[str, ...] = (),
    base: str | None = None,
) -> Path:
    """``images/<name>/image.toml``; ``base`` None: kiln's OS base (images/os.lock)."""
    path = root / "images" / name
    hl = ", ".join(f'"{h}"' for h in helpers)
    rq = ", ".join(f'"{r}"' for r in requirements)
    base_line = f'base = "{base}"' if base else ""
    write(
        path / "image.toml",
        f"""
        [image]
        version = "{version}"
        {base_line}
        python = "{PYTHON}"
        helpers = [{hl}]
        requirements = [{rq}]
        """,
    )
    return path


def component(root: Path, filename: str, *, image_name: str, func: str = "double") -> Path:
    return write(
        root / "pipelines" / "components" / filename,
        f'''
        IMAGE = "{image_name}"


        def {func}(x: int) -> int:
            return 2 * x


        def _private_helper() -> None:
            pass
        ''',
    )


def pipeline(root: Path, name: str, *, component_name: str = "double") -> Path:
    return write(
        root / "pipelines" / f"{name}.py",
        f'''
        def build(load):
            from kfp import dsl

            comp = load("{component_name}")

            @dsl.pipeline(name="{name.replace("_", "-")}")
            def p(x: int = 1) -> int:
                return comp(x=x).output

            return p
        ''',
    )


def sample(root: Path) -> Path:
    """One helper, one image, one component, one pipeline."""
    workspace(root)
    helper(root, "imgproc")
    image(root, "base", helpers=("imgproc",))
    component(root, "maths.py", image_name="base")
    pipeline(root, "demo")
    return root
