"""Drift: the committed component YAMLs against what kiln generates now.

Generation is deterministic (same inputs, same bytes), so any difference means
the committed tree is stale: a source, a helper, a lock or an image changed and
`kiln components --local` was not run (or a YAML was edited by hand).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Drift:
    name: str  # the YAML's file name
    state: str  # "changed", "missing" (not committed) or "extra" (its component is gone)
    diff: str  # unified diff, committed -> generated ("" when missing or extra)

    @property
    def meaning(self) -> str:
        return {
            "changed": "differs from what kiln generates now",
            "missing": "is not committed",
            "extra": "is committed, but its component no longer exists",
        }[self.state]


# What kiln writes into the committed folder: one YAML per component and the catalog.
CATALOG = ("README.md", "catalog.html")


def _generated(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name: p for p in folder.iterdir() if p.suffix == ".yaml" or p.name in CATALOG}


def compare(committed: Path, generated: Path, *, label: str) -> list[Drift]:
    """Each YAML (or catalog file) that differs between the ``committed`` folder and the
    ``generated`` one; ``label`` is the committed folder as the diff names it (repo-relative)."""
    old = _generated(committed)
    new = _generated(generated)
    found = []
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            found.append(Drift(name, "missing", ""))
        elif name not in new:
            found.append(Drift(name, "extra", ""))
        else:
            before = old[name].read_text(encoding="utf-8").splitlines(keepends=True)
            after = new[name].read_text(encoding="utf-8").splitlines(keepends=True)
            if before != after:
                diff = difflib.unified_diff(
                    before, after, f"{label}/{name} (committed)", f"{label}/{name} (generated)"
                )
                found.append(Drift(name, "changed", "".join(diff)))
    return found


def describe(drifts: list[Drift], *, label: str) -> str:
    """The drifts for a person: one line each, then the diffs."""
    lines = [f"  {label}/{d.name} {d.meaning}" for d in drifts]
    diffs = [d.diff for d in drifts if d.diff]
    return "\n".join(lines) + ("\n" + "".join(diffs) if diffs else "")
