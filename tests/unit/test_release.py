"""The whole release against in-memory fakes: the plan, the stages, recovery."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiln._discovery import discover
from kiln._errors import CommandFailed, PublishedConflict
from kiln._model import Workspace
from kiln._plan import Action
from kiln._release import Outcome, Services, execute, make_plan, prepare
from tests import factory
from tests.unit.fakes import FakeBuilder, FakeIndex, FakePip, FakeRegistry


@dataclass
class Setup:
    ws: Workspace
    index: FakeIndex
    registry: FakeRegistry
    builder: FakeBuilder
    pip: FakePip

    @property
    def services(self) -> Services:
        return Services(self.index, self.registry, self.builder, self.pip)

    def release(self) -> Outcome:
        quiet = lambda _m: None  # noqa: E731
        prepared = prepare(self.ws, self.services, say=quiet)
        plan = make_plan(self.ws, prepared, self.services)
        return execute(self.ws, prepared, plan, self.services, say=quiet)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    registry = FakeRegistry()
    return Setup(
        discover(factory.sample(tmp_path / "repo")),
        FakeIndex(),
        registry,
        FakeBuilder(registry),
        FakePip(),
    )


def test_first_release_publishes_bakes_and_pins(setup: Setup) -> None:
    outcome = setup.release()

    assert setup.index.uploads[0] == "acme_imgproc-0.1.0-py3-none-any.whl"
    assert sorted(setup.index.uploads[1:]) == [
        "kfp-2.17.3-py3-none-any.whl",
        "numpy-1.0-py3-none-any.whl",
    ]
    assert setup.builder.pushes == ["registry.invalid:5000/acme/base:0.1.0"]
    image = outcome.manifest["images"][0]
    digest = setup.registry.tags[("acme/base", "0.1.0")][0]
    assert image["ref"] == f"registry.invalid:5000/acme/base@{digest}"
    assert image["status"] == "pushed"
    assert image["helpers"] == ["acme-imgproc==0.1.0"]

    yaml = (setup.ws.dist_dir / "components" / "double.yaml").read_text()
    assert f"image: registry.invalid:5000/acme/base@{digest}" in yaml
    assert "pip install" not in yaml  # kfp is baked in: nothing installed at start
    assert (setup.ws.dist_dir / "pipelines" / "demo.yaml").is_file()

    on_disk = json.loads(outcome.manifest_path.read_text())
    assert on_disk == outcome.manifest
    wheel = on_disk["wheels"][0]
    assert wheel["status"] == "published"
    assert wheel["sha256"] == setup.index.published["acme-imgproc"][wheel["filename"]]


def test_build_context_is_offline_and_hash_pinned(setup: Setup) -> None:
    setup.release()
    context = setup.builder.contexts[0]
    requirements = (context / "wheelhouse" / "third-party" / "requirements.txt").read_text()
    assert "kfp==2.17.3 --hash=sha256:" in requirements
    assert "numpy==1.0 --hash=sha256:" in requirements
    assert [p.name for p in (context / "wheelhouse" / "helpers").iterdir()] == [
        "acme_imgproc-0.1.0-py3-none-any.whl"
    ]
    labels = setup.builder.local["registry.invalid:5000/acme/base:0.1.0"]
    assert labels["org.kiln.helpers"] == "acme-imgproc==0.1.0"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.kiln.fingerprint"].startswith("sha256:")


def test_second_release_changes_nothing(setup: Setup) -> None:
    first = setup.release()
    uploads, pushes, pip_calls = (
        len(setup.index.uploads),
        len(setup.builder.pushes),
        len(setup.pip.calls),
    )

    second = setup.release()

    assert second.plan.up_to_date
    assert (second.uploaded, second.pushed) == ([], [])
    assert len(setup.index.uploads) == uploads
    assert len(setup.builder.pushes) == pushes
    assert len(setup.pip.calls) == pip_calls  # the wheelhouse came from the cache
    assert second.manifest["images"][0]["ref"] == first.manifest["images"][0]["ref"]
    assert second.manifest["images"][0]["status"] == "unchanged"
    assert second.manifest["wheels"][0]["status"] == "unchanged"


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
    real_push = setup.builder.push

    def broken_push(repository: str, tag: str) -> str:
        raise CommandFailed("connection reset during push")

    monkeypatch.setattr(setup.builder, "push", broken_push)
    with pytest.raises(CommandFailed):
        setup.release()
    assert setup.registry.tags == {}
    uploaded_once = list(setup.index.uploads)

    monkeypatch.setattr(setup.builder, "push", real_push)
    outcome = setup.release()

    assert setup.index.uploads == uploaded_once  # nothing uploaded twice
    assert outcome.pushed == [
        f"registry.invalid:5000/acme/base:0.1.0@{outcome.manifest['images'][0]['digest']}"
    ]
    assert {s.action for s in outcome.plan.files} == {Action.SKIP}
