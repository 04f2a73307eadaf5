"""`kiln release --finalize --plan FILE`: the matrix's last step checks the whole plan is
published, names what is missing and the job to re-run, then writes what a one-machine
release writes, with the same bytes; over fake servers, and on the command line."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from kiln._context import LOCAL, Context, Services
from kiln._errors import ConfigError, PlanMismatch, ReleaseIncomplete
from kiln._options import Options
from kiln._release.finalize import check_published, finalize
from kiln._release.job import PlannedJob, read_jobs, release_job
from kiln._release.jobs import ImageWork
from kiln._release.matrix import plan_jobs
from kiln._release.plan import Action
from kiln._release.stages import Outcome
from kiln._report import Reporter
from tests.unit.cli import release_commands_over, run
from tests.unit.fakes import (
    FakeIndex,
    FakeOci,
    FakePip,
    FakeRegistry,
    PagesAtOnce,
    Setup,
    release_setup,
    tagged_release_setup,
)
from tests.unit.test_release_job import write_plan

WHEELS = (
    "acme_imgproc-0.1.0-py3-none-any.whl",
    "kfp-2.17.3-py3-none-any.whl",
    "numpy-1.0-py3-none-any.whl",
)


def fresh_servers(setup: Setup) -> Setup:
    """The same repository over empty servers of its own."""
    registry = FakeRegistry()
    return Setup(setup.ws, FakeIndex(), registry, FakeOci(registry), FakePip(), setup.upstream)


def outputs(root: Path) -> dict[str, bytes]:
    """Every file a release wrote in dist/, by its path there."""
    dist = root / "dist"
    return {
        str(p.relative_to(dist)): p.read_bytes() for p in sorted(dist.rglob("*")) if p.is_file()
    }


def test_finalize_names_what_is_missing_then_writes_what_one_machine_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = tagged_release_setup(tmp_path)
    root = setup.ws.root
    servers = {"now": setup}

    release_commands_over(monkeypatch, lambda: servers["now"].services)
    repo = ("--repo", str(root))
    # One machine, on servers of its own: what the matrix must write, byte for byte.
    servers["now"] = fresh_servers(setup)
    code, out, err = run(capsys, "release", "--tag", "v0.1.0", "--json", *repo)
    assert code == 0, err
    one_machine = json.loads(out)
    expected = outputs(root)
    assert "release/manifest.json" in expected
    assert "manifest.json" in expected
    shutil.rmtree(root / "dist")
    servers["now"] = setup

    code, out, err = run(capsys, "plan", "--tag", "v0.1.0", "--jobs", "2", "--json", *repo)
    assert code == 0, err
    plan = tmp_path / "plan.json"
    plan.write_text(out)
    final = ("release", "--finalize", "--tag", "v0.1.0", "--plan", str(plan), *repo)
    code, _, err = run(
        capsys, *("release", "--tag", "v0.1.0", "--plan", str(plan)), "--job", "1", *repo
    )
    assert code == 0, err

    code, _, err = run(capsys, *final)  # job 0 has not run: all of its share is missing
    assert code == ReleaseIncomplete.exit_code == 12
    for wheel in WHEELS:
        assert f"{wheel} is not on http://index.invalid (job 0 publishes it: re-run job 0)" in err
    image = f"{setup.registry.host}/acme/base:0.1.0"
    assert f"{image} is not in the registry (job 0 publishes it: re-run job 0)" in err
    assert "re-run job(s) 0 of the matrix" in err
    assert not (root / "dist").exists()
    assert setup.index.uploads == []

    code, _, err = run(
        capsys, *("release", "--tag", "v0.1.0", "--plan", str(plan)), "--job", "0", *repo
    )
    assert code == 0, err
    code, out, err = run(capsys, *final, "--json")
    assert code == 0, err
    done = json.loads(out)
    assert done["uploaded"] == [one_machine["bundle"]["filename"]]  # the bundle goes last
    assert done["pushed"] == []
    assert done["bundle"] == one_machine["bundle"]
    assert outputs(root) == expected  # manifest, bundle, notes, catalog, SBOMs, YAMLs, wheels
    manifest = json.loads((root / "dist" / "manifest.json").read_text())
    assert {w["status"] for w in manifest["wheels"]} == {"published"}
    assert manifest["images"][0]["status"] == "pushed"
    assert sorted(setup.index.uploads) == sorted([*WHEELS, done["uploaded"][0]])
    code, out, err = run(capsys, *final, "--json")  # again: nothing more, the same record
    assert code == 0, err
    assert json.loads(out)["uploaded"] == []
    assert outputs(root) == expected


def test_finalize_refuses_other_bytes_than_the_plan(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=2))
    release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)
    numpy = "numpy-1.0-py3-none-any.whl"
    setup.index.published["numpy"][numpy] = "f" * 64
    setup.registry.tags[("acme/base", "0.1.0")] = ("sha256:" + "1" * 64, {})
    with pytest.raises(PlanMismatch) as refused:
        finalize(setup.ws, ctx, LOCAL, plan=plan)
    message = str(refused.value)
    assert f"{numpy}: the index has sha256 {'f' * 64}, the plan " in message
    assert f"acme/base:0.1.0: the registry has sha256:{'1' * 64}, the plan sha256:" in message
    assert not (setup.ws.root / "dist").exists()


def test_a_plain_finalize_records_the_plans_actions(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    expected = fresh_servers(setup).release().manifest.to_json()
    shutil.rmtree(setup.ws.root / "dist")
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=1))
    release_job(setup.ws, ctx, LOCAL, plan=plan, job=0)

    done = finalize(setup.ws, ctx, LOCAL, plan=plan)

    assert isinstance(done, Outcome)
    assert done.manifest.to_json() == expected
    assert done.manifest_path.read_text() == json.dumps(expected, indent=2) + "\n"
    # Built from other sources than the plan's: refused, nothing written.
    source = setup.ws.root / "helpers" / "imgproc" / "src" / "imgproc" / "__init__.py"
    source.write_text(source.read_text() + "\nCHANGED = True\n")
    shutil.rmtree(setup.ws.root / "dist")
    with pytest.raises(PlanMismatch, match=r"acme_imgproc-0\.1\.0-py3-none-any\.whl: built with"):
        finalize(setup.ws, ctx, LOCAL, plan=plan)
    assert not (setup.ws.root / "dist").exists()


def test_finalize_takes_the_images_from_the_registry_and_checks_their_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finalize builds no image and no wheel (cold, they are most of a release): it
    records each image at the plan's digest, which the registry holds, once its labels
    are those of this commit's inputs, and each helper wheel downloaded from the index at
    the plan's sha256 (its helper folders are as the plan's commit has them); the same
    record as one machine's."""
    setup = tagged_release_setup(tmp_path)  # a plain release of a commit
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    expected = fresh_servers(setup).release().manifest.to_json()
    shutil.rmtree(setup.ws.root / "dist")
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=2))
    for job in (0, 1):
        release_job(setup.ws, ctx, LOCAL, plan=plan, job=job)
    built = list(setup.oci.builds)

    def no_wheel_build(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("finalize built a wheel")

    monkeypatch.setattr("kiln._release.prepare.build_wheels", no_wheel_build)
    done = finalize(setup.ws, ctx, LOCAL, plan=plan)

    assert isinstance(done, Outcome)
    assert setup.oci.builds == built  # nothing built
    assert done.manifest.to_json() == expected
    # The registry's image at the plan's digest, labelled as built from other inputs.
    shutil.rmtree(setup.ws.root / "dist")
    digest, labels = setup.registry.tags[("acme/base", "0.1.0")]
    helpers = {"org.kiln.helpers": labels["org.kiln.helpers"]}
    assert helpers == {"org.kiln.helpers": "acme-imgproc==0.1.0"}
    setup.registry.tags[("acme/base", "0.1.0")] = (
        digest, {**labels, "org.kiln.helpers": "acme-imgproc==0.0.9"}
    )  # fmt: skip
    with pytest.raises(PlanMismatch) as refused:
        finalize(setup.ws, ctx, LOCAL, plan=plan)
    assert (
        f"registry.invalid:5000/acme/base@{digest} (base) was not built from this commit's "
        "inputs" in str(refused.value)
    )
    assert (
        "org.kiln.helpers: the registry's image has 'acme-imgproc==0.0.9', this commit's "
        "inputs give 'acme-imgproc==0.1.0'" in str(refused.value)
    )
    assert setup.oci.builds == built
    assert not (setup.ws.root / "dist").exists()
    # A helper edited since the commit: its wheel is built again, and refused.
    setup.registry.tags[("acme/base", "0.1.0")] = (digest, {**labels, **helpers})
    monkeypatch.undo()
    source = setup.ws.root / "helpers" / "imgproc" / "src" / "imgproc" / "__init__.py"
    source.write_text(source.read_text() + "\nCHANGED = True\n")
    with pytest.raises(PlanMismatch, match=r"acme_imgproc-0\.1\.0-py3-none-any\.whl: built with"):
        finalize(setup.ws, ctx, LOCAL, plan=plan)
    assert not (setup.ws.root / "dist").exists()


def test_finalize_refuses_a_plan_of_another_release_and_dev(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=1))
    with pytest.raises(PlanMismatch, match="plans a plain release, but this run was given --tag"):
        finalize(setup.ws, ctx, LOCAL, plan=plan, tag="v0.1.0")
    with pytest.raises(ConfigError, match="--finalize --dev is not supported yet"):
        finalize(setup.ws, ctx, LOCAL, plan=plan, dev=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--finalize",), "--finalize takes --plan FILE"),
        (("--finalize", "--plan", "p.json", "--job", "0"), "--finalize takes --plan FILE"),
        (("--finalize", "--plan", "p.json", "--dry-run"), "`kiln plan` is its dry run"),
    ],
)
def test_finalize_arguments(
    argv: tuple[str, ...], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "release", *argv, "--repo", str(tmp_path))
    assert code == 2
    assert message in err


