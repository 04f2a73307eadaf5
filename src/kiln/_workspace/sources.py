"""Component and pipeline modules read as source: ``ast``, never an import.

A component module's public functions become components: the helpers their imports
need (checked against their image's helpers), the module's ``IMAGE`` and ``PACKAGES``
constants read as literals. A pipeline module must define ``build(load)``.
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln._errors import ConfigError
from kiln._util.files import text_of
from kiln._util.kept import KeptRecords, code_digest
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
    return parse_source(path, path.read_bytes())


def parse_source(path: Path, data: bytes) -> ast.Module:
    """The syntax tree of ``data``, the bytes of the module ``path``: read as
    ``path.read_text(encoding="utf-8")`` reads them (universal newlines)."""
    try:
        return ast.parse(text_of(data), filename=str(path))
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


class _Helpers:
    """What every component of a run is checked against, worked out once per run (per
    component, it was 1004 x 500 at N=500): the helper that ships each import package
    and the helpers inside each image (its own and every sibling they pin)."""

    def __init__(self, helpers: Sequence[Helper], images: Sequence[Image]) -> None:
        self.provides = {package: h.name for h in helpers for package in h.packages}
        self.images = images
        self.inside = {i.name: frozenset(sibling_closure(helpers, i.helpers)) for i in images}


def _component(
    path: Path, func: str, imports: tuple[str, ...], image: Image | None, known: _Helpers
) -> Component:
    """The component ``func`` (which imports ``imports``) with the helpers its imports
    need; in image mode, an error naming a helper its image lacks and the images that
    have it."""
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
                f"{path}: {func} imports {package} (helper {helper}), which image "
                f"{image.name} does not contain; images containing it: "
                f"{', '.join(having) or 'none'}; {fix}"
            )
    return Component(
        name=func,
        path=path,
        image=image.name if image is not None else None,
        imports=imports,
        helpers=needed,
    )


@dataclass(frozen=True)
class ModuleFacts:
    """What discovery needs of a component module's syntax tree, and nothing else: a
    function of its bytes (and of the Python that parsed them), so it is kept by their
    sha256 (``KeptRecords``) and a module unchanged since the last run is not parsed again
    (1004 parses at N=500)."""

    future_annotations: bool  # `from __future__ import annotations` at module level
    functions: tuple[tuple[str, tuple[str, ...]], ...]  # public functions, their imports
    packages: str | tuple[str, ...]  # PACKAGES: "none", "all", "invalid" or names
    image: str | None  # IMAGE when it is a string
    image_repr: str  # how an error shows IMAGE: its repr, None's when missing or no literal

    @classmethod
    def of(cls, tree: ast.Module) -> ModuleFacts:
        funcs = [
            n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
        ]
        packages = _module_constant(tree, "PACKAGES")
        image = _module_constant(tree, "IMAGE")
        return cls(
            future_annotations=any(
                isinstance(n, ast.ImportFrom)
                and n.module == "__future__"
                and any(a.name == "annotations" for a in n.names)
                for n in tree.body
            ),
            functions=tuple((f.name, function_imports(f)) for f in funcs),
            packages=_packages_value(packages),
            image=image if isinstance(image, str) else None,
            image_repr=repr(None if image in (_MISSING, _NOT_LITERAL) else image),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "future_annotations": self.future_annotations,
            "functions": [[name, list(imports)] for name, imports in self.functions],
            "packages": self.packages if isinstance(self.packages, str) else list(self.packages),
            "image": self.image,
            "image_repr": self.image_repr,
        }

    @classmethod
    def from_json(cls, doc: Any) -> ModuleFacts | None:
        """The facts a kept record holds; None when it is not one (then parse again)."""
        try:
            packages = doc["packages"]
            facts = cls(
                future_annotations=doc["future_annotations"],
                functions=tuple((name, tuple(imports)) for name, imports in doc["functions"]),
                packages=packages if isinstance(packages, str) else tuple(packages),
                image=doc["image"],
                image_repr=doc["image_repr"],
            )
        except (KeyError, TypeError, ValueError):
            return None
        return facts if facts.to_json() == doc and facts._typed() else None

    def _typed(self) -> bool:
        names = [n for f in self.functions for n in (f[0], *f[1])]
        if not isinstance(self.packages, str):
            names.extend(self.packages)
        return (
            isinstance(self.future_annotations, bool)
            and all(isinstance(n, str) for n in names)
            and (self.packages in ("none", "all", "invalid") or not isinstance(self.packages, str))
            and isinstance(self.image, str | None)
            and isinstance(self.image_repr, str)
        )


def _packages_value(value: object) -> str | tuple[str, ...]:
    """PACKAGES as ``ModuleFacts`` keeps it: "none" (missing or False), "all" (True), the
    names listed, or "invalid" (anything else, a non-literal too)."""
    if value is _MISSING or value is False:
        return "none"
    if value is True:
        return "all"
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return "invalid"


# The Python decides what parses, and to what; this module's code (ModuleFacts among it)
# what is kept of it.
FACTS_KIND = f"kiln component module facts 1; python {sys.version}; code {code_digest(__file__)}"


def module_facts(path: Path, kept: KeptRecords) -> ModuleFacts:
    """The facts of the component module ``path``: kept ones when its bytes have some,
    else parsed (a syntax error is a ConfigError naming the line) and kept."""
    data = path.read_bytes()
    doc = kept.get(data)
    facts = ModuleFacts.from_json(doc) if doc is not None else None
    if facts is None:
        facts = _parsed_facts(path, data)
        kept.put(data, facts.to_json())
    return facts


def _parsed_facts(path: Path, data: bytes) -> ModuleFacts:
    return ModuleFacts.of(parse_source(path, data))


def _packages_of(facts: ModuleFacts, path: Path) -> set[str]:
    """The functions of a component module that run in packages mode: all of them with
    ``PACKAGES = True``, those named with ``PACKAGES = ["name", ...]``, else none."""
    funcs = [name for name, _imports in facts.functions]
    if facts.packages == "none":
        return set()
    if facts.packages == "all":
        return set(funcs)
    if not isinstance(facts.packages, str):
        unknown = sorted(set(facts.packages) - set(funcs))
        if unknown:
            raise ConfigError(
                f"{path}: PACKAGES names {', '.join(unknown)}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not a public function here "
                f"({', '.join(funcs)})"
            )
        return set(facts.packages)
    raise ConfigError(
        f"{path}: PACKAGES must be True (every function here in packages mode) or a list of "
        'function names, e.g. PACKAGES = ["light_step"]'
    )


def read_components(
    root: Path,
    images: Sequence[Image],
    helpers: Sequence[Helper],
    kept: KeptRecords | None = None,
) -> tuple[Component, ...]:
    """The components of ``pipelines/components/*.py``; ``kept``: where each module's
    facts are kept by its bytes (None: every module is parsed)."""
    kept = kept or KeptRecords(None, FACTS_KIND)
    components: list[Component] = []
    by_name = {i.name: i for i in images}
    known = _Helpers(helpers, images)
    for path in sorted((root / "pipelines" / "components").glob("*.py")):
        if path.name.startswith("_"):
            continue
        check_module_name(path)
        facts = module_facts(path, kept)
        if facts.future_annotations:
            raise ConfigError(
                f"{path}: `from __future__ import annotations` turns type hints into strings, "
                "which KFP cannot read as component inputs/outputs; remove that import"
            )
        if not facts.functions:
            raise ConfigError(f"{path}: defines no public function to turn into a component")
        in_packages = _packages_of(facts, path)
        image = facts.image
        if len(in_packages) < len(facts.functions) and (image is None or image not in by_name):
            raise ConfigError(
                f"{path}: IMAGE = {facts.image_repr} must name an image folder under images/ "
                f'({", ".join(sorted(by_name)) or "none"}); add e.g. IMAGE = "base", or '
                "PACKAGES = True to install the helpers at pod start instead"
            )
        for name, imports in facts.functions:
            chosen = None if name in in_packages else by_name[str(image)]
            components.append(_component(path, name, imports, chosen, known))
    seen: dict[str, Path] = {}
    for comp in components:
        if comp.name in seen:
            raise ConfigError(
                f"component {comp.name!r} is defined in both {seen[comp.name]} and "
                f"{comp.path}; rename one"
            )
        seen[comp.name] = comp.path
    kept.save()
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
