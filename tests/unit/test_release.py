"""The whole release against in-memory fakes: the plan, the stages, recovery."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

from kiln._errors import (
    ArtifactAltered,
    CommandFailed,
    ConfigError,
    PublishedConflict,
    ServiceUnavailable,
)
from kiln._images.inputs import OsBase
from kiln._images.oci.builder import image_labels
from kiln._images.oci.image import BuiltImage
from kiln._release.components import component_drift
from kiln._release.plan import Action
from kiln._release.prepare import prepare
from kiln._release.stages import make_plan
from kiln._report import Reporter
from kiln._util.files import sha256_file
from kiln._workspace.discovery import discover
from tests import factory
from tests.unit.fakes import (
    BASE_DIGEST,
    OS_LAYER,
    Setup,
    fake_sha,
    release_setup,
    write_fake_lock,
    write_fake_os_lock,
)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return release_setup(tmp_path)


def test_first_release_publishes_bakes_and_pins(setup: Setup) -> None:
    outcome = setup.release()

    assert setup.index.uploads[0] == "acme_imgproc-0.1.0-py3-none-any.whl"
    assert sorted(setup.index.uploads[1:]) == [
        "kfp-2.17.3-py3-none-any.whl",
        "numpy-1.0-py3-none-any.whl",
    ]
    assert setup.oci.pushes == ["registry.invalid:5000/acme/base:0.1.0"]
    image = outcome.manifest.to_json()["images"][0]
    digest = setup.registry.tags[("acme/base", "0.1.0")][0]
    assert image["ref"] == f"registry.invalid:5000/acme/base@{digest}"
    assert image["status"] == "pushed"
    assert image["helpers"] == ["acme-imgproc==0.1.0"]

    yaml = (setup.ws.component_dir / "double.yaml").read_text()
    assert f"image: registry.invalid:5000/acme/base@{digest}" in yaml
    assert "pip install" not in yaml  # kfp is baked in: nothing installed at start
    assert (setup.ws.dist_dir / "pipelines" / "demo.yaml").is_file()

    on_disk = json.loads(outcome.manifest_path.read_text())
    assert on_disk == outcome.manifest.to_json()
    wheel = on_disk["wheels"][0]
    assert wheel["status"] == "published"
    assert wheel["sha256"] == setup.index.published["acme-imgproc"][wheel["filename"]]


def test_the_image_is_built_from_exactly_the_locked_and_built_wheels(setup: Setup) -> None:
    (inputs,) = prepare(setup.ws, setup.services).images
    assert isinstance(inputs.built, BuiltImage)
    helper = setup.ws.state_dir / "staging" / "wheels" / "acme_imgproc-0.1.0-py3-none-any.whl"
    assert json.loads(inputs.built.manifest)["wheels"] == sorted(
        [fake_sha("kfp", "2.17.3"), fake_sha("numpy", "1.0"), sha256_file(helper)]
    )
    labels = image_labels(inputs, source=None)
    assert labels["org.kiln.helpers"] == "acme-imgproc==0.1.0"
    assert labels["org.kiln.third-party"] == "kfp==2.17.3,numpy==1.0"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert not [k for k in labels if "fingerprint" in k]  # the digest is the identity


def test_second_release_changes_nothing(setup: Setup) -> None:
    first = setup.release()
    uploads, pushes, pip_calls = (
        len(setup.index.uploads),
        len(setup.oci.pushes),
        len(setup.pip.calls),
    )

    second = setup.release()

    assert second.plan.up_to_date
    assert (second.uploaded, second.pushed) == ([], [])
    assert len(setup.index.uploads) == uploads
    assert len(setup.oci.pushes) == pushes
    assert len(setup.pip.calls) == pip_calls  # the wheelhouse came from the cache
    assert second.manifest.images[0].ref == first.manifest.images[0].ref
    assert second.manifest.images[0].status == "unchanged"
    assert second.manifest.wheels[0].status == "unchanged"


def test_changed_helper_without_bump_is_refused_and_nothing_changes(setup: Setup) -> None:
    setup.release()
    before_index = json.dumps(setup.index.published, sort_keys=True)
    before_registry = dict(setup.registry.tags)
    source = setup.ws.helper("imgproc").path / "src" / "imgproc" / "__init__.py"
    source.write_text("def answer() -> int:\n    return 43\n")

    with pytest.raises(PublishedConflict) as err:
        setup.release()

    message = str(err.value)
    assert "nothing was published" in message
    assert "acme-imgproc 0.1.0 is already published with different bytes" in message
    assert "bump version in images/base/image.toml" in message  # the image changed too
    assert json.dumps(setup.index.published, sort_keys=True) == before_index
    assert setup.registry.tags == before_registry


def test_interrupted_release_completes_on_rerun(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_push = setup.oci.push

    def broken_push(inputs: object, image: object) -> str:
        raise CommandFailed("connection reset during push")

    monkeypatch.setattr(setup.oci, "push", broken_push)
    with pytest.raises(CommandFailed):
        setup.release()
    assert setup.registry.tags == {}
    uploaded_once = list(setup.index.uploads)

    monkeypatch.setattr(setup.oci, "push", real_push)
    outcome = setup.release()

    assert setup.index.uploads == uploaded_once  # nothing uploaded twice
    assert outcome.pushed == [
        f"registry.invalid:5000/acme/base:0.1.0@{outcome.manifest.images[0].digest}"
    ]
    assert {s.action for s in outcome.plan.files} == {Action.SKIP}


def test_refused_release_leaves_dist_wheels_alone(setup: Setup) -> None:
    setup.release()
    published = setup.ws.dist_dir / "wheels" / "acme_imgproc-0.1.0-py3-none-any.whl"
    before = published.read_bytes()
    source = setup.ws.helper("imgproc").path / "src" / "imgproc" / "__init__.py"
    source.write_text("def answer() -> int:\n    return 43\n")

    with pytest.raises(PublishedConflict):
        setup.release()

    assert published.read_bytes() == before  # the unpublished build stayed in staging
    assert sha256_file(published) == setup.index.published["acme-imgproc"][published.name]


def test_a_file_altered_on_the_index_is_not_called_a_source_change(setup: Setup) -> None:
    setup.release()
    name = "acme_imgproc-0.1.0-py3-none-any.whl"
    setup.index.published["acme-imgproc"][name] = "f" * 64  # swapped behind kiln's back

    with pytest.raises(ArtifactAltered) as err:
        setup.release()

    message = str(err.value)
    assert err.value.exit_code == 8
    assert f"{name}: the index serves sha256 ffffffffffff..., but kiln published" in message
    assert "was altered or replaced. Do not bump the version" in message
    assert f"deleting {name} from the index" in message
    assert "bump version in helpers/imgproc" not in message
    assert setup.index.published["acme-imgproc"][name] == "f" * 64  # nothing uploaded


def test_without_a_record_of_the_release_a_different_file_is_a_conflict(setup: Setup) -> None:
    setup.release()
    (setup.ws.dist_dir / "manifest.json").unlink()  # e.g. a fresh clone
    setup.index.published["acme-imgproc"]["acme_imgproc-0.1.0-py3-none-any.whl"] = "f" * 64

    with pytest.raises(PublishedConflict, match="already published with different bytes"):
        setup.release()


def test_an_altered_mirror_file_is_reported_as_altered(setup: Setup) -> None:
    setup.release()
    setup.index.published["numpy"]["numpy-1.0-py3-none-any.whl"] = "f" * 64

    with pytest.raises(ArtifactAltered, match=r"numpy-1.0-py3-none-any.whl on the index differs"):
        setup.release()


def test_prepare_and_plan_write_nothing_outside_kiln_state(setup: Setup) -> None:
    before = sorted(p for p in setup.ws.root.rglob("*") if ".kiln" not in p.parts)
    prepared = prepare(setup.ws, setup.services)
    plan = make_plan(setup.ws, prepared, setup.services)

    assert {s.action for s in plan.files} == {Action.PUBLISH}
    assert sorted(p for p in setup.ws.root.rglob("*") if ".kiln" not in p.parts) == before
    assert not setup.ws.dist_dir.exists()
    assert setup.index.uploads == []
    assert setup.oci.pushes == []


def test_images_build_on_the_os_lock_and_a_stale_one_stops_the_release(setup: Setup) -> None:
    (inputs,) = prepare(setup.ws, setup.services).images
    assert isinstance(inputs.base, OsBase)
    assert inputs.base.lock.os.layer == OS_LAYER
    assert inputs.base.extras is None

    pyproject = setup.ws.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + '\n[tool.kiln.os]\nsuite = "trixie"\n')
    with pytest.raises(ConfigError) as err:
        prepare(discover(setup.ws.root), setup.services)
    assert str(err.value) == (
        f"{setup.ws.root / 'images' / 'os.lock'}: stale: [tool.kiln.os] or an image's "
        "os-packages changed since it was written; run `kiln lock` and commit the result"
    )
    assert setup.oci.builds == [inputs.ref]  # the second release built nothing


def test_an_image_whose_python_is_not_the_os_lock_s_is_named(setup: Setup) -> None:
    write_fake_os_lock(setup.ws)
    lock = setup.ws.root / "images" / "os.lock"
    lock.write_text(lock.read_text().replace(f'python = "{factory.PYTHON}"', 'python = "3.9"'))
    with pytest.raises(ConfigError) as err:
        prepare(setup.ws, setup.services)
    assert f"python = '{factory.PYTHON}', but kiln's OS base installs Python 3.9" in str(err.value)
    assert "images/base/image.toml" in str(err.value)


def test_a_registry_base_is_built_on_by_its_locked_digest(setup: Setup) -> None:
    toml = setup.ws.image("base").path / "image.toml"
    toml.write_text(toml.read_text().replace("[image]\n", '[image]\nbase = "python:3.11-slim"\n'))
    ws = discover(setup.ws.root)
    # The lock still says kiln's OS base: stale.
    with pytest.raises(ConfigError, match=r"stale"):
        prepare(ws, setup.services)
    write_fake_lock(ws, ws.image("base"))
    (inputs,) = prepare(ws, setup.services).images
    assert inputs.base == f"python@{BASE_DIGEST}"


# ---------------------------------------------------------------- the committed lock
def test_the_wheelhouse_is_exactly_the_lock(setup: Setup) -> None:
    setup.release()
    (download,) = [c for c in setup.pip.calls if "download" in c]
    assert download[download.index("--index-url") + 1] == "https://upstream.invalid/simple"
    assert "--require-hashes" in download
    (image,) = setup.release().manifest.images
    assert setup.registry.digest("acme/base", "0.1.0") == image.digest


def test_a_second_clean_clone_fetches_from_the_private_index_only(setup: Setup) -> None:
    setup.release()
    shutil.rmtree(setup.ws.state_dir)  # a fresh clone: no cache
    setup.upstream.published.clear()  # upstream gone: the mirror must suffice
    setup.pip.calls.clear()

    outcome = setup.release()

    (download,) = setup.pip.calls
    assert download[download.index("--index-url") + 1] == "http://index.invalid/simple/"
    assert outcome.plan.up_to_date


def test_a_stale_lock_stops_the_release_before_anything_is_built(setup: Setup) -> None:
    config = setup.ws.image("base").path / "image.toml"
    config.write_text(config.read_text().replace("requirements = []", 'requirements = ["six"]'))
    ws = discover(setup.ws.root)

    with pytest.raises(ConfigError) as err:
        prepare(ws, setup.services)

    assert "images/base/requirements.lock: stale" in str(err.value)
    assert "run `kiln lock base`" in str(err.value)
    assert not (ws.state_dir / "staging").exists()  # no wheel was built
    assert setup.pip.calls == []


def test_a_missing_lock_names_the_command(setup: Setup) -> None:
    (setup.ws.image("base").path / "requirements.lock").unlink()
    with pytest.raises(ConfigError, match=r"requirements.lock: missing.*`kiln lock base`"):
        setup.release()


def test_a_hand_edited_hash_is_refused_before_anything_is_published(setup: Setup) -> None:
    setup.release()
    before = (json.dumps(setup.index.published, sort_keys=True), dict(setup.registry.tags))
    lock = setup.ws.image("base").path / "requirements.lock"
    lock.write_text(lock.read_text().replace(fake_sha("numpy", "1.0"), "0" * 64))

    with pytest.raises(ConfigError) as err:
        setup.release()

    assert f"{lock}: numpy==1.0: http://index.invalid/simple/ serves" in str(err.value)
    assert "`kiln lock base --upgrade numpy`" in str(err.value)
    assert (json.dumps(setup.index.published, sort_keys=True), setup.registry.tags) == before


@pytest.fixture
def kiln_built(setup: Setup) -> Setup:
    """The sample repo with one [image.env] value in its image."""
    toml = setup.ws.image("base").path / "image.toml"
    toml.write_text(toml.read_text() + '[image.env]\nMPLBACKEND = "Agg"\n')
    setup.ws = discover(setup.ws.root)
    return setup


def test_a_kiln_built_image_is_pinned_before_the_push_and_pushed_as_planned(
    kiln_built: Setup,
) -> None:
    setup = kiln_built
    plan = make_plan(setup.ws, prepare(setup.ws, setup.services), setup.services)
    (image,) = plan.images
    assert image.action is Action.BUILD
    assert image.digest is not None
    assert image.digest.startswith("sha256:")
    assert {c.digest for c in plan.components} == {image.digest}  # known before any push
    assert setup.registry.tags == {}

    outcome = setup.release()

    assert setup.oci is not None
    assert setup.oci.pushes == ["registry.invalid:5000/acme/base:0.1.0"]
    assert setup.registry.digest("acme/base", "0.1.0") == image.digest
    assert outcome.pushed == [f"registry.invalid:5000/acme/base:0.1.0@{image.digest}"]
    yaml = (setup.ws.component_dir / "double.yaml").read_text()
    assert f"image: registry.invalid:5000/acme/base@{image.digest}" in yaml


def test_an_image_to_push_with_no_engine_stops_before_anything_is_published(
    kiln_built: Setup,
) -> None:
    setup = kiln_built
    assert setup.oci is not None

    def no_engine(index_repository: str | None = None) -> None:
        raise ServiceUnavailable("Docker Engine is not reachable at unix:///nowhere")

    setup.oci.preflight = no_engine  # type: ignore[method-assign]
    with pytest.raises(ServiceUnavailable, match="not reachable"):
        setup.release()
    assert setup.index.uploads == []
    assert setup.registry.tags == {}


def test_a_kiln_built_image_is_skipped_by_digest_and_refused_when_it_changes(
    kiln_built: Setup,
) -> None:
    setup = kiln_built
    first = setup.release()
    assert setup.oci is not None

    second = setup.release()
    assert second.plan.up_to_date
    assert second.pushed == []
    assert len(setup.oci.pushes) == 1
    assert second.manifest.images[0].ref == first.manifest.images[0].ref

    toml = setup.ws.image("base").path / "image.toml"
    toml.write_text(toml.read_text().replace('"Agg"', '"svg"'))
    setup.ws = discover(setup.ws.root)
    before = dict(setup.registry.tags)
    with pytest.raises(PublishedConflict) as err:
        setup.release()
    message = str(err.value)
    assert f"acme/base:0.1.0 is already pushed as {first.manifest.images[0].digest}" in message
    assert "bump version in images/base/image.toml" in message
    assert setup.registry.tags == before


def test_a_registry_storing_another_digest_stops_before_any_yaml(kiln_built: Setup) -> None:
    setup = kiln_built
    assert setup.oci is not None
    setup.oci.rewrite = "sha256:" + "0" * 64
    with pytest.raises(CommandFailed, match=r"but the plan pinned sha256:"):
        setup.release()
    assert not setup.ws.component_dir.exists()


def test_a_kiln_built_image_without_kiln_s_builder_is_named(kiln_built: Setup) -> None:
    setup = kiln_built
    services = dataclasses.replace(setup.services, oci=None)
    with pytest.raises(ConfigError, match=r"images/base: this command runs without kiln's"):
        prepare(setup.ws, services)


def test_an_upload_raced_by_another_run_of_the_same_release_still_succeeds(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of one release at once: the second one's upload is refused for a file the
    first one published meanwhile, with the same bytes. That file counts as published;
    what is still missing is uploaded."""
    real_upload = setup.index.upload
    calls: list[list[str]] = []

    def raced(paths: Sequence[Path]) -> None:
        calls.append([p.name for p in paths])
        if len(calls) == 1:
            real_upload(paths[:1])  # the other run got there first
            raise CommandFailed("twine upload: 409 Conflict")
        real_upload(paths)

    monkeypatch.setattr(setup.index, "upload", raced)
    outcome = setup.release()
    assert len(calls) == 2
    assert calls[1] == calls[0][1:]  # only what was still missing, once more
    assert sorted(outcome.uploaded) == sorted(calls[0])
    assert sorted(setup.index.uploads) == sorted(calls[0])  # each file once