def test_an_index_that_does_not_list_a_planned_platform_image_is_refused(tmp_path: Path) -> None:
    registry = FakeRegistry()
    amd64, arm64, index = ("sha256:" + c * 64 for c in "abc")
    registry.tags[("acme/base", "0.1.0")] = (index, {})
    listed = {
        "manifests": [{"digest": amd64, "platform": {"os": "linux", "architecture": "amd64"}}]
    }
    services = Services(FakeIndex(), _Listing(registry, json.dumps(listed).encode()))
    image = ImageWork(
        "base", f"{registry.host}/acme/base", "0.1.0", Action.BUILD, index,
        (("linux/amd64", amd64), ("linux/arm64", arm64)), (), 1,
    )  # fmt: skip
    job = PlannedJob(tmp_path / "plan.json", 0, 1, "plain", None, None, (image,), {})
    with pytest.raises(PlanMismatch, match=f"its index does not list linux/arm64's image {arm64}"):
        check_published([job], services)
    listed["manifests"].append(
        {"digest": arm64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}
    )
    check_published([job], Services(FakeIndex(), _Listing(registry, json.dumps(listed).encode())))
    registry.tags.clear()  # not pushed at all: missing, and the job that pushes it
    with pytest.raises(
        ReleaseIncomplete,
        match=re.escape(
            "acme/base:0.1.0 is not in the registry (job 0 publishes it: re-run job 0)"
        ),
    ):
        check_published([job], services)


