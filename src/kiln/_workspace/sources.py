"""Component and pipeline modules read as source: ``ast``, never an import.

A component module's public functions become components: the helpers their imports
need (checked against their image's helpers), the module's ``IMAGE`` and ``PACKAGES``
constants read as literals. A pipeline module must define ``build(load)``.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from kiln._errors import ConfigError
from kiln._workspace.model import Component, Helper, Image, Pipeline, sibling_closure

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_module_name(path: Path) -> None:
    """A component or pipeline module is named like a Python module: its name goes into
    file names under dist/, the comment heading each YAML and `kiln run NAME`."""
    if not _MODULE.fullmatch(path.stem):
        better = re.sub(r"[^A-Za-z0-9_]+", "_", path.stem).strip("_") or "renamed"
        better = better if not better[0].isdigit() else f"p_{better}"
        raise ConfigError(
            f"{shlex.quote(str(path))}: the module name {path.stem!r} cannot be used: kiln "
            "names files and commands after it; name it like a Python module (letters, "
            f"digits and _): `git mv {shlex.quote(str(path))} "
            f"{shlex.quote(str(path.with_name(better + '.py')))}`"
        )


def parse_module(path: Path) -> ast.Module:
    """A component or pipeline module's syntax tree, never importing it."""
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: syntax error: {exc.msg}; fix it") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None


def function_imports(func: ast.FunctionDef) -> tuple[str, ...]:
    """The top-level modules ``func`` imports in its body (what its pod must provide: KFP
    ships the function's source alone), sorted; relative imports cannot work there."""
    found: set[str] = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".", 1)[0])
    return tuple(sorted(found))


def _module_constant(tree: ast.Module, name: str) -> object:
    """The literal assigned to ``name`` at module level (``_MISSING`` without one)."""
    value: object = _MISSING
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                value = _NOT_LITERAL
    return value


_MISSING = object()
_NOT_LITERAL = object()


def _packages_functions(tree: ast.Module, path: Path, funcs: Sequence[str]) -> set[str]:
    """The functions of a component module that run in packages mode: all of them with
    ``PACKAGES = True``, those named with ``PACKAGES = ["name", ...]``, else none."""
    value = _module_constant(tree, "PACKAGES")
    if value is _MISSING or value is False:
        return set()
    if value is True:
        return set(funcs)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        unknown = sorted(set(value) - set(funcs))
        if unknown:
            raise ConfigError(
                f"{path}: PACKAGES names {', '.join(unknown)}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not a public function here "
                f"({', '.join(funcs)})"
            )
        return set(value)
    raise ConfigError(
        f"{path}: PACKAGES must be True (every function here in packages mode) or a list of "
        'function names, e.g. PACKAGES = ["light_step"]'
    )


class _Helpers:
    """What every component of a run is checked against, worked out once per run (per
    component, it was 1004 x 500 at N=500): the helper that ships each import package
    and the helpers inside each image (its own and every sibling they pin)."""

    def __init__(self, helpers: Sequence[Helper], images: Sequence[Image]) -> None:
        self.provides = {package: h.name for h in helpers for package in h.packages}
        self.images = images
        self.inside = {i.name: frozenset(sibling_closure(helpers, i.helpers)) for i in images}


def _component(
    path: Path, func: ast.FunctionDef, image: Image | None, known: _Helpers
) -> Component:
    """The component ``func`` with the helpers its imports need; in image mode, an error
    naming a helper its image lacks and the images that have it."""
    imports = function_imports(func)
    provides = known.provides
    needed = tuple(sorted({provides[i] for i in imports if i in provides}))
    if image is not None:
        inside = known.inside[image.name]
        for helper in needed:
            if helper in inside:
                continue
            having = [i.name for i in known.images if helper in known.inside[i.name]]
            package = next(p for p, h in provides.items() if h == helper and p in imports)
            fix = (
                f'set IMAGE = "{having[0]}"' if having else f'add "{helper}" to `helpers`'
            ) + f" or add {helper!r} to helpers in images/{image.name}/image.toml"
            raise ConfigError(
                f"{path}: {func.name} imports {package} (helper {helper}), which image "
                f"{image.name} does not contain; images containing it: "
                f"{', '.join(having) or 'none'}; {fix}"
            )
    return Component(
        name=func.name,
        path=path,
        image=image.name if image is not None else None,
        imports=imports,
        helpers=needed,
    )


def read_components(
    root: Path, images: Sequence[Image], helpers: Sequence[Helper]
) -> tuple[Component, ...]:
    components: list[Component] = []
    by_name = {i.name: i for i in images}
    known = _Helpers(helpers, images)
    for path in sorted((root / "pipelines" / "components").glob("*.py")):
        if path.name.startswith("_"):
            continue
        check_module_name(path)
        tree = parse_module(path)
        if any(
            isinstance(n, ast.ImportFrom)
            and n.module == "__future__"
            and any(a.name == "annotations" for a in n.names)
            for n in tree.body
        ):
            raise ConfigError(
                f"{path}: `from __future__ import annotations` turns type hints into strings, "
                "which KFP cannot read as component inputs/outputs; remove that import"
            )
        funcs = [
            n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
        ]
        if not funcs:
            raise ConfigError(f"{path}: defines no public function to turn into a component")
        in_packages = _packages_functions(tree, path, [f.name for f in funcs])
        image = _module_constant(tree, "IMAGE")
        if len(in_packages) < len(funcs) and (not isinstance(image, str) or image not in by_name):
            shown = None if image in (_MISSING, _NOT_LITERAL) else image
            raise ConfigError(
                f"{path}: IMAGE = {shown!r} must name an image folder under images/ "
                f'({", ".join(sorted(by_name)) or "none"}); add e.g. IMAGE = "base", or '
                "PACKAGES = True to install the helpers at pod start instead"
            )
        for func in funcs:
            chosen = None if func.name in in_packages else by_name[str(image)]
            components.append(_component(path, func, chosen, known))
    seen: dict[str, Path] = {}
    for comp in components:
        if comp.name in seen:
            raise ConfigError(
                f"component {comp.name!r} is defined in both {seen[comp.name]} and "
                f"{comp.path}; rename one"
            )
        seen[comp.name] = comp.path
    return tuple(components)


def read_pipelines(root: Path) -> tuple[Pipeline, ...]:
    pipelines = []
    for path in sorted((root / "pipelines").glob("*.py")):
        if path.name.startswith("_"):
            continue
        check_module_name(path)
        tree = parse_module(path)
        if not any(isinstance(n, ast.FunctionDef) and n.name == "build" for n in tree.body):
            raise ConfigError(
                f"{path}: a pipeline module must define `build(load)` returning the "
                "@dsl.pipeline function; `load(name)` gives a pinned component"
            )
        pipelines.append(Pipeline(name=path.stem, path=path))
    return tuple(pipelines)
