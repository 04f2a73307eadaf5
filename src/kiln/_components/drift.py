"""Drift: the committed component YAMLs against what kiln generates now.

Generation is deterministic (same inputs, same bytes), so any difference means
the committed tree is stale: a source, a helper, a lock or an image changed and
`kiln components --local` was not run (or a YAML was edited by hand).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kiln._util.files import text_of


@dataclass(frozen=True)
class Drift:
    name: str  # the YAML's file name
    state: str  # "changed", "missing" (not committed) or "extra" (its component is gone)
    diff: str  # unified diff, committed -> generated ("" when missing or extra)
    note: str = ""  # what kiln can tell of the difference (a platform's image pinned)

    @property
    def meaning(self) -> str:
        said = {
            "changed": "differs from what kiln generates now",
            "missing": "is not committed",
            "extra": "is committed, but its component no longer exists",
        }[self.state]
        return f"{said}: it {self.note}" if self.note else said


# What kiln writes into the committed folder: one YAML per component and the catalog.
CATALOG = ("README.md", "catalog.html")


def _generated(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name: p for p in folder.iterdir() if p.suffix == ".yaml" or p.name in CATALOG}


def _one_platform(text: str, platforms: Mapping[str, tuple[str, str]]) -> str:
    """What ``text`` pins when it is one platform's image of an index (``platforms``: each
    such image's digest -> its platform and its index's digest), else ""."""
    for digest, (platform, index) in sorted(platforms.items()):
        if f"@{digest}" in text:
            return (
                f"pins the {platform} image {digest}, not the index {index} (every node "
                f"would run the {platform} image)"
            )
    return ""


def compare(
    committed: Path,
    generated: Path,
    *,
    label: str,
    platforms: Mapping[str, tuple[str, str]] | None = None,
) -> list[Drift]:
    """Each YAML (or catalog file) that differs between the ``committed`` folder and the
    ``generated`` one; ``label`` is the committed folder as the diff names it (repo-relative).
    ``platforms``: each platform's image digest -> (platform, its index's digest), so a
    YAML pinning one platform's image of an index says so."""
    old = _generated(committed)
    new = _generated(generated)
    found = []
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            found.append(Drift(name, "missing", ""))
        elif name not in new:
            found.append(Drift(name, "extra", ""))
        else:
            held, made = old[name].read_bytes(), new[name].read_bytes()
            if held == made:  # most of them: not decoded, split nor diffed
                continue
            text = text_of(held)  # a CRLF checkout holds the same YAML
            before = text.splitlines(keepends=True)
            after = text_of(made).splitlines(keepends=True)
            if before != after:
                diff = difflib.unified_diff(
                    before, after, f"{label}/{name} (committed)", f"{label}/{name} (generated)"
                )
                note = _one_platform(text, platforms or {})
                found.append(Drift(name, "changed", "".join(diff), note))
    return found


def describe(drifts: list[Drift], *, label: str) -> str:
    """The drifts for a person: one line each, then the diffs."""
    lines = [f"  {label}/{d.name} {d.meaning}" for d in drifts]
    diffs = [d.diff for d in drifts if d.diff]
    return "\n".join(lines) + ("\n" + "".join(diffs) if diffs else "")
