"""`kiln check`: what must be bumped, relocked or restored, each with the command."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from kiln._debian.lock import render
from kiln._release.check import ALTERED, BUMP, RELOCK, TODO, Finding, Report, check
from kiln._release.check_artifacts import (
    image_findings,
    recorded_images,
    wheel_findings,
    yaml_pins,
)
from kiln._release.manifest import recorded_wheels
from kiln._release.prepare import kfp_version, prepare
from kiln._workspace.discovery import discover
from tests.unit.fakes import OS_LAYER, Setup, blob_of, release_setup, write_fake_os_lock

WHEEL = "acme_imgproc-0.1.0-py3-none-any.whl"


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return release_setup(tmp_path)


def run_check(setup: Setup) -> Report:
    prepared = prepare(setup.ws, setup.services, images=False)
    return check(
        setup.ws,
        prepared.wheels,
        index=setup.index,
        registry=setup.registry,
        kfp_version=kfp_version(),
        recorded=recorded_wheels(setup.ws.dist_dir / "manifest.json", setup.index.url),
    )


def kinds(report: Report) -> list[tuple[str, str, str]]:
    return [(f.kind, f.subject, f.fix) for f in report.findings]


def test_before_the_first_release_everything_is_to_publish(setup: Setup) -> None:
    report = run_check(setup)
    assert kinds(report) == [
        (TODO, "imgproc", "kiln release"),
        (TODO, "base", "kiln release"),
    ]
    assert report.exit_code == 0


def test_after_a_release_there_is_nothing_to_do(setup: Setup) -> None:
    setup.release()
    report = run_check(setup)
    assert report.findings == ()
    assert report.exit_code == 0
    assert report.to_dict()["checked"] == {"helpers": 1, "images": 1}


def test_a_changed_helper_names_the_bump_once_for_it_and_its_images(setup: Setup) -> None:
    setup.release()
    source = setup.ws.helper("imgproc").path / "src" / "imgproc" / "__init__.py"
    source.write_text("def answer() -> int:\n    return 43\n")

    report = run_check(setup)

    ((kind, subject, fix),) = kinds(report)
    assert (kind, subject, fix) == (BUMP, "imgproc", "kiln bump imgproc patch")
    (finding,) = report.findings
    assert finding.path == "helpers/imgproc/pyproject.toml"
    assert "helpers/imgproc changed since acme-imgproc 0.1.0 was published" in finding.message
    assert report.exit_code == 4


def test_an_altered_index_is_not_a_bump(setup: Setup) -> None:
    setup.release()
    setup.index.published["acme-imgproc"][WHEEL] = "f" * 64
    report = run_check(setup)
    assert kinds(report) == [
        (ALTERED, "imgproc", f"delete {WHEEL} from the index, then `kiln release`; do not bump")
    ]
    assert report.exit_code == 8


def test_a_stale_lock_is_named_with_kiln_lock(setup: Setup) -> None:
    setup.release()
    config = setup.ws.image("base").path / "image.toml"
    config.write_text(config.read_text().replace("requirements = []", 'requirements = ["six"]'))
    setup.ws = discover(setup.ws.root)
    report = run_check(setup)
    assert kinds(report) == [(RELOCK, "base", "kiln lock base")]
    assert "requirements.lock: stale" in report.findings[0].message
    assert report.exit_code == 3


def test_a_bumped_helper_in_an_unbumped_image_asks_for_the_image_bump(setup: Setup) -> None:
    setup.release()
    pyproject = setup.ws.helper("imgproc").path / "pyproject.toml"
    pyproject.write_text(re.sub(r'version = "0.1.0"', 'version = "0.1.1"', pyproject.read_text()))
    setup.ws = discover(setup.ws.root)
    report = run_check(setup)
    assert kinds(report) == [
        (TODO, "imgproc", "kiln release"),
        (BUMP, "base", "kiln bump base patch"),
    ]
    message = report.findings[1].message
    assert "acme/base:0.1.0 was pushed from other inputs" in message
    assert "helpers: pushed acme-imgproc==0.1.0, now acme-imgproc==0.1.1" in message


def test_a_moved_os_lock_names_the_bump_of_every_image_on_it(setup: Setup) -> None:
    setup.release()
    before = write_fake_os_lock(setup.ws)  # the lock the release built on, again
    assert before.os.layer == OS_LAYER
    moved = dataclasses.replace(
        before.os, layer=dataclasses.replace(OS_LAYER, digest="sha256:" + "9" * 64)
    )
    before.path.write_text(render(dataclasses.replace(before, os=moved)))
    report = run_check(setup)
    assert kinds(report) == [(BUMP, "base", "kiln bump base patch")]
    (finding,) = report.findings
    assert finding.message == (
        "acme/base:0.1.0 was pushed from other inputs (its OS layers (images/os.lock): "
        f"pushed {OS_LAYER.digest}, now sha256:{'9' * 64})"
    )
    assert report.exit_code == 4


def test_a_stale_os_lock_names_kiln_lock(setup: Setup) -> None:
    setup.release()
    pyproject = setup.ws.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + '\n[tool.kiln.os]\nsuite = "trixie"\n')
    setup.ws = discover(setup.ws.root)
    report = run_check(setup)
    assert (RELOCK, "os", "kiln lock") in kinds(report)
    (finding,) = [f for f in report.findings if f.subject == "os"]
    assert finding.path == "images/os.lock"
    assert "stale: [tool.kiln.os] or an image's os-packages changed" in finding.message


def artifact_findings(setup: Setup) -> list[Finding]:
    """What `kiln check` adds from what the published artifacts contain."""
    manifest = setup.ws.dist_dir / "manifest.json"
    recorded = recorded_wheels(manifest, setup.index.url)
    built = [w.filename for w in prepare(setup.ws, setup.services, images=False).wheels]
    host = setup.registry.host
    return [
        *wheel_findings(setup.index, recorded, built),
        *image_findings(
            setup.ws,
            setup.registry,
            recorded_images(manifest, host),
            yaml_pins(setup.ws.component_dir, host),
        ),
    ]


def test_after_a_release_the_artifacts_hold_what_was_recorded(setup: Setup) -> None:
    setup.release()
    assert yaml_pins(setup.ws.component_dir, setup.registry.host) == {
        "acme/base": {setup.registry.tags[("acme/base", "0.1.0")][0]}
    }
    assert artifact_findings(setup) == []


def test_a_tag_moved_in_the_registry_is_altered_not_up_to_date(setup: Setup) -> None:
    setup.release()
    pushed, labels = setup.registry.tags[("acme/base", "0.1.0")]
    setup.registry.tags[("acme/base", "0.1.0")] = ("sha256:" + "e" * 64, labels)
    (finding,) = artifact_findings(setup)
    assert finding.kind == ALTERED
    assert finding.path == "images/base/image.toml"
    assert f"points at sha256:{'e' * 64}, but the last release pushed it as {pushed}" in (
        finding.message
    )
    assert finding.fix.endswith("then `kiln check`; do not bump")


def test_an_image_whose_registry_lost_a_layer_cannot_be_pulled(setup: Setup) -> None:
    setup.release()
    digest = setup.registry.tags[("acme/base", "0.1.0")][0]
    setup.registry.lost.add(blob_of(digest, "layer"))
    (finding,) = artifact_findings(setup)
    assert finding.kind == ALTERED
    assert f"acme/base@{digest} (its tag points at it) cannot be pulled" in finding.message
    assert f"the registry lacks {blob_of(digest, 'layer')}" in finding.message


def test_an_older_wheel_the_last_release_recorded_is_compared_too(setup: Setup) -> None:
    setup.release()
    manifest = setup.ws.dist_dir / "manifest.json"
    data = json.loads(manifest.read_text())
    old = "acme_imgproc-0.0.9-py3-none-any.whl"
    data["wheels"].append({**data["wheels"][0], "filename": old, "sha256": "a" * 64})
    manifest.write_text(json.dumps(data))
    setup.index.published["acme-imgproc"][old] = "b" * 64
    (finding,) = artifact_findings(setup)
    assert (finding.kind, finding.subject) == (ALTERED, "acme-imgproc")
    assert f"the index serves {old} with sha256 bbbbbbbbbbbb..., but kiln published" in (
        finding.message
    )


def test_an_altered_index_without_a_manifest_is_a_bump_that_says_it_may_be_altered(
    setup: Setup,
) -> None:
    """dist/ is not committed: in a fresh clone kiln cannot tell an altered index file from
    a changed helper (exit 4), and its finding says so instead of only `bump`."""
    setup.release()
    (setup.ws.dist_dir / "manifest.json").unlink()
    setup.index.published["acme-imgproc"][WHEEL] = "f" * 64
    report = run_check(setup)
    assert kinds(report) == [(BUMP, "imgproc", "kiln bump imgproc patch")]
    message = report.findings[0].message
    assert "no record of the bytes it published (dist/manifest.json)" in message
    assert "if helpers/imgproc did not change since" in message