@dataclasses.dataclass
class _Listing:
    """A registry whose every manifest is ``index`` (an OCI index)."""

    registry: FakeRegistry
    index: bytes
    host: str = FakeRegistry.host

    def digest(self, repository: str, tag: str) -> str | None:
        return self.registry.digest(repository, tag)

    def labels(self, repository: str, tag: str) -> dict[str, str]:
        return self.registry.labels(repository, tag)

    def manifest(self, repository: str, reference: str, *, lists: bool = False) -> bytes:
        assert lists
        return self.index

    def blob_exists(self, repository: str, digest: str) -> bool:
        return True


def test_finalize_reads_each_index_page_once_and_all_at_once(tmp_path: Path) -> None:
    """check_published read one page per wheel, one after the other (hundreds of
    wheels: hundreds of round trips in a row)."""
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    plan = write_plan(tmp_path, plan_jobs(setup.ws, ctx, LOCAL, jobs=2))
    for job in (0, 1):
        release_job(setup.ws, ctx, LOCAL, plan=plan, job=job)
    pages = PagesAtOnce(setup.index)
    check_published(read_jobs(plan), dataclasses.replace(setup.services, index=pages))
    projects = {"acme-imgproc", "kfp", "numpy"}
    assert pages.asked == Counter(projects)  # each once
    assert any(len(flying) >= 2 for flying in pages.together), pages.together
