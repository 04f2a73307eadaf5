"""What a helper's pyproject.toml tells hatchling: its backend, pinned, and the files
its wheel ships."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from kiln._errors import ConfigError

# Options of hatchling's wheel target that choose the files to ship.
_FILE_SELECTION = ("packages", "only-include", "include", "sources", "force-include")


def check_wheel_files(doc: dict[str, Any], path: Path, distribution: str) -> None:
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


def check_build_system(table: Any, pyproject: Path) -> None:
    """Hatchling builds the wheel, and everything the build installs is pinned exactly:
    an unpinned backend or plugin breaks byte-reproducible wheels."""
    backend = table.get("build-backend") if isinstance(table, dict) else None
    if backend != "hatchling.build":
        raise ConfigError(
            f"{pyproject}: [build-system] build-backend is {backend!r}; kiln builds helpers "
            'with hatchling: set build-backend = "hatchling.build"'
        )
    requires = table.get("requires", [])
    if not any(re.fullmatch(r"hatchling==[\w.]+", str(r).replace(" ", "")) for r in requires):
        raise ConfigError(
            f"{pyproject}: [build-system] requires {requires!r} must pin hatchling exactly "
            '(e.g. "hatchling==1.33.0"): an unpinned backend breaks byte-reproducible wheels'
        )
    loose = [r for r in requires if not re.fullmatch(r"[\w.-]+==[\w.]+", str(r).replace(" ", ""))]
    if loose:
        raise ConfigError(
            f"{pyproject}: [build-system] requires {', '.join(map(repr, loose))} without an "
            'exact version: pin each with == (e.g. "hatch-vcs==0.4.0"), so every build of '
            "the wheel uses the same code"
        )


def build_requires(doc: dict[str, Any]) -> tuple[str, ...]:
    """``[build-system] requires`` of a helper's parsed pyproject.toml, sorted: part of its
    wheel cache key (``kiln._wheels.build.cache_key``), read here with the rest of the file
    so the cache does not parse it a second time."""
    return tuple(sorted(str(r) for r in doc.get("build-system", {}).get("requires", [])))


def import_packages(doc: dict[str, Any], path: Path, distribution: str) -> tuple[str, ...]:
    """The top-level import names a helper's wheel ships: its hatch ``packages`` (their
    last path part), else the package named like the distribution."""
    wheel = doc.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel")
    listed = wheel.get("packages") if isinstance(wheel, dict) else None
    if isinstance(listed, list) and all(isinstance(p, str) for p in listed):
        return tuple(sorted({Path(p).name for p in listed}))
    return (canonicalize_name(distribution).replace("-", "_"),)


# Settings naming files hatchling reads into the wheel: the readme and license files go
# into its METADATA, the rest are copied in. Keys of a mapping are the source paths.
_PROJECT_FILES = ("readme", "license", "license-files")
_HATCH_FILES = (
    "packages", "only-include", "include", "sources", "force-include", "shared-data",
    "extra-metadata", "artifacts",
)  # fmt: skip


def _paths(value: Any) -> list[str]:
    """The file paths (or globs) a setting's value names."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, dict):
        if "file" in value:  # readme = {file = ...}, license = {file = ...}
            return _paths(value["file"])
        if "text" in value or "content-type" in value:
            return []
        return [k for k in value if isinstance(k, str)]  # force-include and the like
    return []


# Gitignore-style patterns, where a leading "/" anchors at the project's root.
_PATTERNS = frozenset({"include", "only-include", "artifacts", "license-files"})


def _leaves(rel: str, *, pattern: bool) -> bool:
    """Whether ``rel``, a path (or with ``pattern``, a gitignore-style pattern) in a
    helper's pyproject.toml, names a file outside the helper's folder."""
    absolute = rel.startswith(("~", "\\")) or re.match(r"[A-Za-z]:", rel) is not None
    if absolute or (rel.startswith("/") and not pattern):
        return True
    return ".." in re.split(r"[/\\]", rel)


def check_file_paths(doc: dict[str, Any], path: Path) -> None:
    """Every file a helper's pyproject.toml tells hatchling to read lies in the helper's
    folder, and no hook runs code of the helper's own at build time: hatchling 1.33
    puts ``license = {file = "/etc/passwd"}`` into the wheel's METADATA and copies a
    force-include of any file of the machine into it (it refuses only a readme outside
    the project, and only when it builds), and a custom hook (hatch_build.py) can read
    anything."""
    pyproject = path / "pyproject.toml"
    project = doc.get("project", {})
    hatch = doc.get("tool", {}).get("hatch", {})
    build = hatch.get("build", {}) if isinstance(hatch, dict) else {}
    targets = build.get("targets", {}) if isinstance(build, dict) else {}
    wheel = targets.get("wheel", {}) if isinstance(targets, dict) else {}
    settings = [(f"[project] {k}", k, project.get(k)) for k in _PROJECT_FILES]
    for table, name in ((build, "tool.hatch.build"), (wheel, "tool.hatch.build.targets.wheel")):
        if isinstance(table, dict):
            settings += [(f"[{name}] {k}", k, table.get(k)) for k in _HATCH_FILES]
    for setting, key, value in settings:
        for rel in _paths(value):
            if _leaves(rel, pattern=key in _PATTERNS):
                raise ConfigError(
                    f"{pyproject}: {setting} names {rel!r}, outside the helper's folder "
                    f"{path}: hatchling would read it into the wheel published on the "
                    "index; name files inside the helper (copy the file in and commit it)"
                )
    hooks = [
        (f"[{name}.hooks.custom]", table.get("hooks", {}))
        for table, name in (
            (build, "tool.hatch.build"),
            (wheel, "tool.hatch.build.targets.wheel"),
            (hatch.get("metadata", {}) if isinstance(hatch, dict) else {}, "tool.hatch.metadata"),
        )
        if isinstance(table, dict)
    ]
    for table, value in hooks:
        if isinstance(value, dict) and "custom" in value:
            raise ConfigError(
                f"{pyproject}: {table} runs the helper's own code (hatch_build.py) while kiln "
                "builds its wheel, on the release machine with its credentials; kiln builds "
                "helpers from their files alone: delete the table and commit what the hook "
                "would generate"
            )
