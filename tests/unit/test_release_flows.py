"""The release flows as functions over fake servers (``Context.services``): no command
line, no stack; each returns a typed result. Their dry runs publish nothing, write nothing
in dist/, and plan what the release then does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiln._context import LOCAL, Context
from kiln._errors import PublishedConflict
from kiln._options import Options
from kiln._release.components import components
from kiln._release.dev_release import plan_dev, release_dev
from kiln._release.flows import release
from kiln._release.plan import Action, ReleasePlan
from kiln._release.tag import plan_tag, release_tag
from kiln._report import Reporter
from kiln._workspace.discovery import discover
from tests.unit.cli import release_commands_over, run
from tests.unit.fakes import Setup, git, release_setup


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


def committed(setup: Setup, ctx: Context) -> Path:
    """The sample repo with its component YAMLs, committed (kiln's folders ignored)."""
    root = setup.ws.root
    components(setup.ws, ctx, LOCAL)
    (root / ".gitignore").write_text(".kiln/\ndist/\n")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "sample")
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def to_publish(plan: ReleasePlan) -> list[str]:
    return [s.filename for s in plan.files if s.action is Action.PUBLISH]


def test_a_tag_dry_run_checks_plans_and_publishes_nothing(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    root = committed(setup, ctx)
    git(root, "tag", "v0.1.0")
    dist = tree(root / "dist")  # the pipelines `kiln components` compiled

    planned = plan_tag(discover(root), ctx, LOCAL, "v0.1.0")

    assert (setup.index.uploads, setup.oci.pushes, setup.registry.tags) == ([], [], {})
    assert tree(root / "dist") == dist
    bundle = "acme_components-0.1.0-py3-none-any.whl"
    files = ["acme_imgproc-0.1.0-py3-none-any.whl", "kfp-2.17.3-py3-none-any.whl"]
    assert to_publish(planned.plan) == [*files, "numpy-1.0-py3-none-any.whl"]
    (image,) = planned.plan.images
    assert (image.name, image.action) == ("base", Action.BUILD)
    assert planned.to_json()["bundle"] == {
        "filename": bundle,
        "sha256": planned.bundle.sha256,
        "action": "publish",
    }
    assert f"  publish  bundle {bundle}: not on the index yet" in planned.text
    assert planned.text.startswith("release 0.1.0 (v0.1.0 at ")

    # The release then does what its dry run planned, byte for byte.
    result = release_tag(discover(root), ctx, LOCAL, "v0.1.0")
    assert result.uploaded == (*to_publish(planned.plan), bundle)
    assert result.bundle.sha256 == planned.bundle.sha256
    assert result.pushed == (f"{setup.registry.host}/acme/base:0.1.0@{image.digest}",)

    again = plan_tag(discover(root), ctx, LOCAL, "v0.1.0")
    assert again.plan.up_to_date
    assert again.bundle_there
    assert f"  skip     bundle {bundle}: on the index with identical bytes" in again.text


def test_a_tag_dry_run_refuses_what_the_release_refuses(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    root = committed(setup, ctx)
    git(root, "tag", "v0.1.0")
    release_tag(discover(root), ctx, LOCAL, "v0.1.0")
    source = root / "helpers" / "imgproc" / "src" / "imgproc" / "__init__.py"
    source.write_text(source.read_text() + "\nCHANGED = True\n")  # not bumped
    components(discover(root), ctx, LOCAL)
    git(root, "commit", "-qam", "change imgproc")
    git(root, "tag", "v0.2.0")
    uploads, record = list(setup.index.uploads), tree(root / "dist")

    with pytest.raises(PublishedConflict, match=r"acme-imgproc 0\.1\.0 is already published"):
        plan_tag(discover(root), ctx, LOCAL, "v0.2.0")

    assert setup.index.uploads == uploads
    assert tree(root / "dist") == record


def test_a_dev_dry_run_plans_the_dev_versions_and_publishes_nothing(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    root = committed(setup, ctx)
    release(discover(root), ctx, LOCAL, version="0.1.0")
    source = root / "helpers" / "imgproc" / "src" / "imgproc" / "__init__.py"
    source.write_text(source.read_text() + "\nCHANGED = True\n")
    git(root, "commit", "-qam", "change imgproc")
    uploads, pushes, dist = list(setup.index.uploads), list(setup.oci.pushes), tree(root / "dist")

    planned = plan_dev(discover(root), ctx, LOCAL)

    assert (setup.index.uploads, setup.oci.pushes) == (uploads, pushes)
    assert tree(root / "dist") == dist  # no dist/dev/
    n = planned.number
    assert dict(planned.moved) == {"imgproc": f"0.1.1.dev{n}", "base": f"0.1.0.dev{n}"}
    assert to_publish(planned.plan) == [f"acme_imgproc-0.1.1.dev{n}-py3-none-any.whl"]
    (image,) = planned.plan.images
    assert (image.version, image.action) == (planned.image_tag, Action.BUILD)
    # no bundle is released yet (a plain release publishes none): the dev one leads to 0.1.0
    assert planned.bundle == f"acme_components-0.1.0.dev{n}-py3-none-any.whl"
    assert planned.to_json()["bundle"]["action"] == "publish"
    assert f"imgproc 0.1.1.dev{n}" in planned.text.splitlines()[0]

    # The dev release of the same commit then does what its dry run planned.
    result = release_dev(discover(root), ctx, LOCAL)
    assert (result.number, dict(result.moved)) == (n, dict(planned.moved))
    assert result.uploaded == (*to_publish(planned.plan), planned.bundle)
    assert result.pushed == (f"{setup.registry.host}/acme/base:{planned.image_tag}@{image.digest}",)
    assert setup.index.files("acme-components")[planned.bundle] == planned.bundle_sha256


def test_the_cli_dry_runs_of_the_tag_and_dev_releases_publish_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = release_setup(tmp_path)
    root = committed(setup, Context(Options(), Reporter.null(), services=setup.services))
    git(root, "tag", "v0.1.0")
    dist = tree(root / "dist")

    release_commands_over(monkeypatch, lambda: setup.services)
    repo = ("--repo", str(root))

    code, out, err = run(capsys, "release", "--tag", "v0.1.0", "--dry-run", "--json", *repo)
    assert code == 0, err
    assert (setup.index.uploads, setup.oci.pushes) == ([], [])
    planned = json.loads(out)
    assert planned["bundle"]["action"] == "publish"
    assert [f["action"] for f in planned["plan"]["files"]] == ["publish"] * 3
    code, out, err = run(capsys, "release", "--tag", "v0.1.0", "--dry-run", *repo)
    assert code == 0, err
    assert "dry run: nothing published, nothing written in dist/" in out.splitlines()[0]
    assert "  publish  bundle acme_components-0.1.0-py3-none-any.whl" in out

    code, out, err = run(capsys, "release", "--dev", "--dry-run", "--json", *repo)
    assert code == 0, err
    planned = json.loads(out)
    n = planned["dev"]  # nothing is published yet: 0.1.0 comes, so its dev versions lead to it
    assert planned["helpers"] == {"imgproc": f"0.1.0.dev{n}", "base": f"0.1.0.dev{n}"}
    assert planned["bundle"]["action"] == "publish"
    code, out, err = run(capsys, "release", "--dev", "--dry-run", *repo)
    assert code == 0, err
    assert "dev versions: base 0.1.0.dev" in out.splitlines()[0]

    assert (setup.index.uploads, setup.oci.pushes, setup.registry.tags) == ([], [], {})
    assert tree(root / "dist") == dist
