"""``kiln new``: write a helper, a component or a pipeline in the repo's conventions.

Each function validates every value first and writes nothing when one is bad;
then it writes the skeleton (never over an existing file) and returns the
paths it wrote or edited. The skeletons build, test, compile and run as they
are: a helper's wheel and its test, a component KFP accepts, a pipeline that
compiles against it.
"""

from __future__ import annotations

import ast
import contextlib
import json
import keyword
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError

from kiln._errors import ConfigError
from kiln._util.toml import load_toml
from kiln._workspace.model import Component, Image, Workspace
from kiln._workspace.names import helper_packages, shadowing

DEFAULT_HATCHLING = "hatchling==1.33.0"

_HELPER_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*[a-z0-9]$")
_HATCHLING_PIN = re.compile(r"hatchling==[\w.]+")
_LINE = 100  # ruff's line-length in this repo: generated code passes `ruff format --check`

# Parameter types a pipeline argument can feed straight into a component.
_PLAIN_TYPES = ("bool", "dict", "float", "int", "list", "str")
_PLACEHOLDERS: dict[str, Any] = {
    "bool": False,
    "dict": {},
    "float": 1.0,
    "int": 1,
    "list": [],
    "str": "hello world",
}


# --------------------------------------------------------------------- checks
def _rel(ws: Workspace, path: Path) -> str:
    try:
        return path.relative_to(ws.root).as_posix()
    except ValueError:
        return str(path)


def _check_new(ws: Workspace, path: Path) -> None:
    if path.exists():
        raise ConfigError(f"{_rel(ws, path)} already exists; pick another name or edit it")


def _check_identifier(kind: str, name: str) -> None:
    if not _IDENTIFIER.match(name) or keyword.iskeyword(name):
        raise ConfigError(
            f"{kind} name {name!r} must be a lowercase Python identifier (not a keyword): "
            "letters, digits and underscores, starting with a letter and not ending with "
            f"an underscore, e.g. {'word_counts' if kind == 'component' else 'word_report'!r}"
        )


def _image(ws: Workspace, name: str) -> Image:
    for image in ws.images:
        if image.name == name:
            return image
    known = ", ".join(i.name for i in ws.images) or "none"
    raise ConfigError(
        f"--image {name!r} is not a folder under images/ (known images: {known}); "
        "use one of those, or add images/<name>/image.toml and run `kiln lock <name>`"
    )


# --------------------------------------------------------------------- writing
def _write(created: dict[Path, str], edited: dict[Path, str]) -> list[Path]:
    written = []
    for path, text in created.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:  # "x": never overwrite
            handle.write(text)
        written.append(path)
    for path, text in edited.items():
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


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


# --------------------------------------------------------------------- helper
def _hatchling_pin(ws: Workspace) -> str:
    sources = [h.path / "pyproject.toml" for h in ws.helpers] + [ws.root / "pyproject.toml"]
    for path in sources:
        requires = load_toml(path, what="pyproject").get("build-system", {}).get("requires", [])
        for req in requires:
            pin = str(req).replace(" ", "")
            if _HATCHLING_PIN.fullmatch(pin):
                return pin
    return DEFAULT_HATCHLING


def _image_with_helper(ws: Workspace, image: Image, helper: str) -> str:
    """``image.toml`` with ``helper`` appended to ``helpers``, comments and layout kept."""
    path = image.path / "image.toml"
    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    except ParseError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    table: Any = doc.get("image", doc)
    helpers = table.get("helpers")
    if helpers is None:
        table["helpers"] = [helper]
    elif isinstance(helpers, list) and all(isinstance(h, str) for h in helpers):
        if helper not in helpers:
            helpers.append(helper)
    else:
        raise ConfigError(f"{_rel(ws, path)}: helpers must be a list of strings, got {helpers!r}")
    return tomlkit.dumps(doc)


def _helper_files(ws: Workspace, name: str, package: str) -> dict[Path, str]:
    path = ws.root / "helpers" / name
    distribution = f"{ws.org}-{name}"
    pyproject = f"""\
[build-system]
# Pinned: a different hatchling writes different metadata, and the published
# wheel would no longer be byte-reproducible from the same sources.
requires = ["{_hatchling_pin(ws)}"]
build-backend = "hatchling.build"

[project]
# "<org>-<folder>": a short name like "{name}" may exist on public PyPI.
name = "{distribution}"
version = "0.1.0"
description = "{name}: code shared by pipeline components."
requires-python = ">=3.10"
# Third-party requirements, e.g. "numpy>=1.26"; a sibling helper is pinned
# exactly, e.g. "{ws.org}-dataquality==0.1.0".
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
        path / "pyproject.toml": pyproject,
        path / "src" / package / "__init__.py": init,
        path / "src" / package / "py.typed": "",
        path / "tests" / f"test_{package}.py": test,
    }


def new_helper(ws: Workspace, name: str, *, images: Sequence[str] = ()) -> list[Path]:
    """Write ``helpers/<name>/`` and add it to each of ``images``; return the paths written."""
    if not _HELPER_NAME.match(name):
        raise ConfigError(
            f"helper name {name!r} must be lowercase letters, digits and dashes, starting "
            "with a letter and not ending with a dash, e.g. 'textstats' or 'text-stats' "
            f"(the folder helpers/<name>, the distribution '{ws.org}-<name>')"
        )
    package = name.replace("-", "_")
    if keyword.iskeyword(package):
        raise ConfigError(f"helper name {name!r} is a Python keyword, so no import can name it")
    _check_new(ws, ws.root / "helpers" / name)
    why = next(shadowing(ws, package), None)
    if why is not None:
        raise ConfigError(
            f"helper name {name!r} gives the import package {package!r}, which would shadow "
            f"a module the repo needs: {why}; pick another name"
        )
    edited = {}
    for image_name in dict.fromkeys(images):
        image = _image(ws, image_name)
        edited[image.path / "image.toml"] = _image_with_helper(ws, image, name)
    return _write(_helper_files(ws, name, package), edited)


# --------------------------------------------------------------------- component
def _component_text(ws: Workspace, name: str, image: Image) -> str:
    if image.helpers:
        first = ws.helper(image.helpers[0])
        package = helper_packages(first)[0]
        baked = ", ".join(image.helpers)
        helpers_note = (
            f"The `{image.name}` image bakes these helpers: {baked}. Import one inside the "
            f"function, e.g. `from {package} import ...`; a helper is in the pod only if "
            f"images/{image.name}/image.toml lists it in `helpers`."
        )
    else:
        helpers_note = (
            f"The `{image.name}` image bakes no helper yet: `kiln new helper NAME --image "
            f"{image.name}` adds one; then import it inside the function "
            "(`from <package> import ...`)."
        )
    return f'''\
"""{name}: a pipeline step on the `{image.name}` image.

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

