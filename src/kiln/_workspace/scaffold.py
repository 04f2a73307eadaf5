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
import keyword
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError

from kiln._errors import ConfigError
from kiln._util.files import write_text_atomic
from kiln._util.toml import load_toml
from kiln._workspace.model import Component, Image, Workspace
from kiln._workspace.names import helper_packages, shadowing
from kiln._workspace.sources import parse_module
from kiln._workspace.templates import (
    Param,
    Signature,
    component_module,
    helper_files,
    pipeline_module,
)

DEFAULT_HATCHLING = "hatchling==1.33.0"

_HELPER_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*[a-z0-9]$")
_HATCHLING_PIN = re.compile(r"hatchling==[\w.]+")

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
        write_text_atomic(path, text)
        written.append(path)
    return written


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
    folder = ws.root / "helpers" / name
    files = helper_files(org=ws.org, name=name, package=package, hatchling=_hatchling_pin(ws))
    return _write({folder / rel: text for rel, text in files.items()}, edited)


# --------------------------------------------------------------------- component
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
    package = helper_packages(ws.helper(target.helpers[0]))[0] if target.helpers else ""
    text = component_module(name, target.name, target.helpers, package)
    return _write({path: text}, {})


# --------------------------------------------------------------------- pipeline
def _signature(ws: Workspace, component: Component) -> Signature:
    """What a pipeline must pass to ``component`` and gets back, read with ``ast``."""
    where = f"{_rel(ws, component.path)}: {component.name}"
    tree = parse_module(component.path)
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
        params.append(Param(arg.arg, annotation, value))
    returns = None
    if func.returns is not None:
        annotation = ast.unparse(func.returns)
        if re.sub(r"\[.*", "", annotation) in _PLAIN_TYPES:
            returns = annotation
    return Signature(tuple(params), returns, has_outputs)


def _usable(ws: Workspace, component: Component) -> bool:
    try:
        _signature(ws, component)
    except ConfigError:
        return False
    return True


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
    text = pipeline_module(name, chosen.name, _signature(ws, chosen))
    return _write({path: text}, {})
