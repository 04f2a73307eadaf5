"""What a new helper's import package may be called: never a name the repo already needs.

A helper named like a module the images or kiln import would shadow it (or be
shadowed by it) once both are installed; ``kiln new`` refuses such a name.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from kiln._util.toml import load_toml
from kiln._workspace.model import Helper, Workspace


def helper_packages(helper: Helper) -> tuple[str, ...]:
    """The import packages a helper's wheel ships (``[tool.hatch...] packages``)."""
    doc = load_toml(helper.path / "pyproject.toml", what="helper")
    wheel = doc.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {})
    packages = wheel.get("wheel", {}).get("packages", [])
    names = tuple(Path(p).name for p in packages if isinstance(p, str))
    return names or (helper.name.replace("-", "_"),)


def requirement_names(raw: Iterable[object], *, skip_extras: bool = False) -> set[str]:
    names: set[str] = set()
    for item in raw:
        if not isinstance(item, str):
            continue
        try:
            req = Requirement(item)
        except InvalidRequirement:
            continue
        if skip_extras and req.marker is not None and "extra" in str(req.marker):
            continue
        names.add(canonicalize_name(req.name))
    return names


def third_party(ws: Workspace) -> set[str]:
    """Distributions the repo already uses: helpers', images', kiln's, kfp and theirs."""
    doc = load_toml(ws.root / "pyproject.toml", what="kiln workspace")
    project = doc.get("project", {})
    raw: list[object] = [d for h in ws.helpers for d in h.dependencies]
    raw += [r for i in ws.images for r in i.requirements]
    raw += project.get("dependencies", [])
    for extra in project.get("optional-dependencies", {}).values():
        raw += extra
    todo = requirement_names(raw) | {"kfp"}  # kfp is baked into every image
    todo -= {canonicalize_name(h.distribution) for h in ws.helpers}
    seen: set[str] = set()
    while todo:  # and what they pull in, as far as this environment knows
        name = todo.pop()
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo |= requirement_names(requires, skip_extras=True) - seen
    return seen


def shadowing(ws: Workspace, package: str) -> Iterator[str]:
    """Why ``package`` would shadow a module the repo needs (nothing if it would not)."""
    if package.startswith("kfp"):
        yield (
            "kfp's own packages (kfp, kfp_pipeline_spec, kfp_server_api) live under that "
            "prefix, and KFP skips installing kfp when a package it installs starts with 'kfp'"
        )
    for helper in ws.helpers:
        if package in helper_packages(helper):
            yield f"helpers/{helper.name} already ships the package {package!r}"
    if package in sys.stdlib_module_names:
        yield "it is a module of Python's standard library"
    if package in {"kiln", "tests"}:
        yield "kiln's own code and tests import it under that name"
    used = third_party(ws)
    if canonicalize_name(package) in used:
        yield f"the repo already depends on the third-party distribution {package!r}"
    owners = metadata.packages_distributions().get(package, [])
    clash = sorted(d for d in owners if canonicalize_name(d) in used)
    if clash:
        yield f"the third-party distribution {clash[0]!r}, which the repo uses, installs it"
