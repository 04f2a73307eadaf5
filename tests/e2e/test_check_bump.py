"""Change a helper without bumping: `kiln check` names it and the command; `kiln bump`
cascades to exactly its dependants; the release publishes and rebuilds only those.
And a second clean clone releases nothing and fetches nothing from upstream."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import HELPERS, IMAGES, patch
from tests.e2e.tools import Repo

pytestmark = pytest.mark.e2e


def test_check_then_bump_then_release_moves_only_the_dependants(
    scratch: Repo, scratch_released: dict[str, Any]
) -> None:
    touched = [
        scratch.root / "helpers" / "dataquality" / "src" / "dataquality" / "_report.py",
        scratch.root / "helpers" / "dataquality" / "pyproject.toml",
        scratch.root / "helpers" / "viz" / "pyproject.toml",
        scratch.root / "images" / "analytics" / "image.toml",
    ]
    originals = {path: path.read_bytes() for path in touched}
    try:
        touched[0].write_text(touched[0].read_text() + "\n# a change nobody bumped\n")
        checked = scratch.kiln("check", "--local")
        assert checked.returncode == 4, checked.stdout + checked.stderr
        quality = HELPERS["dataquality"]
        assert f"helpers/dataquality changed since acme-dataquality {quality} was published" in (
            checked.stdout
        )
        assert "    fix: kiln bump dataquality patch" in checked.stdout
        assert "kiln bump analytics" not in checked.stdout  # the helper's bump cascades to it

        bumped = scratch.kiln("bump", "dataquality", "patch", "--json")
        assert bumped.returncode == 0, bumped.stderr
        plan = json.loads(bumped.stdout)["changes"]
        changes = {c["path"]: (c["old_version"], c["new_version"]) for c in plan}
        viz, analytics = HELPERS["viz"], IMAGES["analytics"]
        assert changes == {
            "helpers/dataquality/pyproject.toml": (quality, patch(quality)),
            "helpers/viz/pyproject.toml": (viz, patch(viz)),
            "images/analytics/image.toml": (analytics, patch(analytics)),
        }

        result = scratch.kiln_json("release", "--local")
        assert sorted(result["uploaded"]) == [
            f"acme_dataquality-{patch(quality)}-py3-none-any.whl",
            f"acme_viz-{patch(viz)}-py3-none-any.whl",
        ]
        assert [ref.split("@")[0] for ref in result["pushed"]] == [
            f"{scratch.registry}/acme/analytics:{patch(analytics)}"
        ]
        again = scratch.kiln("check", "--local")
        assert again.returncode == 0, again.stdout
    finally:
        for path, data in originals.items():
            path.write_bytes(data)
        assert scratch.kiln("release", "--local").returncode == 0  # dist/ as the others expect


def test_a_second_clean_clone_releases_and_fetches_nothing(
    repo: Repo, released: dict[str, Any], tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    for name in ("helpers", "images", "pipelines", "pyproject.toml"):
        source = repo.root / name
        if source.is_dir():
            shutil.copytree(source, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, clone / name)
    other = Repo(clone, repo.index_url, repo.registry)
    # The stack belongs to the first checkout: the clone names the servers instead.
    result = other.kiln_json("release", "--index", repo.index_url, "--registry", repo.registry)
    assert (result["uploaded"], result["pushed"]) == ([], [])
    log = (clone / ".kiln" / "logs" / "release.log").read_text()
    # It fetched the locked wheels (its cache was empty)... from the private index only.
    assert "pip download --isolated" in log
    assert f"--index-url {repo.index_url}/simple/" in log
    assert "pypi.org" not in log
    # Nor from Debian: the OS layer came from the registry, checked against the lock.
    assert "OS layer sha256:" in log
    assert ": taken from the registry" in log
    assert "fetched " not in log  # no .deb
