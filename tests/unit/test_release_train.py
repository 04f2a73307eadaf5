"""The release train's rules and record, without servers: tags, versions, release notes,
and the components bundle's loader (built with the pinned hatchling, loaded with kfp)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from kiln._components.generate import generate_component
from kiln._errors import ConfigError, PublishedConflict
from kiln._release.bundle import build_bundle, publish_bundle
from kiln._release.dev import dev_plan, dev_stamp
from kiln._release.train import (
    Snapshot,
    check_history,
    check_train,
    check_tree,
    component_pins,
    previous_tag,
    release_notes,
    released_versions,
    snapshot,
    tag_version,
)
from kiln._report import Reporter
from kiln._workspace.bump import plan_bump
from kiln._workspace.discovery import discover
from kiln._workspace.model import Component
from tests import factory
from tests.unit.fakes import FakeIndex

GIT = ["git", "-c", "user.name=k", "-c", "user.email=k@example.invalid"]


def git(root: Path, *args: str) -> None:
    subprocess.run([*GIT, "-C", str(root), *args], check=True, capture_output=True)


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("0.3.0", r"a release tag is v<version>"),
        ("v0.3.0.dev1", r"no .dev or \+local part"),
        ("vfoo", r"is not a PEP 440 version"),
        ("v1.0+local", r"no .dev or \+local part"),
    ],
)
def test_a_release_tag_is_v_and_a_pep_440_release(tag: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tag_version(tag)
    assert tag_version("v0.3.0") == Version("0.3.0")


def test_the_train_only_moves_forward() -> None:
    released = released_versions(
        ["acme_components-0.1.0-py3-none-any.whl", "acme_components-0.2.0.dev7-py3-none-any.whl"]
    )
    assert released == [Version("0.1.0"), Version("0.2.0.dev7")]
    assert check_train(Version("0.2.0"), released, "acme-components") is False  # new
    assert check_train(Version("0.1.0"), released, "acme-components") is True  # a re-run
    with pytest.raises(PublishedConflict, match=r"below the last released version 0.1.0"):
        check_train(Version("0.0.9"), released, "acme-components")


def test_notes_need_the_previous_release_tag_when_the_index_has_that_release() -> None:
    released = [Version("0.1.0"), Version("0.2.0.dev3")]
    check_history(Version("0.2.0"), released, "v0.1.0")
    check_history(Version("0.1.0"), released, None)  # the first release, or its re-run
    check_history(Version("0.1.0"), [Version("0.1.0.dev1")], None)  # dev releases do not count
    # A checkout of the tag alone (actions/checkout's default): no tag below it.
    with pytest.raises(
        ConfigError,
        match=r"release 0\.1\.0 is on the index.*no release tag "
        r"below v0\.2\.0.*fetch-depth: 0",
    ):
        check_history(Version("0.2.0"), released, None)


def test_the_tree_must_be_clean_and_the_tag_on_head(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    factory.write(root / "a.txt", "1\n")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    with pytest.raises(ConfigError, match=r"no tag v0.1.0 .* `git tag v0.1.0`"):
        check_tree(root, "v0.1.0")
    git(root, "tag", "v0.1.0")
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert check_tree(root, "v0.1.0") == head
    (root / "a.txt").write_text("2\n")
    with pytest.raises(ConfigError, match=r"(?s)the working tree has changes.*M a.txt"):
        check_tree(root, "v0.1.0")
    git(root, "commit", "-qam", "two")
    with pytest.raises(ConfigError, match=r"tag v0.1.0 points at .*, not HEAD"):
        check_tree(root, "v0.1.0")
    git(root, "tag", "v0.2.0")
    git(root, "tag", "not-a-version")
    assert previous_tag(root, Version("0.2.0")) == "v0.1.0"
    assert previous_tag(root, Version("0.1.0")) is None


YAML = """\
deploymentSpec:
  executors:
    exec-x:
      container:
        image: {image}
        command:
        - sh
        - -c
        - "pip install '--no-deps' 'acme-imgproc @ http://i/packages/{wheel}#sha256={sha}' && x"