def test_an_upload_raced_again_on_every_retry_still_publishes_each_file_once(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of one job at once, the other one always a file ahead: each upload is
    refused (409) for the file it published meanwhile. Each round uploads fewer files,
    and the release succeeds with each file uploaded once (by the other run)."""
    real_upload = setup.index.upload
    calls: list[list[str]] = []

    def raced(paths: Sequence[Path]) -> None:
        calls.append([p.name for p in paths])
        real_upload(paths[:1])  # the other run got there first, every time
        raise CommandFailed("twine upload: 409 Conflict")

    monkeypatch.setattr(setup.index, "upload", raced)
    outcome = setup.release()
    assert len(calls[0]) >= 2
    assert calls == [calls[0][n:] for n in range(len(calls[0]))]
    assert sorted(outcome.uploaded) == sorted(calls[0])
    assert sorted(setup.index.uploads) == sorted(calls[0])  # each file once


def test_an_upload_raced_by_other_bytes_names_the_file(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another release published other bytes under a file's name meanwhile: the error
    names it and both sha256s, and nothing is pushed."""
    taken: list[str] = []

    def raced(paths: Sequence[Path]) -> None:
        name = paths[0].name
        project = str(parse_wheel_filename(name)[0])
        setup.index.published.setdefault(project, {})[name] = "f" * 64
        taken.append(name)
        raise CommandFailed("twine upload: 409 Conflict")

    monkeypatch.setattr(setup.index, "upload", raced)
    with pytest.raises(CommandFailed, match=r"lists \S+ with sha256 f{64}, expected") as err:
        setup.release()
    assert taken[0] in str(err.value)
    assert "bump the version" in str(err.value)
    assert setup.registry.tags == {}


def test_an_upload_that_failed_with_nothing_published_is_the_error(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(paths: Sequence[Path]) -> None:
        raise CommandFailed("twine upload: connection reset")

    monkeypatch.setattr(setup.index, "upload", refused)
    with pytest.raises(CommandFailed, match="connection reset"):
        setup.release()
    assert setup.registry.tags == {}  # nothing pushed after a failed publish


def test_prepare_takes_the_wheels_an_earlier_prepare_built(setup: Setup) -> None:
    """kiln check prepared twice, building and hashing every wheel each time (N=500: 2.3 s
    of its 21 s profiled run): the images' prepare now takes the first one's wheels."""
    first = prepare(setup.ws, setup.services, images=False)
    staged = {p.name: p.stat().st_mtime_ns for p in first.wheels[0].path.parent.iterdir()}
    full = prepare(setup.ws, setup.services, wheels=first.wheels)
    assert full.wheels is first.wheels
    assert {p.name: p.stat().st_mtime_ns for p in first.wheels[0].path.parent.iterdir()} == staged
    assert [h.helpers for h in full.wheelhouses.values()] == [first.wheels]
    assert prepare(setup.ws, setup.services, images=False).wheels is not first.wheels


def test_a_wheel_already_in_dist_with_its_bytes_is_not_copied_again(setup: Setup) -> None:
    """A no-op release copied every helper wheel into dist/wheels again (500 at N=500)."""
    setup.release()
    (wheel,) = (setup.ws.dist_dir / "wheels").glob("acme_imgproc-*.whl")
    before = wheel.stat()
    setup.release()
    after = wheel.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    good = wheel.read_bytes()
    wheel.write_bytes(b"not the wheel")  # damaged in dist: copied whole again
    setup.release()
    assert wheel.read_bytes() == good


def test_the_drift_check_rewrites_only_what_changed_in_its_scratch_folder(
    setup: Setup,
) -> None:
    """kiln check wrote every component YAML into an emptied scratch folder each time
    (1004 at N=500); the folder is kept, and a component that is gone is still named."""
    setup.release()
    report = Reporter.null()
    assert component_drift(setup.ws, setup.services, report, wheel_cache=True) == []
    scratch = setup.ws.state_dir / "check" / "components"
    stamps = {p.name: p.stat().st_mtime_ns for p in scratch.glob("*.yaml")}
    assert stamps
    assert component_drift(setup.ws, setup.services, report, wheel_cache=True) == []
    assert {p.name: p.stat().st_mtime_ns for p in scratch.glob("*.yaml")} == stamps

    added = factory.component(setup.ws.root, "more.py", image_name="base", func="triple")
    setup.ws = discover(setup.ws.root)
    drifts = component_drift(setup.ws, setup.services, report, wheel_cache=True)
    assert sorted((d.name, d.state) for d in drifts) == [
        ("README.md", "changed"),  # the catalog lists it
        ("catalog.html", "changed"),
        ("triple.yaml", "missing"),
    ]
    assert (scratch / "triple.yaml").is_file()
    added.unlink()  # gone again: its YAML leaves the kept folder
    setup.ws = discover(setup.ws.root)
    assert component_drift(setup.ws, setup.services, report, wheel_cache=True) == []
    assert not (scratch / "triple.yaml").exists()