IMAGE = "{image.name}"


def {name}(text: str, min_length: int = 1) -> int:
    """Example step: how many words of ``text`` have at least ``min_length`` letters."""
    import re

    words = re.findall(r"[^\\W\\d_]+", text)
    return sum(1 for word in words if len(word) >= min_length)
'''


def new_component(ws: Workspace, name: str, *, image: str) -> list[Path]:
    """Write ``pipelines/components/<name>.py`` running on ``image``; return the path."""
    _check_identifier("component", name)
    target = _image(ws, image)
    for comp in ws.components:
        if comp.name == name:
            raise ConfigError(
                f"component {name!r} already exists in {_rel(ws, comp.path)}; "
                "pick another name or edit it"
            )
    path = ws.root / "pipelines" / "components" / f"{name}.py"
    _check_new(ws, path)
    return _write({path: _component_text(ws, name, target)}, {})


# --------------------------------------------------------------------- pipeline
@dataclass(frozen=True)
class _Param:
    name: str
    annotation: str
    value: Any  # the component's default, or a placeholder of the type


@dataclass(frozen=True)
class _Signature:
    params: tuple[_Param, ...]
    returns: str | None  # a plain return type, or None
    has_outputs: bool  # Output[...] parameters: the return is outputs["Output"]


def _signature(ws: Workspace, component: Component) -> _Signature:
    """What a pipeline must pass to ``component`` and gets back, read with ``ast``."""
    where = f"{_rel(ws, component.path)}: {component.name}"
    tree = ast.parse(component.path.read_text(encoding="utf-8"), filename=str(component.path))
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == component.name)
    args = func.args
    if args.vararg or args.kwarg:
        raise ConfigError(f"{where} takes *args or **kwargs, which KFP cannot pass; remove them")
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    pairs = list(zip(positional, [*defaults, *args.defaults], strict=True))
    pairs += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    params, has_outputs = [], False
    for arg, default in pairs:
        if arg.annotation is None:
            raise ConfigError(f"{where}: parameter {arg.arg!r} needs a type annotation for KFP")
        annotation = ast.unparse(arg.annotation)
        kind = re.sub(r"^dsl\.", "", annotation)
        if kind.startswith(("Output[", "OutputPath(")):
            has_outputs = True
            continue
        base = re.sub(r"\[.*", "", kind)
        if base not in _PLAIN_TYPES:
            raise ConfigError(
                f"{where}: parameter {arg.arg!r} is {annotation}, which a pipeline argument "
                "cannot feed (an input artifact comes from an upstream step); pass --component "
                "with a component whose inputs are plain (int, float, str, bool, list, dict), "
                "or write this pipeline by hand"
            )
        value = _PLACEHOLDERS[base]
        if default is not None:
            with contextlib.suppress(ValueError):  # not a literal: keep the placeholder
                value = ast.literal_eval(default)
        params.append(_Param(arg.arg, annotation, value))
    returns = None
    if func.returns is not None:
        annotation = ast.unparse(func.returns)
        if re.sub(r"\[.*", "", annotation) in _PLAIN_TYPES:
            returns = annotation
    return _Signature(tuple(params), returns, has_outputs)


def _usable(ws: Workspace, component: Component) -> bool:
    try:
        _signature(ws, component)
    except ConfigError:
        return False
    return True


def _pipeline_text(name: str, component: str, sig: _Signature) -> str:
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


def new_pipeline(ws: Workspace, name: str, *, component: str | None = None) -> list[Path]:
    """Write ``pipelines/<name>.py`` running ``component``; return the path."""
    _check_identifier("pipeline", name)
    path = ws.root / "pipelines" / f"{name}.py"
    _check_new(ws, path)
    if not ws.components:
        raise ConfigError(
            "no components under pipelines/components/ for the pipeline to run; "
            "write one first: kiln new component NAME --image IMAGE"
        )
    if component is None:
        usable = [c for c in ws.components if _usable(ws, c)]
        if not usable:
            raise ConfigError(
                "no component whose inputs a pipeline argument can feed (all take input "
                "artifacts); name one with --component, or write one first: "
                "kiln new component NAME --image IMAGE"
            )
        chosen = usable[0]
    else:
        found = [c for c in ws.components if c.name == component]
        if not found:
            known = ", ".join(c.name for c in ws.components)
            raise ConfigError(
                f"--component {component!r} is not a component under pipelines/components/ "
                f"(known: {known}); use one of those or write it first: "
                f"kiln new component {component} --image IMAGE"
            )
        chosen = found[0]
    text = _pipeline_text(name, chosen.name, _signature(ws, chosen))
    return _write({path: text}, {})
