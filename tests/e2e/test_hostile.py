"""A few of the hostile-repo corpus (tests/unit/test_hostile_corpus.py) against a real
index and registry: `kiln release --local` on ``scratch`` refuses them (exit 3) before
anything is published: the index's and the registry's listings, dist/manifest.json and
the committed component YAMLs are exactly what they were. And a file above the size
limit is reported by a dry run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.tools import Repo

pytestmark = pytest.mark.e2e

PKG = Path("helpers/imgproc/src/imgproc")


def published(repo: Repo) -> dict[str, Any]:
    """What the index and the registry hold: every file of every project, every tag of
    every repository."""
    index = requests.get(f"{repo.index_url}/simple/", timeout=10)
    index.raise_for_status()
    projects = sorted(
        line.split('">')[1].split("<")[0] for line in index.text.splitlines() if "href" in line
    )
    files = {p: requests.get(f"{repo.index_url}/simple/{p}/", timeout=10).text for p in projects}
    base = f"http://{repo.registry}/v2"
    catalog = requests.get(f"{base}/_catalog", timeout=10).json()["repositories"]
    tags = {r: requests.get(f"{base}/{r}/tags/list", timeout=10).json() for r in catalog}
    return {"index": files, "registry": tags}


@contextlib.contextmanager
def restored(root: Path) -> Iterator[None]:
    """Put every file of the workspace back as it was (and remove what was added)."""
    names = ("helpers", "images", "pipelines")
    before = {
        p: p.read_bytes()
        for name in names
        for p in (root / name).rglob("*")
        if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts
    }
    before[root / "pyproject.toml"] = (root / "pyproject.toml").read_bytes()
    try:
        yield
    finally:
        for name in names:
            for p in sorted((root / name).rglob("*"), reverse=True):
                if (p.is_symlink() or not p.is_dir()) and p not in before:
                    p.unlink()
        for p, data in before.items():
            p.write_bytes(data)


def _bump_then_link(repo: Repo) -> None:
    # The reproduction: a bumped helper (so there is something to publish) with a
    # link to a host file.
    assert repo.kiln("bump", "imgproc", "patch").returncode == 0
    (repo.root / PKG / "leak.txt").symlink_to("/etc/passwd")


def _component(source: str) -> Callable[[Repo], None]:
    def mutate(repo: Repo) -> None:
        (repo.root / "pipelines/components/zz.py").write_text(source, encoding="utf-8")

    return mutate


def _requirement(name: str) -> Callable[[Repo], None]:
    def mutate(repo: Repo) -> None:
        toml = repo.root / "images/base/image.toml"
        toml.write_text(toml.read_text().replace("requirements = []", f'requirements = ["{name}"]'))

    return mutate


CASES: dict[str, tuple[Callable[[Repo], None], str]] = {
    "link-to-etc-passwd-in-a-bumped-helper": (
        _bump_then_link,
        f"{PKG}/leak.txt is a symbolic link to '/etc/passwd'",
    ),
    "300-character-function-name": (
        _component(f'IMAGE = "base"\n\n\ndef {"f" * 300}(x: int) -> int:\n    return x\n'),
        "cannot be compiled: KFP names its pipeline",
    ),
    "raw-esc-in-a-docstring": (
        _component(
            'IMAGE = "base"\n\n\ndef shout(x: int) -> int:\n    """\x1b[2J"""\n    return x\n'
        ),
        "the docstring of shout '\\x1b[2J' holds '\\x1b'",
    ),
    "image-requirement-nobody-publishes-in-the-org-namespace": (
        _requirement("acme-evil"),
        "dependency confusion",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_change_is_refused_before_anything_is_published(
    scratch: Repo, scratch_released: dict[str, Any], case: str
) -> None:
    mutate, phrase = CASES[case]
    root = scratch.root
    before = published(scratch)
    manifest = (root / "dist" / "manifest.json").read_bytes()
    generated = root / "pipelines/components/generated"
    yamls = {p.name: p.read_bytes() for p in generated.iterdir()}
    with restored(root):
        mutate(scratch)
        result = scratch.kiln("release", "--local")
        assert result.returncode == 3, result.stdout + result.stderr
        assert phrase in result.stderr
        assert "Traceback" not in result.stderr
        assert published(scratch) == before
        assert (root / "dist" / "manifest.json").read_bytes() == manifest
        assert {p.name: p.read_bytes() for p in generated.iterdir()} == yamls


def test_a_big_file_in_a_helper_is_reported_by_a_dry_run(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    with restored(scratch.root):
        big = scratch.root / PKG / "model.bin"
        with big.open("wb") as fh:
            fh.truncate(200 * 1024 * 1024)  # sparse
        before = published(scratch)
        result = scratch.kiln("release", "--local", "--dry-run")
        # Reported, not refused: the dry run goes on to say the helper changed unbumped.
        assert result.returncode == 4, result.stdout + result.stderr
        assert published(scratch) == before
        assert (
            f"warning: {big} is 200.0 MiB, over the 10 MiB limit for a helper's file"
            in result.stderr
        )
        assert "raise [tool.kiln] max-file-size-mib in" in result.stderr
