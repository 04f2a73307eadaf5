"""Read a repository into a frozen ``Workspace``; validate as we go.

Nothing here imports user code or touches the network: components and
pipelines are read with ``ast`` (``kiln._workspace.sources``).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kiln._debian.config import OsConfig, read_os, read_os_packages
from kiln._errors import ConfigError
from kiln._util import toml
from kiln._util.git import strip_credentials
from kiln._util.kept import KeptRecords, code_digest
from kiln._util.toml import get_int, get_str, get_str_list, load_toml
from kiln._workspace.confusion import check_confusion
from kiln._workspace.hatch import (
    build_requires,
    check_build_system,
    check_file_paths,
    check_wheel_files,
    import_packages,
)
from kiln._workspace.model import (
    STATE_DIR,
    Component,
    Helper,
    Image,
    StackConfig,
    Workspace,
)
from kiln._workspace.platforms import DEFAULT_PLATFORMS, image_platforms, read_platforms
from kiln._workspace.sources import FACTS_KIND, read_components, read_pipelines
from kiln._workspace.tree import (
    DEFAULT_MAX_FILE_MIB,
    MAX_FILE_SETTING,
    Limit,
    check_helper_tree,
    check_read_tree,
    oversized,
    refuse_link,
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


# A helper folder names a distribution (<org>-<folder>, PEP 508); an image folder names a
# registry repository (<org>/<folder>), lowercase. Both appear in the commands kiln's
# hints give, so nothing a shell would read as more than a word gets through.
_HELPER_FOLDER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_IMAGE_FOLDER = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


# A folder name goes into wheel file names (acme_<name>-<version>-py3-none-any.whl) and
# image references (<registry>/<org>/<name>), both limited to 255 characters.
MAX_FOLDER_NAME = 100


def _check_folder(path: Path, pattern: re.Pattern[str], rule: str) -> None:
    if not pattern.fullmatch(path.name):
        raise ConfigError(
            f"{shlex.quote(str(path))}: the folder name {path.name!r} cannot be used: it names "
            f"{rule}; rename the folder (e.g. `git mv {shlex.quote(str(path))} "
            f"{shlex.quote(str(path.parent / _suggest(path.name)))}`)"
        )
    if len(path.name) > MAX_FOLDER_NAME:
        raise ConfigError(
            f"{shlex.quote(str(path))}: the folder name is {len(path.name)} characters long; "
            f"it names {rule} and goes into wheel file names and image references, which "
            f"have length limits (255): use at most {MAX_FOLDER_NAME} characters (`git mv "
            f"{shlex.quote(str(path))} "
            f"{shlex.quote(str(path.parent / path.name[:MAX_FOLDER_NAME].rstrip('-_.')))}`)"
        )


def _suggest(name: str) -> str:
    """``name`` with what a folder may not hold replaced by dashes, lowercased."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "renamed"


def _read_helper(
    path: Path, org: str, limit: Limit, kept: KeptRecords
) -> tuple[Helper, list[Requirement]]:
    _check_folder(path, _HELPER_FOLDER, "a distribution (letters, digits, '-', '_' and '.')")
    files = check_helper_tree(path)  # before reading any of them
    pyproject = path / "pyproject.toml"
    doc = load_toml(pyproject, what="helper", kept=kept)
    own = doc.get("tool", {}).get("kiln", {})
    if isinstance(own, dict) and MAX_FILE_SETTING in own:
        limit = _limit(own, pyproject)
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
    check_build_system(doc.get("build-system", {}), pyproject)
    check_wheel_files(doc, path, name)
    check_file_paths(doc, path)
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
        packages=import_packages(doc, path, name),
        warnings=oversized(files, limit),
        build_requires=build_requires(doc),
    )
    return helper, reqs


def _limit(kiln: dict[str, Any], pyproject: Path) -> Limit:
    """``max-file-size-mib`` of a [tool.kiln] table: the size above which a helper's file
    is reported."""
    mib = get_int(kiln, MAX_FILE_SETTING, DEFAULT_MAX_FILE_MIB, pyproject, "tool.kiln")
    if mib < 1:
        raise ConfigError(
            f"{pyproject}: [tool.kiln] {MAX_FILE_SETTING} = {mib}; use a number of MiB of "
            f"at least 1 (default {DEFAULT_MAX_FILE_MIB})"
        )
    return Limit(mib, f"[tool.kiln] {MAX_FILE_SETTING} in {shlex.quote(str(pyproject))}")


