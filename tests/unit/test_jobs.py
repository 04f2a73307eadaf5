"""The release plan cut into jobs (`kiln plan --jobs K`): balance, grouping, wheel owners,
determinism, more jobs than work; the flow over fake servers and the command line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kiln._context import LOCAL, Context
from kiln._errors import PublishedConflict
from kiln._options import Options
from kiln._release.jobs import PLATFORM_COST, SKIP_COST, ImageWork, WheelWork, split
from kiln._release.matrix import plan_jobs
from kiln._release.plan import Action
from kiln._report import Reporter
from kiln._workspace.discovery import discover
from tests.unit.cli import release_commands_over, run
from tests.unit.fakes import git, release_setup, tagged_release_setup


def wheel(filename: str, action: Action = Action.PUBLISH) -> WheelWork:
    return WheelWork(
        filename, filename.split("-", maxsplit=1)[0], "1.0", "helper", "0" * 64, action
    )


def image(name: str, cost: int, *wheels: str, action: Action = Action.BUILD) -> ImageWork:
    return ImageWork(name, f"r/acme/{name}", "1.0", action, f"sha256:{name}", (), wheels, cost)


WHEELS = [wheel(f"{w}-1.0-py3-none-any.whl") for w in ("a", "b", "c", "d", "pkg")]
A, B, C, D, PKG = (w.filename for w in WHEELS)
IMAGES = [
    image("analytics", 90, A, B, C),
    image("base", 40, A),
    image("vision", 35, B, D),
    image("tiny", 10, C),
    image("old", SKIP_COST, A, action=Action.SKIP),
]


def test_images_are_dealt_heaviest_first_to_the_least_loaded_job() -> None:
    plan = split(WHEELS, IMAGES, 2)
    assert [[i.name for i in j.images] for j in plan.jobs] == [
        ["analytics"],
        ["base", "old", "tiny", "vision"],
    ]
    assert [j.cost for j in plan.jobs] == [90, 86]
    three = split(WHEELS, IMAGES, 3)
    assert [[i.name for i in j.images] for j in three.jobs] == [
        ["analytics"],
        ["base", "old"],
        ["tiny", "vision"],
    ]
    assert [j.cost for j in three.jobs] == [90, 41, 45]


def test_no_job_carries_more_than_the_heaviest_image_above_the_average() -> None:
    """The greedy bound: max load <= total / K + the heaviest image."""
    images = [image(f"i{n:02}", (n * 37) % 101 + 1) for n in range(40)]
    total = sum(i.cost for i in images)
    for count in (1, 2, 3, 4, 7, 13):
        plan = split([], images, count)
        assert sorted(i.name for j in plan.jobs for i in j.images) == [i.name for i in images]
        assert max(j.cost for j in plan.jobs) <= total / count + max(i.cost for i in images)
        assert max(j.cost for j in plan.jobs) - min(j.cost for j in plan.jobs) <= 101


def test_each_wheel_has_one_owner_and_an_image_reads_what_another_job_owns() -> None:
    plan = split(WHEELS, IMAGES, 2)
    owners = {w.filename: owner for w, owner in plan.wheels}
    # job 0 (analytics) needs a, b, c first; d is vision's, in job 1; pkg no image needs.
    assert owners == {A: 0, B: 0, C: 0, D: 1, PKG: 1}
    first, second = plan.jobs
    assert (first.publishes, first.reads) == ((A, B, C), ())
    assert (second.publishes, second.reads) == ((D, PKG), (A, B, C))
    published = [f for j in plan.jobs for f in j.publishes]
    assert sorted(published) == sorted(w.filename for w in WHEELS)  # each exactly once
    # Every image's job either publishes or reads each wheel it needs.
    for job in plan.jobs:
        for img in job.images:
            assert set(img.wheels) <= {*job.publishes, *job.reads}


def test_a_wheel_no_image_needs_goes_to_the_least_loaded_job() -> None:
    plan = split([wheel("pkg-1.0-py3-none-any.whl")], [image("x", 5), image("y", 3)], 3)
    assert [j.publishes for j in plan.jobs] == [(), (), ("pkg-1.0-py3-none-any.whl",)]
    plan = split([wheel("pkg-1.0-py3-none-any.whl")], [], 2)
    assert [j.publishes for j in plan.jobs] == [("pkg-1.0-py3-none-any.whl",), ()]


def test_more_jobs_than_images_leaves_the_last_ones_empty() -> None:
    plan = split(WHEELS[:1], [image("base", 40, A)], 4)
    assert [len(j.images) for j in plan.jobs] == [1, 0, 0, 0]
    assert [j.to_dict() for j in plan.jobs[1:]] == [
        {"job": n, "cost": 0, "images": [], "publishes": [], "reads": []} for n in (1, 2, 3)
    ]
    with pytest.raises(ValueError, match="at least one job, not 0"):
        split(WHEELS, IMAGES, 0)


def test_the_split_depends_on_the_plan_alone_not_its_order() -> None:
    one = json.dumps(split(WHEELS, IMAGES, 3).to_dict(), indent=2)
    other = json.dumps(split(WHEELS[::-1], IMAGES[::-1], 3).to_dict(), indent=2)
    assert one == other
    # Ties go to the lower job number and, among equal costs, by name.
    even = split([], [image("b", 5), image("a", 5), image("c", 5), image("d", 5)], 2)
    assert [[i.name for i in j.images] for j in even.jobs] == [["a", "c"], ["b", "d"]]


def test_an_image_needing_a_wheel_the_plan_does_not_publish_is_a_defect() -> None:
    with pytest.raises(ValueError, match=r"image base needs x\.whl, which is not planned"):
        split([], [image("base", 1, "x.whl")], 1)


def test_the_json_lists_each_image_s_digests_and_each_wheel_s_owner() -> None:
    multi = dataclasses.replace(
        IMAGES[0], platforms=(("linux/amd64", "sha256:am"), ("linux/arm64", "sha256:arm"))
    )
    data = split(WHEELS, [multi], 1).to_dict()
    assert data["jobs_count"] == 1
    assert data["jobs"][0]["images"] == [
        {
            "name": "analytics",
            "repository": "r/acme/analytics",
            "tag": "1.0",
            "action": "build",
            "digest": "sha256:analytics",
            "platforms": [
                {"platform": "linux/amd64", "digest": "sha256:am"},
                {"platform": "linux/arm64", "digest": "sha256:arm"},
            ],
            "wheels": [A, B, C],
            "cost": 90,
        }
    ]
    assert data["wheels"][0] == {
        "filename": A,
        "project": "a",
        "version": "1.0",
        "kind": "helper",
        "sha256": "0" * 64,
        "action": "publish",
        "job": 0,
    }


def test_plan_jobs_over_fake_servers_plans_publishes_nothing_and_costs_the_build(
    tmp_path: Path,
) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)

    planned = plan_jobs(setup.ws, ctx, LOCAL, jobs=2)

    assert (setup.index.uploads, setup.oci.pushes, setup.registry.tags) == ([], [], {})
    assert not (setup.ws.root / "dist").exists()
    assert planned.kind == "plain"
    first, second = planned.jobs.jobs
    (base,) = first.images
    assert (base.name, base.action, base.platforms) == ("base", Action.BUILD, ())
    assert base.repository == f"{setup.registry.host}/acme/base"
    wheels = (
        "acme_imgproc-0.1.0-py3-none-any.whl",
        "kfp-2.17.3-py3-none-any.whl",
        "numpy-1.0-py3-none-any.whl",
    )
    assert base.wheels == wheels
    # The fake wheels are a few bytes: a MiB at most, and one platform's fixed part.
    assert PLATFORM_COST < base.cost <= PLATFORM_COST + 1
    assert (first.publishes, second.images, second.publishes) == (wheels, (), ())
    # The digest the job lists is the one the release then pushes.
    released = setup.release()
    assert released.pushed == [f"{setup.registry.host}/acme/base:0.1.0@{base.digest}"]
    again = plan_jobs(discover(setup.ws.root), ctx, LOCAL, jobs=2)
    assert [i.action for j in again.jobs.jobs for i in j.images] == [Action.SKIP]
    assert again.jobs.jobs[0].cost == SKIP_COST


def test_a_plan_that_refuses_is_not_split(tmp_path: Path) -> None:
    setup = release_setup(tmp_path)
    ctx = Context(Options(), Reporter.null(), services=setup.services)
    setup.release()
    source = setup.ws.root / "helpers" / "imgproc" / "src" / "imgproc" / "__init__.py"
    source.write_text(source.read_text() + "\nCHANGED = True\n")
    with pytest.raises(PublishedConflict, match="nothing was published"):
        plan_jobs(discover(setup.ws.root), ctx, LOCAL, jobs=2)


def test_the_plan_command_tag_and_dev(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = tagged_release_setup(tmp_path)
    root = setup.ws.root

    release_commands_over(monkeypatch, lambda: setup.services)
    repo = ("--repo", str(root))

    code, out, err = run(capsys, "plan", "--tag", "v0.1.0", "--jobs", "3", "--json", *repo)
    assert code == 0, err
    data = json.loads(out)
    assert data["release"] == {
        "kind": "tag",
        "version": "0.1.0",
        "tag": "v0.1.0",
        "revision": git(root, "rev-parse", "HEAD"),
    }
    assert [len(j["images"]) for j in data["jobs"]] == [1, 0, 0]
    assert {w["job"] for w in data["wheels"]} == {0}
    code, again, err = run(capsys, "plan", "--tag", "v0.1.0", "--jobs", "3", "--json", *repo)
    assert (code, again) == (0, out)  # byte for byte

    code, out, err = run(capsys, "plan", "--tag", "v0.1.0", "--jobs", "2", *repo)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("release 0.1.0 (v0.1.0) at ")
    assert "1 image(s), 3 wheel(s) in 2 job(s); nothing published" in lines[0]
    assert lines[1].split() == ["job", "cost", "images", "publishes", "reads"]
    assert "job 1: nothing" in lines

    code, out, err = run(capsys, "plan", "--dev", "--json", *repo)
    assert code == 0, err
    data = json.loads(out)
    assert data["release"]["kind"] == "dev"
    (job,) = data["jobs"]
    assert job["images"][0]["tag"].startswith("dev-")
    assert job["images"][0]["cost"] > PLATFORM_COST  # read on the dev copy before it went
    assert (setup.index.uploads, setup.oci.pushes, setup.registry.tags) == ([], [], {})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--jobs", "0"), "a whole number of at least 1, not '0'"),
        (("--jobs", "two"), "a whole number of at least 1, not 'two'"),
        (("--tag", "v1.0.0", "--dev"), "not allowed with argument --tag"),
    ],
)
def test_the_plan_command_refuses_bad_arguments(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "plan", *argv)
    assert code == 2
    assert message in err


def test_plan_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--help")
    assert code == 0
    for text in ("--jobs K", "heaviest first", "exactly one job", "empty", "byte-identical"):
        assert text in " ".join(out.split())
