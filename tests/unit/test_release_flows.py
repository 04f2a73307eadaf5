"""The release flows as functions over fake servers (``Context.services``): no command
line, no stack; each returns a typed result."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kiln._context import LOCAL, Context
from kiln._errors import PublishedConflict
from kiln._options import Options
from kiln._release.components import components
from kiln._release.flows import release
from kiln._release.tag import release_tag
from kiln._report import Reporter
from kiln._workspace.discovery import discover
from tests.unit.fakes import release_setup

GIT = ["git", "-c", "user.name=k", "-c", "user.email=k@example.invalid"]


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        [*GIT, "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_tag_release_over_fake_servers(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    root = setup.ws.root
    written = components(setup.ws, ctx, LOCAL)
    assert [c.name for c in written.components] == ["double"]
    (root / ".gitignore").write_text(".kiln/\ndist/\n")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "sample")
    git(root, "tag", "v0.1.0")

    result = release_tag(discover(root), ctx, LOCAL, "v0.1.0")

    bundle = "acme_components-0.1.0-py3-none-any.whl"
    assert (result.release, result.tag, result.previous) == ("0.1.0", "v0.1.0", None)
    assert result.revision == git(root, "rev-parse", "HEAD")
    wheels = ("acme_imgproc-0.1.0-py3-none-any.whl", "kfp-2.17.3-py3-none-any.whl")
    assert result.uploaded == (*wheels, "numpy-1.0-py3-none-any.whl", bundle)
    assert tuple(setup.index.uploads) == result.uploaded
    # The image pushed is the one the committed YAML pins, by digest.
    repository, digest = written.images["base"].split("@")
    assert result.pushed == (f"{repository}:0.1.0@{digest}",)
    assert result.bundle.filename == bundle
    assert setup.index.files("acme-components") == {bundle: result.bundle.sha256}
    assert (result.record / bundle).is_file()
    assert result.to_json()["bundle"] == {"filename": bundle, "sha256": result.bundle.sha256}

    again = release_tag(discover(root), ctx, LOCAL, "v0.1.0")
    assert (again.uploaded, again.pushed) == ((), ())
    assert again.summary == "release 0.1.0 is already published: nothing uploaded, nothing pushed"

    planned = release(discover(root), ctx, LOCAL, dry_run=True)
    assert planned.outcome is None
    assert planned.plan.up_to_date
    assert planned.exit_code == 0


def test_a_dry_run_names_the_exit_code_of_what_its_plan_refuses(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    first = release(setup.ws, ctx, LOCAL, version="0.1.0")
    assert first.outcome is not None
    assert first.outcome.manifest.release == "0.1.0"
    assert first.exit_code == 0
    source = setup.ws.root / "helpers" / "imgproc" / "src" / "imgproc" / "__init__.py"
    source.write_text(source.read_text() + "\nCHANGED = True\n")
    uploads = list(setup.index.uploads)
    planned = release(discover(setup.ws.root), ctx, LOCAL, dry_run=True)
    assert planned.outcome is None
    assert planned.plan.refusals
    assert planned.exit_code == PublishedConflict.exit_code
    assert setup.index.uploads == uploads  # a dry run publishes nothing
