from __future__ import annotations

from pathlib import Path

from kiln._release.plan import (
    Action,
    FileCandidate,
    ImageCandidate,
    PublishedImage,
    plan_file,
    plan_image,
    plan_release,
)

WHEEL = Path("dist/wheels/acme_imgproc-0.1.0-py3-none-any.whl")
HELPER = FileCandidate(
    "helper", "acme-imgproc", "0.1.0", WHEEL, "a" * 64, source=Path("helpers/imgproc")
)
IMAGE = ImageCandidate("base", "0.1.0", "acme/base", "sha256:f1", Path("images/base/image.toml"))


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
    assert plan_image(IMAGE, None).action is Action.BUILD
    same = plan_image(IMAGE, PublishedImage("sha256:d1", "sha256:f1"))
    assert (same.action, same.digest) == (Action.SKIP, "sha256:d1")
    changed = plan_image(IMAGE, PublishedImage("sha256:d1", "sha256:other"))
    assert changed.action is Action.REFUSE
    assert "bump version in images/base/image.toml" in changed.reason
    unlabelled = plan_image(IMAGE, PublishedImage("sha256:d1", None))
    assert unlabelled.action is Action.REFUSE


def test_plan_as_data() -> None:
    plan = plan_release(
        [(HELPER, {WHEEL.name: "a" * 64})],
        [(IMAGE, PublishedImage("sha256:d1", "sha256:f1"))],
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
        "fingerprint": "sha256:f1",
        "action": "skip",
        "reason": "in the registry, built from identical inputs",
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


def test_a_component_on_an_image_to_build_is_pinned_after_the_push() -> None:
    plan = plan_release([], [(IMAGE, None)], [("double", "base")], [])
    (step,) = plan.components
    assert step.digest is None
    assert step.reason == "pinned to the digest acme/base:0.1.0 gets when it is pushed"


def test_plan_collects_every_refusal() -> None:
    plan = plan_release(
        [(HELPER, {WHEEL.name: "b" * 64})],
        [(IMAGE, PublishedImage("sha256:d1", "sha256:zz"))],
        [],
        [],
    )
    assert not plan.up_to_date
    assert len(plan.refusals) == 2


def test_an_image_fingerprinted_by_an_earlier_kiln_is_still_identical() -> None:
    candidate = ImageCandidate(
        "base", "0.1.0", "acme/base", "sha256:new", IMAGE.config, earlier=("sha256:old",)
    )
    assert plan_image(candidate, PublishedImage("sha256:d", "sha256:old")).action is Action.SKIP
    assert plan_image(candidate, PublishedImage("sha256:d", "sha256:x")).action is Action.REFUSE


# A kiln-built image: its digest is computed before any push and compared as such.
BUILT = ImageCandidate(
    "base", "0.1.0", "acme/base", "sha256:f1", IMAGE.config, digest="sha256:predicted"
)


def test_a_kiln_built_image_is_planned_by_digest() -> None:
    new = plan_image(BUILT, None)
    assert (new.action, new.digest) == (Action.BUILD, "sha256:predicted")
    # The fingerprint label does not matter: a kiln-built image has none.
    same = plan_image(BUILT, PublishedImage("sha256:predicted", None))
    assert (same.action, same.digest) == (Action.SKIP, "sha256:predicted")
    other = plan_image(BUILT, PublishedImage("sha256:pushed", "sha256:f1"))
    assert other.action is Action.REFUSE
    assert "acme/base:0.1.0 is already pushed as sha256:pushed" in other.reason
    assert "kiln builds it as sha256:predicted" in other.reason
    assert "bump version in images/base/image.toml" in other.reason


def test_a_component_on_a_kiln_built_image_is_pinned_before_the_push() -> None:
    plan = plan_release([], [(BUILT, None)], [("double", "base")], [])
    (step,) = plan.components
    assert step.digest == "sha256:predicted"
    assert step.reason.startswith("pinned to acme/base@sha256:predicted (computed by kiln")
    assert plan.to_dict()["images"][0]["digest"] == "sha256:predicted"
