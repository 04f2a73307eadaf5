"""The docs say what the repo holds: pinned versions and links that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kiln._release.stages import kfp_version
from kiln._wheels.lock import check_fresh, read_lock
from kiln._workspace.discovery import discover

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_helper_and_kfp_pins_in_docs_are_the_repos(doc: Path) -> None:
    ws = discover(ROOT)
    versions = {h.distribution: h.version for h in ws.helpers}
    kfp = re.search(r'"kfp==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert kfp is not None
    text = doc.read_text()
    for name, version in re.findall(rf"\b({ws.org}-[a-z0-9-]+)==([0-9][\w.]*)", text):
        if name in versions:  # examples of helpers that do not exist are free
            assert version == versions[name], f"{doc.name}: {name}=={version}"
    for version in re.findall(r"\bkfp==([0-9][\w.]*)", text):
        assert version == kfp.group(1), f"{doc.name}: kfp=={version}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_in_docs_exist(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_this_repos_committed_locks_are_fresh() -> None:
    # What `kiln lock --check` says in CI: a helper or image.toml change without a relock
    # would make the next release refuse.
    ws = discover(ROOT)
    for image in ws.images:
        check_fresh(read_lock(image), ws, image, kfp_version())
