"""Pushing an image made for several platforms: each platform's image by digest, each
checked, then the OCI index by its predicted digest, and only then its tag."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from kiln._errors import CommandFailed
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.index import BuiltIndex, Platform, image_index
from kiln._images.oci.push import EMPTY_INDEX, probe_index, push_index
from kiln._release.plan import ImageCandidate, plan_image
from kiln._release.prepare import prepare
from tests.unit.fakes import release_setup
from tests.unit.test_oci_push import FakeRegistry, an_image, client

EMPTY_INDEX_DIGEST = "sha256:93e16ab8fb1bfb08f051a420835b414851eaeedb9f7105d26dacb84f26d810b5"


def two_platforms(tmp_path: Path) -> BuiltIndex:
    return image_index([an_image(tmp_path, "amd64"), an_image(tmp_path, "arm64")])


def test_each_platform_is_pushed_and_checked_then_the_index_by_digest_then_its_tag(
    tmp_path: Path,
) -> None:
    index = two_platforms(tmp_path)
    registry = FakeRegistry()
    reg, transport = client(registry, [])
    checked: list[tuple[str, str]] = []

    def verify(platform: Platform, image: BuiltImage) -> None:
        assert set(registry.by_digest) >= {i.digest for _, i in index.images}  # all pushed
        assert "1.0" not in registry.manifests  # nothing tagged yet
        checked.append((str(platform), image.digest))

    pushed = push_index(reg, "acme/base", "1.0", index, verify=verify)

    assert pushed.digest == index.digest
    assert sorted(checked) == sorted((str(p), i.digest) for p, i in index.images)
    assert [str(p) for p, _ in index.images] == ["linux/amd64", "linux/arm64/v8"]
    assert registry.manifests["1.0"] == index.index
    assert registry.manifests[index.digest] == index.index
    puts = [line for line in transport.lines() if "/manifests/" in line]
    amd64, arm64 = (i.digest for _, i in index.images)
    assert puts == [
        f"PUT https://reg.test/v2/acme/base/manifests/{amd64}",
        f"PUT https://reg.test/v2/acme/base/manifests/{arm64}",
        f"PUT https://reg.test/v2/acme/base/manifests/{index.digest}",
        "PUT https://reg.test/v2/acme/base/manifests/1.0",
    ]
    third = index.images[0][1].layers[1].digest  # the same layer in both: sent once
    assert pushed.uploaded.count(third) == 1
    assert pushed.present.count(third) == 1


def test_the_platforms_are_checked_at_the_same_time(tmp_path: Path) -> None:
    """amd64's check (the engine) waits for arm64's (qemu-user) to have started: one
    after the other, this would time out."""
    index = two_platforms(tmp_path)
    reg, _ = client(FakeRegistry(), [])
    arm64_started = threading.Event()
    ended: list[str] = []

    def verify(platform: Platform, _image: BuiltImage) -> None:
        if platform.architecture == "arm64":
            arm64_started.set()
        elif not arm64_started.wait(timeout=10):
            raise AssertionError("amd64's check ran alone")
        ended.append(platform.architecture)

    assert push_index(reg, "acme/base", "1.0", index, verify=verify).digest == index.digest
    assert sorted(ended) == ["amd64", "arm64"]


@pytest.mark.parametrize("failing", [("arm64",), ("amd64", "arm64")])
def test_a_platform_failing_its_check_leaves_the_index_and_tag_unput(
    tmp_path: Path, failing: tuple[str, ...]
) -> None:
    index = two_platforms(tmp_path)
    registry = FakeRegistry()
    reg, _ = client(registry, [])

    def verify(platform: Platform, _image: BuiltImage) -> None:
        if platform.architecture in failing:
            raise CommandFailed(f"{platform.architecture}: numpy does not import")

    # The first failing platform's error, after every check ended.
    with pytest.raises(CommandFailed, match=rf"{failing[0]}: numpy does not import"):
        push_index(reg, "acme/base", "1.0", index, verify=verify)
    assert index.digest not in registry.manifests
    assert "1.0" not in registry.manifests


def test_a_registry_refusing_oci_indexes_is_an_error_saying_so_with_nothing_tagged(
    tmp_path: Path,
) -> None:
    index = two_platforms(tmp_path)
    registry = FakeRegistry()
    registry.refuse_index = True
    reg, _ = client(registry, [])
    with pytest.raises(CommandFailed) as err:
        push_index(reg, "acme/base", "1.0", index)
    message = str(err.value)
    assert message.startswith("registry reg.test refused the OCI image index of acme/base:1.0")
    assert "MANIFEST_INVALID: manifest invalid" in message
    assert "nothing was tagged" in message
    assert 'platforms = ["linux/amd64"]' in message
    assert "1.0" not in registry.manifests


def test_a_registry_rewriting_the_index_is_an_error_naming_both_digests(tmp_path: Path) -> None:
    index = two_platforms(tmp_path)
    registry = FakeRegistry()
    registry.rewrite_index = True
    reg, _ = client(registry, [])
    with pytest.raises(CommandFailed) as err:
        push_index(reg, "acme/base", "1.0", index)
    assert f"kiln predicted {index.digest}" in str(err.value)
    assert "the registry rewrote the index" in str(err.value)
    assert "1.0" not in registry.manifests


def test_the_plan_of_an_image_of_several_platforms_lists_each_one_s_digest(
    tmp_path: Path,
) -> None:
    setup = release_setup(tmp_path / "repo")
    (inputs,) = prepare(setup.ws, setup.services).images
    index = two_platforms(tmp_path)
    image = dataclasses.replace(inputs.image, platforms=("linux/amd64", "linux/arm64"))
    inputs = dataclasses.replace(inputs, image=image, built=index)
    candidate = ImageCandidate("base", "0.2.0", "acme/base", index.digest, Path("x"), inputs)
    row = plan_image(candidate, None).to_dict()
    assert row["digest"] == index.digest
    assert row["platforms"] == [
        {"platform": "linux/amd64", "digest": index.images[0][1].digest},
        {"platform": "linux/arm64", "digest": index.images[1][1].digest},
    ]
    one = plan_image(dataclasses.replace(candidate, inputs=None), None).to_dict()
    assert "platforms" not in one
    assert "inputs" not in one


def test_a_registry_refusing_oci_indexes_is_found_out_before_anything_is_published(
    tmp_path: Path,
) -> None:
    registry = FakeRegistry()
    reg, transport = client(registry, [])
    probe_index(reg, "acme/base")  # taken: the empty index, by its digest
    assert transport.lines() == [
        f"PUT https://reg.test/v2/acme/base/manifests/{EMPTY_INDEX_DIGEST}"
    ]
    assert registry.manifests == {EMPTY_INDEX_DIGEST: EMPTY_INDEX}

    refusing = FakeRegistry()
    refusing.refuse_index = True
    with pytest.raises(CommandFailed) as err:
        probe_index(client(refusing, [])[0], "acme/base")
    message = str(err.value)
    assert message.startswith("registry reg.test refuses OCI image indexes (")
    assert "MANIFEST_INVALID" in message
    assert "nothing was published" in message
    assert 'platforms = ["linux/amd64"]' in message

    rewriting = FakeRegistry()
    rewriting.rewrite_index = True
    with pytest.raises(CommandFailed, match="stored an OCI image index as sha256:"):
        probe_index(client(rewriting, [])[0], "acme/base")
