from __future__ import annotations

from pathlib import Path

from kiln._release.plan import (
    Action,
    FileCandidate,
    ImageCandidate,
    plan_file,
    plan_image,
    plan_release,
)

WHEEL = Path("dist/wheels/acme_imgproc-0.1.0-py3-none-any.whl")
HELPER = FileCandidate(
    "helper", "acme-imgproc", "0.1.0", WHEEL, "a" * 64, source=Path("helpers/imgproc")
)
# Its digest is computed by kiln before any push, and compared with the registry's.
IMAGE = ImageCandidate("base", "0.1.0", "acme/base", "sha256:d1", Path("images/base/image.toml"))


def test_unpublished_file_is_published() -> None:
    step = plan_file(HELPER, {})
    assert step.action is Action.PUBLISH
    assert step.filename == WHEEL.name


def test_identical_file_is_skipped() -> None:
    assert plan_file(HELPER, {WHEEL.name: "a" * 64}).action is Action.SKIP


def test_other_files_of_the_project_do_not_matter() -> None:
    older = {"acme_imgproc-0.0.9-py3-none-any.whl": "b" * 64}
    assert plan_file(HELPER, older).action is Action.PUBLISH


def test_changed_helper_is_refused_with_the_fix() -> None:
    step = plan_file(HELPER, {WHEEL.name: "b" * 64})
    assert step.action is Action.REFUSE
    assert "acme-imgproc 0.1.0 is already published with different bytes" in step.reason
    assert "bump version in helpers/imgproc/pyproject.toml" in step.reason


def test_altered_mirror_is_refused() -> None:
    mirror = FileCandidate("mirror", "numpy", "2.0", Path("numpy-2.0-x.whl"), "c" * 64)
    step = plan_file(mirror, {"numpy-2.0-x.whl": "d" * 64})
    assert step.action is Action.REFUSE
    assert "differs from the upstream file" in step.reason


def test_image_states() -> None:
    new = plan_image(IMAGE, None)
    assert (new.action, new.digest) == (Action.BUILD, "sha256:d1")
    assert new.reason == "not in the registry yet; kiln builds it as sha256:d1"
    same = plan_image(IMAGE, "sha256:d1")
    assert (same.action, same.digest) == (Action.SKIP, "sha256:d1")
    changed = plan_image(IMAGE, "sha256:pushed")
    assert changed.action is Action.REFUSE
    assert "acme/base:0.1.0 is already pushed as sha256:pushed" in changed.reason
    assert "kiln builds it as sha256:d1" in changed.reason
    assert "bump version in images/base/image.toml" in changed.reason


def test_plan_as_data() -> None:
    plan = plan_release(
        [(HELPER, {WHEEL.name: "a" * 64})],
        [(IMAGE, "sha256:d1")],
        [("double", "base")],
        ["demo"],
    )
    assert plan.up_to_date
    assert plan.refusals == ()
    data = plan.to_dict()
    assert data["files"][0]["action"] == "skip"
    assert data["images"][0] == {
        "name": "base",
        "version": "0.1.0",
        "repository": "acme/base",
        "action": "skip",
        "reason": "in the registry with the identical digest",
        "digest": "sha256:d1",
    }
    assert data["components"] == [
        {
            "name": "double",
            "image": "base",
            "repository": "acme/base",
            "digest": "sha256:d1",
            "reason": "pinned to acme/base@sha256:d1 (the image is unchanged)",
        }
    ]
    assert data["stages"] == [
        "wheels", "publish", "images", "components", "pipelines", "manifest"
    ]  # fmt: skip


def test_a_component_on_an_image_to_build_is_pinned_before_the_push() -> None:
    plan = plan_release([], [(IMAGE, None)], [("double", "base")], [])
    (step,) = plan.components
    assert step.digest == "sha256:d1"
    assert "computed by kiln before the push" in step.reason


def test_plan_collects_every_refusal() -> None:
    plan = plan_release(
        [(HELPER, {WHEEL.name: "b" * 64})],
        [(IMAGE, "sha256:zz")],
        [],
        [],
    )
    assert not plan.up_to_date
    assert len(plan.refusals) == 2


def test_a_changed_helper_without_a_record_says_the_index_may_be_altered() -> None:
    """No manifest records what kiln published (a fresh clone: dist/ is not committed, or
    one written for another index): the conflict cannot be told from an altered index
    file, so the bump advice says so rather than being taken for the only fix."""
    step = plan_file(HELPER, {WHEEL.name: "b" * 64})
    assert "no record of the bytes it published" in step.reason
    assert "if helpers/imgproc did not change since" in step.reason
    recorded = FileCandidate(
        "helper", "acme-imgproc", "0.1.0", WHEEL, "a" * 64, Path("helpers/imgproc"), "c" * 64
    )
    assert "no record" not in plan_file(recorded, {WHEEL.name: "b" * 64}).reason
