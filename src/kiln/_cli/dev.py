"""`kiln release --dev`: changed helpers as X.Y.Z.devN, their images as dev-<sha>, dev YAMLs
and a dev bundle, in seconds; stable versions and tags are never touched.

The release runs on a copy of the repository (``kiln._release.dev``) whose helper and
image versions are the dev ones; its YAMLs, compiled pipelines and manifest are copied
to ``dist/dev/`` (`kiln run --dev` runs them). The index and registry checks are the
usual ones: a dev version already published with other bytes is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename
from packaging.version import Version

from kiln._cli import common
from kiln._errors import PublishedConflict


def release_dev(args: argparse.Namespace) -> int:
    from kiln._release.bundle import build_bundle, bundle_name  # noqa: PLC0415
    from kiln._release.dev import copy_tree, dev_plan, dev_stamp  # noqa: PLC0415
    from kiln._release.stages import check_refusals, execute, make_plan, prepare  # noqa: PLC0415
    from kiln._release.train import released_versions  # noqa: PLC0415
    from kiln._workspace.bump import apply_bump  # noqa: PLC0415
    from kiln._workspace.discovery import discover  # noqa: PLC0415

    ws = common.workspace(args)
    report, options = common.report_of(args), common.options_of(args)
    services = common.services(args, ws)
    stamp = dev_stamp(ws.root)
    # Which helpers the index does not have as they are now: those get dev versions.
    wheels = prepare(ws, services, images=False, wheel_cache=options.wheel_cache).wheels
    changed, published = set(), {}
    for w in wheels:
        there = services.index.files(w.distribution)
        published[w.helper] = {str(parse_wheel_filename(f)[1]) for f in there if f.endswith(".whl")}
        if there.get(w.filename) != w.sha256:
            changed.add(w.helper)
    plan = dev_plan(ws, changed, published, stamp.number)
    moved = {c.name: c.new_version for c in plan.changes}
    report.stage(
        "dev",
        f"dev {stamp.number} ({stamp.image_tag}): "
        + (", ".join(f"{n} {v}" for n, v in sorted(moved.items())) or "nothing changed"),
    )
    with tempfile.TemporaryDirectory(prefix="kiln-dev-") as tmp:
        root = copy_tree(ws, Path(tmp))
        apply_bump(dataclasses.replace(plan, root=root))
        dev_ws = discover(root)
        prepared = prepare(
            dev_ws, services, wheel_cache=options.wheel_cache,
            report=report,
        )  # fmt: skip
        images = [c.name for c in plan.changes if c.kind == "image"]
        prepared = dataclasses.replace(
            prepared,
            images=tuple(
                dataclasses.replace(i, tag=stamp.image_tag) if i.image.name in images else i
                for i in prepared.images
            ),
        )
        release_plan = make_plan(dev_ws, prepared, services)
        check_refusals(release_plan)
        version = _bundle_version(released_versions(services.index.files(bundle_name(ws.org))))
        dev_version = f"{version}.dev{stamp.number}"
        outcome = execute(
            dev_ws, prepared, release_plan, services, release_version=dev_version, report=report
        )
        target = ws.dist_dir / "dev"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(dev_ws.component_dir, target / "components")
        if (dev_ws.dist_dir / "pipelines").is_dir():
            shutil.copytree(dev_ws.dist_dir / "pipelines", target / "pipelines")
        shutil.copy2(outcome.manifest_path, target / "manifest.json")
        wheel = build_bundle(
            target / "bundle", org=ws.org, version=dev_version,
            yamls=sorted(dev_ws.component_dir.glob("*.yaml")), record={},
        )  # fmt: skip
        bundle = _publish_bundle(services, wheel, bundle_name(ws.org), report)
    uploaded = outcome.uploaded + bundle[1]
    result = {
        "dev": stamp.number,
        "image_tag": stamp.image_tag,
        "helpers": moved,
        "uploaded": uploaded,
        "pushed": outcome.pushed,
        "bundle": bundle[0],
        "components": str(target / "components"),
    }
    text = (
        f"dev {dev_version}: uploaded {len(uploaded)} file(s), pushed "
        f"{len(outcome.pushed)} image(s); YAMLs in {target / 'components'} "
        f"(`kiln run --dev PIPELINE`)"
    )
    common.emit(args, result, text)
    return 0


def _bundle_version(released: list[Version]) -> str:
    """The stable version the dev bundle leads to: the last release's next patch."""
    stable = [v for v in released if not v.is_devrelease]
    if not stable:
        return "0.1.0"
    major, minor, patch = (*stable[-1].release, 0, 0)[:3]
    return f"{major}.{minor}.{patch + 1}"


def _publish_bundle(services: Any, wheel: Any, name: str, report: Any) -> tuple[str, list[str]]:
    """Upload the dev bundle unless the index has it (identical: skipped)."""
    there = services.index.files(name).get(wheel.filename)
    if there == wheel.sha256:
        return wheel.filename, []
    if there is not None:
        raise PublishedConflict(
            f"{wheel.filename} is already published with other bytes: commit, or run again "
            "(an uncommitted tree gets a new dev number each second)"
        )
    from kiln._release.stages import upload_checked  # noqa: PLC0415

    report.stage("bundle", f"bundle: uploading {wheel.filename}")
    upload_checked(services.index, [(name, wheel.path, wheel.sha256)], report=report)
    return wheel.filename, [wheel.filename]
