"""The docs say what the repo holds: pinned versions and links that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kiln._debian.lock import read_os_lock
from kiln._lock.format import read_lock
from kiln._lock.inputs import check_fresh
from kiln._locking.debian import check_os_fresh
from kiln._release.prepare import kfp_version
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


def test_this_repos_os_lock_is_fresh() -> None:
    ws = discover(ROOT)
    check_os_fresh(read_os_lock(ROOT), ws)


def _quick_start() -> list[str]:
    """The commands of the README's quick start block (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [line.split("#", 1)[0].strip() for b in blocks for line in b.splitlines() if line]


def test_the_quick_start_is_two_commands_and_ci_runs_the_test_one() -> None:
    assert _quick_start() == ["./noxw -s demo", "./noxw -s lint tests"]
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci[-1] == "./noxw -s lint tests"  # exactly the README's test command, last
    assert "KILN_BASE_IMAGE" not in (ROOT / ".ci" / "run").read_text()
    assert (ROOT / "noxw").stat().st_mode & 0o111  # executable, as committed
