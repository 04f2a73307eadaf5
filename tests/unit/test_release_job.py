"""`kiln release --job J --plan FILE`: a job publishes its share of the plan and nothing
else, checked against the plan first; over fake servers, and on the command line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kiln._context import LOCAL, Context
from kiln._errors import ConfigError, PlanMismatch
from kiln._options import Options
from kiln._release.components import components
from kiln._release.job import release_job
from kiln._release.matrix import MatrixPlan, plan_jobs
from kiln._release.prepare import staging_dir
from kiln._report import Reporter
from kiln._workspace.discovery import discover
from tests import factory
from tests.unit.cli import release_commands_over, run
from tests.unit.fakes import (
    PagesAtOnce,
    git,
    release_setup,
    tagged_release_setup,
    write_fake_lock,
)
from tests.unit.test_packages_mode import LIGHT


def write_plan(tmp_path: Path, planned: MatrixPlan) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(planned.to_json(), indent=2))
    return path


def test_each_job_publishes_its_share_and_together_what_one_release_does(
    tmp_path: Path,
) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=2))
    image = json.loads(plan.read_text())["jobs"][0]["images"][0]
    setup.oci.builds.clear()  # the plan's

    empty = release_job(setup.ws, ctx, LOCAL, plan=plan, job=1)
    assert (empty.uploaded, empty.pushed, empty.checked) == ((), (), ())
    assert (setup.index.uploads, setup.oci.pushes, setup.oci.builds) == ([], [], [])
    share = release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)

    wheels = (
        "acme_imgproc-0.1.0-py3-none-any.whl",
        "kfp-2.17.3-py3-none-any.whl",
        "numpy-1.0-py3-none-any.whl",
    )
    assert share.uploaded == wheels
    assert setup.oci.builds == [f"{image['repository']}:0.1.0"]  # its one image, once
    assert share.pushed == (f"{image['repository']}:0.1.0@{image['digest']}",)
    assert setup.registry.digest("acme/base", "0.1.0") == image["digest"]
    assert list(setup.registry.tags) == [("acme/base", "0.1.0")]
    assert not (setup.ws.root / "dist").exists()  # no manifest: the finalize step's
    # A one-machine release of the same commit finds it all published, at those digests.
    after = setup.release()
    assert (after.uploaded, after.pushed) == ([], [])
    assert after.manifest.images[0].digest == image["digest"]
    again = release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)  # a re-run: nothing twice
    assert (again.uploaded, again.pushed) == ((), ())
    assert again.checked == share.pushed
    assert sorted(setup.index.uploads) == sorted(wheels)


def test_a_job_whose_build_differs_from_the_plan_is_refused_with_nothing_published(
    tmp_path: Path,
) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=1))
    data = json.loads(plan.read_text())
    built = data["jobs"][0]["images"][0]["digest"]
    data["jobs"][0]["images"][0]["digest"] = "sha256:" + "0" * 64
    plan.write_text(json.dumps(data))

    with pytest.raises(PlanMismatch) as refused:
        release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)

    assert refused.value.exit_code == 11
    message = str(refused.value)
    assert "does not match its plan, so nothing of it was published" in message
    assert f"acme/base:0.1.0: built as {built}, the plan says sha256:{'0' * 64}" in message
    assert (setup.index.uploads, setup.oci.pushes, setup.registry.tags) == ([], [], {})


def test_a_job_whose_wheel_differs_from_the_plan_is_refused(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=1))
    source = setup.ws.root / "helpers" / "imgproc" / "src" / "imgproc" / "__init__.py"
    source.write_text(source.read_text() + "\nCHANGED = True\n")
    with pytest.raises(PlanMismatch, match=r"acme_imgproc-0\.1\.0-py3-none-any\.whl: built with"):
        release_job(discover(setup.ws.root), ctx, LOCAL, plan=plan, job=0)
    assert (setup.index.uploads, setup.oci.pushes) == ([], [])


def test_a_job_refuses_a_plan_of_another_release_commit_or_size(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=2))
    with pytest.raises(PlanMismatch, match="plans a plain release, but this run was given --dev"):
        release_job(setup.ws, ctx, LOCAL, plan=plan, job=0, dev=True)
    with pytest.raises(ConfigError, match="job 2 is not in this plan, which has 2 job"):
        release_job(setup.ws, ctx, LOCAL, plan=plan, job=2)
    data = json.loads(plan.read_text())
    data["release"]["revision"] = "f" * 40
    plan.write_text(json.dumps(data))
    with pytest.raises(PlanMismatch, match="was planned at commit ffffffffffff"):
        release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)
    plan.write_text("{}")
    with pytest.raises(ConfigError, match="not a plan of `kiln plan --jobs K --json`"):
        release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)
    assert (setup.index.uploads, setup.oci.pushes) == ([], [])


def test_a_tag_job_over_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = tagged_release_setup(tmp_path)
    root = setup.ws.root

    release_commands_over(monkeypatch, lambda: setup.services)
    repo = ("--repo", str(root))
    code, out, err = run(capsys, "plan", "--tag", "v0.1.0", "--jobs", "2", "--json", *repo)
    assert code == 0, err
    plan = tmp_path / "plan.json"
    plan.write_text(out)
    job = ("release", "--tag", "v0.1.0", "--plan", str(plan), *repo)

    code, out, err = run(capsys, *job, "--job", "0", "--json")
    assert code == 0, err
    assert len(json.loads(out)["uploaded"]) == 3
    code, out, err = run(capsys, *job, "--job", "1")
    assert code == 0, err
    assert out.startswith("job 1 of 2: uploaded 0 file(s), pushed 0 image(s)")
    assert not (root / "dist" / "release").exists()
    code, _, err = run(capsys, "release", "--plan", str(plan), "--job", "0", *repo)
    assert code == PlanMismatch.exit_code
    assert "plans the release of v0.1.0, but this run was given neither --tag nor --dev" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--job", "0"), "--job J and --plan FILE go together"),
        (("--plan", "p.json"), "--job J and --plan FILE go together"),
        (("--job", "-1", "--plan", "p.json"), "a job number (0, 1, ...), not '-1'"),
        (("--job", "0", "--plan", "p.json", "--dry-run"), "`kiln plan` is its dry run"),
    ],
)
def test_release_job_arguments(
    argv: tuple[str, ...], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = factory.sample(tmp_path)
    code, _, err = run(capsys, "release", *argv, "--repo", str(root))
    assert code == 2
    assert message in err


def test_a_dev_job_publishes_the_dev_versions_its_plan_names(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    components(setup.ws, ctx, LOCAL)
    root = setup.ws.root
    (root / ".gitignore").write_text(".kiln/\ndist/\n")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "sample")
    plan = write_plan(tmp_path, plan_jobs(discover(root), ctx, LOCAL, jobs=2, dev=True))
    (image,) = json.loads(plan.read_text())["jobs"][0]["images"]
    assert image["tag"].startswith("dev-")

    with pytest.raises(PlanMismatch, match="plans a dev release, but this run was given neither"):
        release_job(discover(root), ctx, LOCAL, plan=plan, job=0)
    share = release_job(discover(root), ctx, LOCAL, plan=plan, job=0, dev=True)

    assert share.pushed == (f"{image['repository']}:{image['tag']}@{image['digest']}",)
    assert all(".dev" in f for f in share.uploaded if f.startswith("acme_imgproc"))
    assert sorted(share.uploaded) == sorted(
        w["filename"] for w in json.loads(plan.read_text())["wheels"]
    )
    assert not (root / "dist" / "dev").exists()


def test_two_images_in_two_jobs_each_builds_only_its_own(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    factory.write(setup.ws.root / "pipelines" / "components" / "light.py", LIGHT)
    setup.ws = discover(setup.ws.root)
    assert setup.ws.packages is not None
    write_fake_lock(setup.ws, setup.ws.packages)  # packages mode's base: kiln's, with pip
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=2))
    data = json.loads(plan.read_text())
    assert [[i["name"] for i in job["images"]] for job in data["jobs"]] == [["base"], ["packages"]]
    assert data["jobs"][1]["publishes"] == ["pip-25.0-py3-none-any.whl"]
    setup.oci.builds.clear()

    second = release_job(setup.ws, ctx, LOCAL, plan=plan, job=1)
    # The packages base holds pip alone: no helper wheel built for it (at N=200 its job
    # built all 200, every packages-mode component's helpers).
    assert list(staging_dir(setup.ws).glob("*.whl")) == []
    assert {ref.rsplit(":", 1)[0] for ref in setup.oci.builds} == {
        f"{setup.registry.host}/acme/packages"
    }
    assert second.uploaded == ("pip-25.0-py3-none-any.whl",)
    setup.oci.builds.clear()
    first = release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)
    assert setup.oci.builds == [f"{setup.registry.host}/acme/base:0.1.0"]

    assert sorted(first.uploaded + second.uploaded) == sorted(w["filename"] for w in data["wheels"])
    assert len(first.pushed + second.pushed) == 2
    after = setup.release()  # one machine, after the matrix: all there, at the plan's digests
    assert (after.uploaded, after.pushed) == ([], [])
    digests = {i.name: i.digest for i in after.manifest.images}
    assert digests == {i["name"]: i["digest"] for job in data["jobs"] for i in job["images"]}


def test_a_job_builds_only_the_wheels_its_images_hold_and_it_publishes(tmp_path: Path) -> None:
    """A helper in no image: its wheel goes to the job with the least work, which builds
    it alone; the image's job builds its image's helpers' wheels, not that one (at N=200
    each of 4 jobs built all 200 wheels cold)."""
    setup = release_setup(tmp_path)
    factory.helper(setup.ws.root, "extra", deps=())
    setup.ws = discover(setup.ws.root)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=2))
    data = json.loads(plan.read_text())
    assert [len(job["images"]) for job in data["jobs"]] == [1, 0]
    assert "acme_extra-0.1.0-py3-none-any.whl" in data["jobs"][1]["publishes"]

    def staged() -> list[str]:
        return sorted(p.name for p in staging_dir(setup.ws).glob("*.whl"))

    first = release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)
    assert staged() == ["acme_imgproc-0.1.0-py3-none-any.whl"]
    second = release_job(setup.ws, ctx, LOCAL, plan=plan, job=1)
    assert staged() == ["acme_extra-0.1.0-py3-none-any.whl"]
    assert second.uploaded == ("acme_extra-0.1.0-py3-none-any.whl",)
    assert sorted(first.uploaded + second.uploaded) == sorted(w["filename"] for w in data["wheels"])
    after = setup.release()  # one machine, after the matrix: all there, the same bytes
    assert (after.uploaded, after.pushed) == ([], [])


def test_a_job_of_a_release_with_nothing_new_builds_nothing(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    setup.release()
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=1))
    data = json.loads(plan.read_text())
    assert {w["action"] for w in data["wheels"]} == {"skip"}
    setup.oci.builds.clear()

    done = release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)

    assert (done.uploaded, done.pushed, setup.oci.builds) == ((), (), [])
    (image,) = data["jobs"][0]["images"]
    assert done.checked == (f"{image['repository']}:0.1.0@{image['digest']}",)
    # A wheel it owns but did not make is checked on the index: altered there, refused.
    numpy = "numpy-1.0-py3-none-any.whl"
    setup.index.published["numpy"][numpy] = "f" * 64
    with pytest.raises(PlanMismatch, match=f"{numpy}: the plan found it on the index with"):
        release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)


def test_a_job_reads_the_pages_of_the_wheels_it_did_not_make_at_once(tmp_path: Path) -> None:
    """The wheels a job owns but did not make are checked on the index: their pages
    were read one after the other, one per wheel."""
    setup = release_setup(tmp_path)
    setup.release()
    pages = PagesAtOnce(setup.index, watched={"kfp", "numpy"})
    services = dataclasses.replace(setup.services, index=pages)
    ctx = Context(Options(), Reporter.null(), services=services)
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=1))
    pages.asked.clear()
    pages.together.clear()

    release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)

    assert pages.asked["kfp"] == pages.asked["numpy"] == 1  # the mirrored wheels: not made
    assert any({"kfp", "numpy"} <= flying for flying in pages.together), pages.together
