"""The skeletons ``kiln new`` writes: a helper, a component, a pipeline.

Text only; ``kiln._workspace.scaffold`` checks the names and writes the files. Every
skeleton passes ``ruff format --check`` as written (line length 100).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_LINE = 100  # ruff's line-length in this repo: generated code passes `ruff format --check`


def _py(value: Any) -> str:
    """``value`` as Python source, formatted the way ruff formats a literal."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _bracketed(head: str, items: Sequence[str], tail: str, indent: str = "") -> str:
    """``head`` + items + ``tail`` on one line if it fits, else split as ruff splits it."""
    one = f"{indent}{head}{', '.join(items)}{tail}"
    if len(one) <= _LINE:
        return one
    inner = f"{indent}    {', '.join(items)}"
    if len(inner) <= _LINE:
        return f"{indent}{head}\n{inner}\n{indent}{tail}"
    lines = "".join(f"{indent}    {item},\n" for item in items)
    return f"{indent}{head}\n{lines}{indent}{tail}"


def _para(text: str, prefix: str = "") -> str:
    """``text`` wrapped at 79 columns, each line starting with ``prefix`` (e.g. "# ").

    A `code span` is never split across lines.
    """
    glued = re.sub(r"``[^`]*``|`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), text)
    return textwrap.fill(
        glued,
        width=79,
        initial_indent=prefix,
        subsequent_indent=prefix,
        break_long_words=False,
        break_on_hyphens=False,
    ).replace("\0", " ")


def _fresh(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    return name


def helper_files(*, org: str, name: str, package: str, hatchling: str) -> dict[str, str]:
    """A new helper's files (paths relative to its folder): a pyproject pinning
    ``hatchling``, an import package ``package`` with one function, and its test."""
    distribution = f"{org}-{name}"
    pyproject = f"""\
[build-system]
# Pinned: a different hatchling writes different metadata, and the published
# wheel would no longer be byte-reproducible from the same sources.
requires = ["{hatchling}"]
build-backend = "hatchling.build"

[project]
# "<org>-<folder>": a short name like "{name}" may exist on public PyPI.
name = "{distribution}"
version = "0.1.0"
description = "{name}: code shared by pipeline components."
requires-python = ">=3.10"
# Third-party requirements, e.g. "numpy>=1.26"; a sibling helper is pinned
# exactly, e.g. "{org}-dataquality==0.1.0".
dependencies = []

[tool.hatch.build.targets.wheel]
# The distribution is {distribution} but the import package is {package}:
# hatchling looks for a package named after the distribution and, not finding
# one, refuses to build ("Unable to determine which files to ship"). Name it.
packages = ["src/{package}"]
"""
    usage = _para(
        f"A component running on an image that lists ``{name}`` in its image.toml "
        f"``helpers`` imports it inside the component function: ``from {package} import clamp``."
    )
    init = f'''\
"""{name}: code shared by pipeline components.

{usage}
"""

__all__ = ["clamp"]


def clamp(value: float, low: float, high: float) -> float:
    """``value`` limited to the range [low, high]; an empty range is a ValueError."""
    if low > high:
        raise ValueError(f"low ({{low}}) must not be greater than high ({{high}})")
    return min(max(value, low), high)
'''
    test = f"""\
from __future__ import annotations

import pytest
from {package} import clamp


def test_clamp_keeps_values_inside_the_range() -> None:
    assert clamp(0.25, 0.0, 1.0) == 0.25
    assert clamp(0.0, 0.0, 1.0) == 0.0


def test_clamp_limits_values_outside_the_range() -> None:
    assert clamp(-5.0, 0.0, 1.0) == 0.0
    assert clamp(5.0, 0.0, 1.0) == 1.0


def test_clamp_refuses_an_empty_range() -> None:
    with pytest.raises(ValueError, match="must not be greater"):
        clamp(0.5, 1.0, 0.0)
"""
    return {
        "pyproject.toml": pyproject,
        f"src/{package}/__init__.py": init,
        f"src/{package}/py.typed": "",
        f"tests/test_{package}.py": test,
    }


def component_module(name: str, image: str, helpers: Sequence[str], package: str) -> str:
    """A component module on ``image``, which bakes ``helpers`` (the first one's import
    package is ``package``; unused when there are none)."""
    if helpers:
        helpers_note = (
            f"The `{image}` image bakes these helpers: {', '.join(helpers)}. Import one inside "
            f"the function, e.g. `from {package} import ...`; a helper is in the pod only if "
            f"images/{image}/image.toml lists it in `helpers`."
        )
    else:
        helpers_note = (
            f"The `{image}` image bakes no helper yet: `kiln new helper NAME --image "
            f"{image}` adds one; then import it inside the function "
            "(`from <package> import ...`)."
        )
    return f'''\
"""{name}: a pipeline step on the `{image}` image.

kiln turns each public function here into a component YAML pinned to the
image by digest. Imports the pod needs go inside the function: KFP ships the
function's source, not this module.
"""

# A file (an artifact) as an output: add a parameter such as
#     table: Output[Dataset]
# write the file at `table.path` inside the function, and import the types at
# the top of this module: `from kfp.dsl import Dataset, Output`. (Never
# `from __future__ import annotations` here: KFP reads the real types.)
# A pipeline passes it on to the next step as `task.outputs["table"]`.
#
{_para(helpers_note, "# ")}

IMAGE = "{image}"


def {name}(text: str, min_length: int = 1) -> int:
    """Example step: how many words of ``text`` have at least ``min_length`` letters."""
    import re

    words = re.findall(r"[^\\W\\d_]+", text)
    return sum(1 for word in words if len(word) >= min_length)
'''


@dataclass(frozen=True)
class Param:
    """One parameter of a component, as a pipeline passes it."""

    name: str
    annotation: str
    value: Any  # the component's default, or a placeholder of the type


@dataclass(frozen=True)
class Signature:
    """What a pipeline must pass to a component and gets back."""

    params: tuple[Param, ...]
    returns: str | None  # a plain return type, or None
    has_outputs: bool  # Output[...] parameters: the return is outputs["Output"]


def pipeline_module(name: str, component: str, sig: Signature) -> str:
    """A pipeline module named ``name`` that runs ``component`` (called as ``sig`` says)."""
    params = [p.name for p in sig.params]
    var = _fresh(component, {name, "dsl", "load", "task", *params})
    func = _fresh(name, {var, "dsl", "load", *params})
    run_args = [f"{_py(p.name)}: {_py(p.value)}" for p in sig.params]
    # Defaults as in RUN_ARGS, but a mutable one (list, dict) stays in RUN_ARGS
    # only; parameters without a default go first (arguments are passed by name).
    defaulted = [not isinstance(p.value, (list, dict)) for p in sig.params]
    signature = [
        f"{p.name}: {p.annotation}" for p, d in zip(sig.params, defaulted, strict=True) if not d
    ]
    signature += [
        f"{p.name}: {p.annotation} = {_py(p.value)}"
        for p, d in zip(sig.params, defaulted, strict=True)
        if d
    ]
    returns = f" -> {sig.returns}" if sig.returns else ""
    lines = [
        _bracketed("RUN_ARGS = {", run_args, "}"),
        "",
        "",
        "def build(load: Callable[[str], Any]) -> Any:",
        "    from kfp import dsl",
        "",
        _bracketed(f"{var} = load(", [f'"{component}"'], ")", "    "),
        "",
        _bracketed(
            "@dsl.pipeline(",
            [f'name="{name.replace("_", "-")}"', f'description="Runs {component}."'],
            ")",
            "    ",
        ),
        _bracketed(f"def {func}(", signature, f"){returns}:", "    "),
        _bracketed(f"task = {var}(", [f"{p}={p}" for p in params], ")", "        "),
    ]
    if sig.returns:
        output = 'task.outputs["Output"]' if sig.has_outputs else "task.output"
        lines.append(f"        return {output}  # type: ignore[no-any-return]")
    lines += ["", f"    return {func}", ""]
    summary = _para(f"{name}: runs the `{component}` component; a starting point to grow.")
    run_args_note = _para(
        f"Default arguments of `kiln run {name}`; override one with `--arg NAME=VALUE` "
        "(VALUE is parsed as JSON when it can be).",
        "# ",
    )
    return f'''\
"""{summary}

`load(name)` gives a component pinned to its image by digest (the YAMLs
`kiln release --local` generates); chain steps by passing one task's
`.output` or `.outputs["<name>"]` to the next.
"""

from collections.abc import Callable
from typing import Any

{run_args_note}
''' + "\n".join(lines)
