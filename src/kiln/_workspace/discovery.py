"""Read a repository into a frozen ``Workspace``; validate as we go.

Nothing here imports user code or touches the network: components and
pipelines are read with ``ast``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kiln._debian.config import read_os, read_os_packages
from kiln._errors import ConfigError
from kiln._util.git import strip_credentials
from kiln._util.toml import get_int, get_str, get_str_list, load_toml
from kiln._workspace.model import (
    DEFAULT_PLATFORM,
    Component,
    Helper,
    Image,
    Pipeline,
    StackConfig,
    Workspace,
    sibling_closure,
)

_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` whose pyproject.toml has [tool.kiln]."""
    for candidate in (start, *start.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and "kiln" in load_toml(pyproject, what="workspace").get("tool", {}):
            return candidate
    raise ConfigError(
        f"no pyproject.toml with a [tool.kiln] table at or above {start}; "
        "run kiln inside a kiln monorepo or pass --repo PATH"
    )


def _check_version(value: str, path: Path) -> str:
    try:
        Version(value)
    except InvalidVersion:
        raise ConfigError(
            f"{path}: version {value!r} is not a valid PEP 440 version; use e.g. '1.2.3'"
        ) from None
    return value


# Options of hatchling's wheel target that choose the files to ship.
_FILE_SELECTION = ("packages", "only-include", "include", "sources", "force-include")


def _check_wheel_files(doc: dict[str, Any], path: Path, distribution: str) -> None:
    """Catch what hatchling would fail on: no file selection and no folder named like the
    distribution (``acme_textstats``), which is the rule here since import packages keep
    short names."""
    hatch = doc.get("tool", {}).get("hatch", {}).get("build", {})
    wheel = hatch.get("targets", {}).get("wheel", {})
    if any(key in wheel or key in hatch for key in _FILE_SELECTION):
        return
    module = canonicalize_name(distribution).replace("-", "_")
    candidates = (f"{module}/__init__.py", f"src/{module}/__init__.py", f"{module}.py")
    if any((path / c).is_file() for c in candidates):
        return
    found = sorted(p.parent.name for p in (path / "src").glob("*/__init__.py"))
    package = found[0] if len(found) == 1 else path.name.replace("-", "_")
    raise ConfigError(
        f"{path / 'pyproject.toml'}: hatchling cannot tell which files to ship: the import "
        f"package is not named like the distribution ({module}); add\n"
        f'    [tool.hatch.build.targets.wheel]\n    packages = ["src/{package}"]\n'
        f"(packages found under {path / 'src'}: {', '.join(found) or 'none'})"
    )


def _read_helper(path: Path, org: str) -> tuple[Helper, list[Requirement]]:
    pyproject = path / "pyproject.toml"
    doc = load_toml(pyproject, what="helper")
    project = doc.get("project")
    if not isinstance(project, dict):
        raise ConfigError(f"{pyproject}: no [project] table; add name, version and dependencies")
    name = get_str(project, "name", pyproject, "project")
    expected = f"{org}-{path.name}"
    if canonicalize_name(name) != canonicalize_name(expected):
        raise ConfigError(
            f"{pyproject}: [project] name is {name!r}, expected {expected!r}: published "
            f"helpers carry the organisation prefix from [tool.kiln] org ({org!r}); "
            f'set name = "{expected}"'
        )
    if canonicalize_name(name).startswith("kfp"):
        raise ConfigError(
            f"{pyproject}: [project] name {name!r} starts with 'kfp': KFP skips installing kfp "
            "for a component whose packages_to_install holds such a name, so its pod would "
            "start without kfp; choose an organisation prefix that does not start with 'kfp'"
        )
    if "version" in project.get("dynamic", []):
        raise ConfigError(f"{pyproject}: a dynamic version is not supported; set version = '...'")
    version = _check_version(get_str(project, "version", pyproject, "project"), pyproject)
    backend = doc.get("build-system", {}).get("requires", [])
    if not any(re.fullmatch(r"hatchling==[\w.]+", r.replace(" ", "")) for r in backend):
        raise ConfigError(
            f"{pyproject}: [build-system] requires {backend!r} must pin hatchling exactly "
            '(e.g. "hatchling==1.33.0"): an unpinned backend breaks byte-reproducible wheels'
        )
    _check_wheel_files(doc, path, name)
    reqs: list[Requirement] = []
    for raw in get_str_list(project, "dependencies", pyproject, "project"):
        try:
            reqs.append(Requirement(raw))
        except InvalidRequirement as exc:
            raise ConfigError(f"{pyproject}: dependency {raw!r} is invalid: {exc}") from None
    helper = Helper(
        name=path.name,
        path=path,
        distribution=name,
        version=version,
        dependencies=tuple(str(r) for r in reqs),
        siblings=(),
        packages=_import_packages(doc, path, name),
    )
    return helper, reqs


def _import_packages(doc: dict[str, Any], path: Path, distribution: str) -> tuple[str, ...]:
    """The top-level import names a helper's wheel ships: its hatch ``packages`` (their
    last path part), else the package named like the distribution."""
    wheel = doc.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel")
    listed = wheel.get("packages") if isinstance(wheel, dict) else None
    if isinstance(listed, list) and all(isinstance(p, str) for p in listed):
        return tuple(sorted({Path(p).name for p in listed}))
    return (canonicalize_name(distribution).replace("-", "_"),)


def _read_helpers(root: Path, org: str) -> tuple[Helper, ...]:
    folders = sorted(p for p in (root / "helpers").glob("*") if p.is_dir())
    read = [_read_helper(p, org) for p in folders if not p.name.startswith((".", "_"))]
    by_dist = {canonicalize_name(h.distribution): h for h, _ in read}
    helpers = []
    for helper, reqs in read:
        siblings = []
        for req in reqs:
            sibling = by_dist.get(canonicalize_name(req.name))
            if sibling is None:
                continue
            pinned = [s for s in req.specifier if s.operator == "=="]
            if len(req.specifier) != 1 or not pinned or pinned[0].version != sibling.version:
                raise ConfigError(
                    f"{helper.path / 'pyproject.toml'}: dependency {str(req)!r} on sibling "
                    f"helper {sibling.name} must be an exact pin on its current version: "
                    f'"{sibling.distribution}=={sibling.version}"'
                )
            siblings.append(sibling.name)
        helpers.append(
            Helper(**{**helper.__dict__, "siblings": tuple(siblings)})  # frozen: rebuild
        )
    return tuple(helpers)


def sibling_cycle(helpers: Sequence[Helper]) -> tuple[str, ...]:
    """The first cycle of sibling pins as a path of folder names (``("a", "b", "a")``),
    or ``()``. Deterministic: helpers and their siblings are visited in name order."""
    graph = {h.name: sorted(h.siblings) for h in helpers}
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> tuple[str, ...]:
        if name in path:
            return (*path[path.index(name) :], name)
        if name in done:
            return ()
        path.append(name)
        for sibling in graph.get(name, ()):
            cycle = visit(sibling)
            if cycle:
                return cycle
        path.pop()
        done.add(name)
        return ()

    for name in sorted(graph):
        cycle = visit(name)
        if cycle:
            return cycle
    return ()


def check_no_sibling_cycle(helpers: Sequence[Helper]) -> None:
    """Helpers that pin each other exactly can never get a new version one at a time."""
    cycle = sibling_cycle(helpers)
    if cycle:
        by_name = {h.name: h for h in helpers}
        files = ", ".join(str(by_name[n].path / "pyproject.toml") for n in cycle[:-1])
        raise ConfigError(
            f"sibling helpers pin each other in a cycle: {' -> '.join(cycle)} ({files}); "
            "with exact pins both ways none of them can get a new version without the others: "
            "merge them into one helper, or drop one of the pins"
        )


def _read_env(table: dict[str, Any], config: Path) -> tuple[tuple[str, str], ...]:
    """``[image.env]``: variable name -> string value."""
    env = table.get("env", {})
    if not isinstance(env, dict):
        raise ConfigError(f'{config}: env must be a table, e.g. [image.env] MPLBACKEND = "Agg"')
    for key, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or not isinstance(value, str):
            raise ConfigError(
                f'{config}: [image.env] {key} = {value!r}; use NAME = "string value" '
                'with NAME made of letters, digits and _, e.g. MPLBACKEND = "Agg"'
            )
    return tuple(sorted(env.items()))


def _read_image(path: Path, helper_names: set[str]) -> Image:
    config = path / "image.toml"
    doc = load_toml(config, what="image")
    table: dict[str, Any] = doc.get("image", doc)
    # kiln builds every image itself; `builder = "kiln"` (kiln 0.2) is still accepted.
    builder = get_str(table, "builder", config, "image", default="kiln")
    if builder != "kiln":
        raise ConfigError(
            f"{config}: builder = {builder!r}: kiln builds every image itself now (the digest "
            "is known before the push); delete the line. Debian packages the image needs go "
            'in its os-packages (e.g. os-packages = ["libgomp1"]): kiln locks and layers them'
        )
    if (path / "Dockerfile").is_file():
        raise ConfigError(
            f"{path / 'Dockerfile'}: kiln builds no image with Docker any more (a Docker "
            "build is not reproducible): list the Debian packages it installs in image.toml "
            'os-packages (e.g. os-packages = ["libgomp1"]), then `kiln lock`; or build that '
            "base elsewhere, push it, and name it by digest in image.toml `base`. Then delete "
            "the Dockerfile"
        )
    env = _read_env(table, config)
    helpers = get_str_list(table, "helpers", config, "image")
    unknown = sorted(set(helpers) - helper_names)
    if unknown:
        known = ", ".join(sorted(helper_names)) or "none"
        raise ConfigError(
            f"{config}: helpers lists {', '.join(unknown)}, "
            f"{'which is not a folder' if len(unknown) == 1 else 'which are not folders'} under "
            f"helpers/ (known helpers: {known}); fix the name or add the helper"
        )
    requirements = get_str_list(table, "requirements", config, "image")
    for raw in requirements:
        try:
            Requirement(raw)
        except InvalidRequirement as exc:
            raise ConfigError(f"{config}: requirement {raw!r} is invalid: {exc}") from None
    python = get_str(table, "python", config, "image", default="3.11")
    if not re.fullmatch(r"3\.\d+", python):
        raise ConfigError(f"{config}: python = {python!r}; use a minor version such as '3.11'")
    # What the image's wheels are locked for (`kiln lock`): "<arch>-manylinux_2_<glibc minor>",
    # no newer than the base's glibc.
    platform = get_str(table, "platform", config, "image", default=DEFAULT_PLATFORM)
    if not re.fullmatch(r"(x86_64|aarch64)-manylinux_2_\d+", platform):
        raise ConfigError(
            f"{config}: platform = {platform!r}; use '<arch>-manylinux_2_<N>' with arch x86_64 "
            f"or aarch64 and N the base image's glibc minor version or lower, e.g. "
            f"{DEFAULT_PLATFORM!r}"
        )
    base = _registry_base(table, config, "image")
    os_packages = read_os_packages(table, config)
    if base is not None and os_packages:
        raise ConfigError(
            f"{config}: os-packages are layered on kiln's OS base, and this image names a "
            f"registry base ({base}); drop one of the two"
        )
    return Image(
        name=path.name,
        path=path,
        version=_check_version(get_str(table, "version", config, "image"), config),
        base=base,
        python=python,
        helpers=helpers,
        requirements=requirements,
        platform=platform,
        env=env,
        os_packages=os_packages,
    )


def _registry_base(table: dict[str, Any], config: Path, section: str) -> str | None:
    """``base``: None (kiln's OS base, built from images/os.lock) or a registry image's
    reference, which `kiln lock` pins by digest."""
    if "base" not in table:
        return None
    base = get_str(table, "base", config, section)
    if not re.fullmatch(r"[a-z0-9][a-z0-9._:/-]*(@sha256:[0-9a-f]{64})?", base):
        raise ConfigError(
            f"{config}: [{section}] base = {base!r} is not an image reference; use e.g. "
            "'python:3.11-slim@sha256:<digest>', or delete the line to build on kiln's OS base"
        )
    return base


def _parse(path: Path) -> ast.Module:
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


def _component(
    path: Path,
    func: ast.FunctionDef,
    image: Image | None,
    helpers: Sequence[Helper],
    images: Sequence[Image],
) -> Component:
    """The component ``func`` with the helpers its imports need; in image mode, an error
    naming a helper its image lacks and the images that have it."""
    imports = function_imports(func)
    provides = {package: h.name for h in helpers for package in h.packages}
    needed = tuple(sorted({provides[i] for i in imports if i in provides}))
    if image is not None:
        inside = sibling_closure(helpers, image.helpers)
        for helper in needed:
            if helper in inside:
                continue
            having = [i.name for i in images if helper in sibling_closure(helpers, i.helpers)]
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


def _read_components(
    root: Path, images: Sequence[Image], helpers: Sequence[Helper]
) -> tuple[Component, ...]:
    components: list[Component] = []
    by_name = {i.name: i for i in images}
    for path in sorted((root / "pipelines" / "components").glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = _parse(path)
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
            components.append(_component(path, func, chosen, helpers, images))
    seen: dict[str, Path] = {}
    for comp in components:
        if comp.name in seen:
            raise ConfigError(
                f"component {comp.name!r} is defined in both {seen[comp.name]} and "
                f"{comp.path}; rename one"
            )
        seen[comp.name] = comp.path
    return tuple(components)


PACKAGES_IMAGE = "packages"  # the name of packages mode's pseudo-image (and its lock)


def _packages_image(
    root: Path,
    kiln: dict[str, Any],
    pyproject: Path,
    components: Sequence[Component],
    helpers: Sequence[Helper],
) -> Image | None:
    """Packages mode's pseudo-image: [tool.kiln.packages] base/python/platform and every
    helper, locked in pipelines/: the lock holds every helper's third-party closure, which
    each packages-mode component installs its own part of."""
    if not any(c.image is None for c in components):
        return None
    table = kiln.get("packages", {})
    section = "tool.kiln.packages"
    if not isinstance(table, dict):
        raise ConfigError(f'{pyproject}: [{section}] must be a table, e.g. python = "3.11"')
    python = get_str(table, "python", pyproject, section, default="3.11")
    if not re.fullmatch(r"3\.\d+", python):
        raise ConfigError(f"{pyproject}: [{section}] python = {python!r}; use e.g. '3.11'")
    platform = get_str(table, "platform", pyproject, section, default=DEFAULT_PLATFORM)
    return Image(
        name=PACKAGES_IMAGE,
        path=root / "pipelines",
        version="0",
        base=_registry_base(table, pyproject, section),
        python=python,
        helpers=tuple(sorted(h.name for h in helpers)),
        requirements=(),
        platform=platform,
    )


def _read_pipelines(root: Path) -> tuple[Pipeline, ...]:
    pipelines = []
    for path in sorted((root / "pipelines").glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = _parse(path)
        if not any(isinstance(n, ast.FunctionDef) and n.name == "build" for n in tree.body):
            raise ConfigError(
                f"{path}: a pipeline module must define `build(load)` returning the "
                "@dsl.pipeline function; `load(name)` gives a pinned component"
            )
        pipelines.append(Pipeline(name=path.stem, path=path))
    return tuple(pipelines)


def _upstream_index(kiln: dict[str, Any], pyproject: Path) -> str:
    url = get_str(kiln, "upstream-index", pyproject, "tool.kiln", default="https://pypi.org/simple")
    if not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", url):
        raise ConfigError(
            f"{pyproject}: [tool.kiln] upstream-index {strip_credentials(url)!r} must be an "
            "http(s) URL without "
            "credentials, e.g. 'https://pypi.org/simple' (credentials come from netrc)"
        )
    return url


def _source(kiln: dict[str, Any], pyproject: Path) -> str | None:
    if "source" not in kiln:
        return None
    url = get_str(kiln, "source", pyproject, "tool.kiln")
    if not re.fullmatch(r"https://[^\s/@]+(/\S*)?", url):
        raise ConfigError(
            f"{pyproject}: [tool.kiln] source {strip_credentials(url)!r} must be an https URL "
            "without "
            "credentials, e.g. 'https://github.com/acme/ml-helpers'"
        )
    return url


def discover(root: Path) -> Workspace:
    """Read the monorepo at ``root``."""
    pyproject = root / "pyproject.toml"
    doc = load_toml(pyproject, what="kiln workspace")
    kiln = doc.get("tool", {}).get("kiln")
    if not isinstance(kiln, dict):
        raise ConfigError(f'{pyproject}: no [tool.kiln] table; add one with org = "..."')
    org = get_str(kiln, "org", pyproject, "tool.kiln")
    if not _NAME.match(org):
        raise ConfigError(f"{pyproject}: [tool.kiln] org {org!r} must be lowercase letters/digits")
    stack_table = kiln.get("stack", {})
    section = "tool.kiln.stack"
    stack = StackConfig(
        index_port=get_int(stack_table, "index-port", 8765, pyproject, section),
        registry_port=get_int(stack_table, "registry-port", 5765, pyproject, section),
    )
    helpers = _read_helpers(root, org)
    image_dirs = sorted(p for p in (root / "images").glob("*") if p.is_dir())
    images = tuple(_read_image(p, {h.name for h in helpers}) for p in image_dirs)
    if any(i.name == PACKAGES_IMAGE for i in images):
        raise ConfigError(
            f"{root / 'images' / PACKAGES_IMAGE}: the name {PACKAGES_IMAGE!r} is kiln's for "
            "packages mode's lock (pipelines/requirements.lock); rename the folder"
        )
    components = _read_components(root, images, helpers)
    return Workspace(
        root=root,
        org=org,
        upstream_index=_upstream_index(kiln, pyproject),
        source=_source(kiln, pyproject),
        stack=stack,
        helpers=helpers,
        images=images,
        components=components,
        pipelines=_read_pipelines(root),
        packages=_packages_image(root, kiln, pyproject, components, helpers),
        os=read_os(kiln, pyproject),
    )
