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


def import_packages(doc: dict[str, Any], path: Path, distribution: str) -> tuple[str, ...]:
    """The top-level import names a helper's wheel ships: its hatch ``packages`` (their
    last path part), else the package named like the distribution."""
    wheel = doc.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel")
    listed = wheel.get("packages") if isinstance(wheel, dict) else None
    if isinstance(listed, list) and all(isinstance(p, str) for p in listed):
        return tuple(sorted({Path(p).name for p in listed}))
    return (canonicalize_name(distribution).replace("-", "_"),)