def _read_helpers(root: Path, org: str, limit: Limit, kept: KeptRecords) -> tuple[Helper, ...]:
    refuse_link(root / "helpers")
    folders = sorted(p for p in (root / "helpers").glob("*") if p.is_dir())
    read = [_read_helper(p, org, limit, kept) for p in folders if not p.name.startswith((".", "_"))]
    kept.save()
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


def _read_image(
    path: Path, helper_names: set[str], platforms: tuple[str, ...], os: OsConfig
) -> Image:
    _check_folder(path, _IMAGE_FOLDER, "a registry repository (lowercase letters, digits, "
                  "and '-', '_' or '.' between them)")  # fmt: skip
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
    base = _registry_base(table, config, "image")
    os_packages = read_os_packages(table, config)
    if base is not None and os_packages:
        raise ConfigError(
            f"{config}: os-packages are layered on kiln's OS base, and this image names a "
            f"registry base ({base}); drop one of the two"
        )
    platform, platforms = image_platforms(
        table, config, "image", default=platforms, os=os, base=base
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
        platforms=platforms,
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


# The helpers' pyproject.toml documents, kept by their bytes by ``discover(keep=True)``
# (tomllib is the running Python's: another may read a file otherwise), as
# kiln._util.toml.parse_toml reads them.
TOML_KIND = f"kiln helper pyproject.toml 1; python {sys.version}; code {code_digest(toml.__file__)}"

PACKAGES_IMAGE = "packages"  # the name of packages mode's pseudo-image (and its lock)


def _packages_image(
    root: Path,
    kiln: dict[str, Any],
    pyproject: Path,
    components: Sequence[Component],
    helpers: Sequence[Helper],
    *,
    os: OsConfig,
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
    base = _registry_base(table, pyproject, section)
    default = _platforms(kiln, pyproject)
    platform, platforms = image_platforms(
        table, pyproject, section, default=default, os=os, base=base
    )
    return Image(
        name=PACKAGES_IMAGE,
        path=root / "pipelines",
        version="0",
        base=base,
        python=python,
        helpers=tuple(sorted(h.name for h in helpers)),
        requirements=(),
        platform=platform,
        platforms=platforms,
    )


def _platforms(kiln: dict[str, Any], pyproject: Path) -> tuple[str, ...]:
    return read_platforms(kiln, pyproject, "tool.kiln", DEFAULT_PLATFORMS)


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


def discover(root: Path, *, keep: bool = False) -> Workspace:
    """Read the monorepo at ``root``. ``keep``: keep what parsing each component module
    found (``ModuleFacts``) and each helper's pyproject.toml under the repository's
    state folder, by the file's bytes, and take them from there next time (a command's
    run: 500 TOML and 1004 Python parses at N=500); without it nothing is written."""
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
    state = root / STATE_DIR / "cache" / "discovery"
    helpers = _read_helpers(
        root,
        org,
        _limit(kiln, pyproject),
        KeptRecords(state / "helpers.json" if keep else None, TOML_KIND),
    )
    refuse_link(root / "images")
    image_dirs = sorted(p for p in (root / "images").glob("*") if p.is_dir())
    for folder in (*image_dirs, root / "pipelines"):
        check_read_tree(folder)
    os, platforms = read_os(kiln, pyproject), _platforms(kiln, pyproject)
    names = {h.name for h in helpers}
    images = tuple(_read_image(p, names, platforms, os) for p in image_dirs)
    if any(i.name == PACKAGES_IMAGE for i in images):
        raise ConfigError(
            f"{root / 'images' / PACKAGES_IMAGE}: the name {PACKAGES_IMAGE!r} is kiln's for "
            "packages mode's lock (pipelines/requirements.lock); rename the folder"
        )
    kept = KeptRecords(state / "modules.json" if keep else None, FACTS_KIND)
    components = read_components(root, images, helpers, kept)
    upstream = _upstream_index(kiln, pyproject)
    check_confusion(root, org, helpers, images, upstream)
    return Workspace(
        root=root,
        org=org,
        upstream_index=upstream,
        source=_source(kiln, pyproject),
        stack=stack,
        helpers=helpers,
        images=images,
        components=components,
        pipelines=read_pipelines(root),
        packages=_packages_image(root, kiln, pyproject, components, helpers, os=os),
        os=os,
    )