"""


def test_release_notes_list_exactly_what_changed_since_the_previous_tag(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    factory.workspace(root)
    factory.helper(root, "imgproc", version="0.1.0")
    factory.helper(root, "tabular", version="0.3.0")
    factory.image(root, "base", helpers=("imgproc",), version="1.0.0")
    generated = root / "pipelines" / "components" / "generated"
    factory.write(
        generated / "light.yaml",
        YAML.format(image="py", wheel="acme_imgproc-0.1.0-py3-none-any.whl", sha="a" * 64),
    )
    factory.write(
        generated / "heavy.yaml",
        YAML.format(
            image="r/acme/base@sha256:" + "1" * 64,
            wheel="acme_imgproc-0.1.0-py3-none-any.whl",
            sha="a" * 64,
        ),
    )
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    git(root, "tag", "v0.1.0")
    factory.helper(root, "imgproc", version="0.1.1")
    factory.image(root, "base", helpers=("imgproc",), version="1.0.1")
    factory.write(
        generated / "light.yaml",
        YAML.format(image="py", wheel="acme_imgproc-0.1.1-py3-none-any.whl", sha="b" * 64),
    )
    factory.write(
        generated / "heavy.yaml",
        YAML.format(
            image="r/acme/base@sha256:" + "2" * 64,
            wheel="acme_imgproc-0.1.0-py3-none-any.whl",
            sha="a" * 64,
        ),
    )
    label = "pipelines/components/generated"
    old, new = snapshot(root, "v0.1.0", label), snapshot(root, None, label)
    assert new.components["light"] == ("py", "acme-imgproc==0.1.1")
    notes = release_notes(Version("0.2.0"), "v0.2.0", "v0.1.0", old, new)
    assert "Changes since v0.1.0:" in notes
    assert "- `acme-imgproc`: `0.1.0` -> `0.1.1`" in notes
    assert "acme-tabular" not in notes  # unchanged
    assert "- `base`: `1.0.0 (sha256:111111111111...)` -> `1.0.1 (sha256:222222222222...)`" in notes
    assert "- `light`: `py`, `acme-imgproc==0.1.0` -> `py`, `acme-imgproc==0.1.1`" in notes
    first = release_notes(Version("0.1.0"), "v0.1.0", None, Snapshot({}, {}, {}), old)
    assert "(the first release)" in first
    assert "- `acme-tabular`: new, `0.3.0`" in first


def test_component_pins_read_the_image_and_each_hash_pinned_package() -> None:
    text = YAML.format(
        image="py@sha256:" + "c" * 64, wheel="acme_imgproc-2.0.0-py3-none-any.whl", sha="d" * 64
    )
    assert component_pins(text) == ("py@sha256:" + "c" * 64, "acme-imgproc==2.0.0")


# ------------------------------------------------------------------ the bundle
@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """The bundle wheel of two tiny components, unpacked on a path of its own."""
    source = tmp_path / "yamls"
    module = factory.write(tmp_path / "maths.py", "def double(x: int) -> int:\n    return 2 * x\n")
    image = "r/acme/base@sha256:" + "1" * 64
    generate_component(Component("double", module, "base"), image, source)
    (source / "other.yaml").write_bytes((source / "double.yaml").read_bytes())
    record = {"kiln": "0", "components": {"double": {"mode": "image", "pins": [image]}}}
    first = build_bundle(
        tmp_path / "one", org="acme", version="0.1.0", yamls=sorted(source.glob("*.yaml")),
        record=record,
    )  # fmt: skip
    again = build_bundle(
        tmp_path / "two", org="acme", version="0.1.0", yamls=sorted(source.glob("*.yaml")),
        record=record,
    )  # fmt: skip
    assert first.filename == "acme_components-0.1.0-py3-none-any.whl"
    assert first.sha256 == again.sha256  # the same release, the same bytes
    site = tmp_path / "site"
    with zipfile.ZipFile(first.path) as zf:
        zf.extractall(site)
    return site


def test_the_bundle_loads_checked_components_and_names_the_known_ones(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(bundle))
    sys.modules.pop("acme_components", None)
    module = importlib.import_module("acme_components")
    assert module.VERSION == "0.1.0"
    assert module.names() == ["double", "other"]
    assert module.manifest()["components"]["double"]["mode"] == "image"
    component = module.load("double")
    assert component.name == "double"
    with pytest.raises(LookupError, match=r"no component 'triple' .*it has: double, other"):
        module.load("triple")
    yaml_file = bundle / "acme_components" / "components" / "double.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("2 * x", "3 * x"))
    with pytest.raises(ValueError, match=r"double.yaml in acme-components==0.1.0 has sha256"):
        module.load("double")
    sys.modules.pop("acme_components", None)


def test_a_bundle_is_uploaded_once_and_never_replaced(tmp_path: Path) -> None:
    wheel = build_bundle(tmp_path, org="acme", version="1.0.0", yamls=[], record={})
    index = FakeIndex()
    fix = "a published version never changes; tag a new version"
    report = Reporter.null()
    assert publish_bundle(index, "acme-components", wheel, report, fix=fix) == (wheel.filename,)
    assert index.files("acme-components") == {wheel.filename: wheel.sha256}
    assert publish_bundle(index, "acme-components", wheel, report, fix=fix) == ()  # identical
    assert index.uploads == [wheel.filename]
    index.published["acme-components"][wheel.filename] = "0" * 64  # other bytes
    with pytest.raises(PublishedConflict) as err:
        publish_bundle(index, "acme-components", wheel, report, fix=fix)
    assert str(err.value) == (
        f"{wheel.filename} is already published with other bytes (index sha256 000000000000..., "
        f"this one {wheel.sha256[:12]}...): a published version never changes; tag a new version"
    )
    assert index.uploads == [wheel.filename]


# ------------------------------------------------------------------ the dev channel
def test_dev_versions_move_changed_helpers_their_dependants_and_images(tmp_path: Path) -> None:
    root = factory.workspace(tmp_path / "repo")
    factory.helper(root, "dataquality", version="0.1.0")
    factory.helper(root, "viz", version="0.1.1", deps=("acme-dataquality==0.1.0",))
    factory.helper(root, "imgproc", version="0.2.0")
    factory.image(root, "analytics", helpers=("viz",), version="0.1.3")
    factory.image(root, "base", helpers=("imgproc",), version="0.2.2")
    ws = discover(root)
    published = {"dataquality": {"0.1.0"}, "viz": {"0.1.1"}, "imgproc": {"0.2.0"}}
    plan = dev_plan(ws, {"dataquality"}, published, 20261129103231)
    moves = {c.name: (c.old_version, c.new_version) for c in plan.changes}
    assert moves == {  # published versions: the next patch's dev; imgproc untouched
        "dataquality": ("0.1.0", "0.1.1.dev20261129103231"),
        "viz": ("0.1.1", "0.1.2.dev20261129103231"),
        "analytics": ("0.1.3", "0.1.3.dev20261129103231"),
    }
    (viz,) = [c for c in plan.changes if c.name == "viz"]
    assert [(p.distribution, p.new_version) for p in viz.pins] == [
        ("acme-dataquality", "0.1.1.dev20261129103231")
    ]
    # A version not published yet keeps its number: its dev sorts before the release.
    unreleased = dev_plan(ws, {"imgproc"}, {}, 7)
    assert {c.name: c.new_version for c in unreleased.changes} == {
        "imgproc": "0.2.0.dev7",
        "base": "0.2.2.dev7",
    }
    assert Version("0.2.0.dev7") < Version("0.2.0")


def test_a_dev_release_moves_the_files_a_bump_of_the_same_helper_moves(tmp_path: Path) -> None:
    # One cascade: the dev channel's versions differ, the helpers and images that follow do not.
    root = factory.workspace(tmp_path / "repo")
    factory.helper(root, "core", version="1.0.0")
    factory.helper(root, "io", version="0.3.0", deps=("acme-core==1.0.0",))
    factory.helper(root, "viz", version="0.1.0", deps=("acme-io==0.3.0",))
    factory.helper(root, "other", version="2.0.0")
    factory.image(root, "top", helpers=("viz",))
    factory.image(root, "mid", helpers=("io", "other"))
    factory.image(root, "alone", helpers=("other",))
    ws = discover(root)
    bumped = plan_bump(ws, "io", "patch")
    dev = dev_plan(ws, {"io"}, {"io": {"0.3.0"}}, 5)
    assert (
        sorted(c.path for c in dev.changes)
        == sorted(c.path for c in bumped.changes)
        == [
            "helpers/io/pyproject.toml",
            "helpers/viz/pyproject.toml",
            "images/mid/image.toml",
            "images/top/image.toml",
        ]
    )
    pins = {c.name: [(p.distribution, p.new_version) for p in c.pins] for c in dev.changes}
    assert pins["viz"] == [("acme-io", "0.3.1.dev5")]
    assert [(c.name, c.why) for c in dev.changes] == [
        ("io", "dev"),
        ("viz", "dev"),
        ("mid", "contains a dev helper"),
        ("top", "contains a dev helper"),
    ]


def test_the_dev_number_follows_the_commit_or_the_clock(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    factory.write(root / "a.txt", "1\n")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    subprocess.run(
        [*GIT, "-C", str(root), "commit", "-qm", "one"],
        check=True, env={**os.environ, "GIT_COMMITTER_DATE": "2026-11-29T10:00:00+00:00"},
    )  # fmt: skip
    clean = dev_stamp(root, now=0.0)
    assert (clean.number, clean.dirty) == (20261129100000, False)
    assert clean.image_tag == f"dev-{clean.sha}"
    assert dev_stamp(root, now=0.0) == clean  # the same commit: the same versions
    (root / "a.txt").write_text("2\n")
    dirty = dev_stamp(root, now=1_800_000_000.0)
    assert (dirty.number, dirty.dirty) == (20270115080000, True)
    assert dirty.image_tag == f"dev-{clean.sha}-20270115080000"
