"""`kiln release --tag vX.Y.Z`: the tagged commit, published, with its release record.

Order matters for recovery: every check that can refuse runs before anything is
published (tree, tag, train version, the previous release's tag for the notes, locks,
committed YAMLs, the plan's refusals, the bundle already on the index with other bytes).
Then the usual stages publish what is new, the components bundle goes last, and
``dist/release/`` is written. A run killed anywhere completes when run again; the same
tag again publishes nothing and says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln._cli import common
from kiln._errors import ConfigError, PublishedConflict

if TYPE_CHECKING:
    from kiln._release.plan import ReleasePlan
    from kiln._release.stages import Prepared
    from kiln._workspace.model import Workspace


def release_tag(args: argparse.Namespace) -> int:
    from kiln._cli.release import _component_drift, plan_text  # noqa: PLC0415
    from kiln._components.drift import describe  # noqa: PLC0415
    from kiln._release.bundle import build_bundle, bundle_name  # noqa: PLC0415
    from kiln._release.stages import (  # noqa: PLC0415
        check_refusals,
        execute,
        make_plan,
        prepare,
        upload_checked,
    )
    from kiln._release.train import (  # noqa: PLC0415
        Snapshot,
        check_history,
        check_train,
        check_tree,
        previous_tag,
        release_notes,
        released_versions,
        snapshot,
        tag_version,
    )

    ws = common.workspace(args)
    report, options = common.report_of(args), common.options_of(args)
    version = tag_version(args.tag)
    head = check_tree(ws.root, args.tag)
    services = common.services(args, ws)
    bundle = bundle_name(ws.org)
    released = released_versions(services.index.files(bundle))
    rerun = check_train(version, released, bundle)
    previous = previous_tag(ws.root, version)
    check_history(version, released, previous)
    report.stage("train", f"release {version} ({args.tag} at {head[:12]})")
    prepared = prepare(
        ws, services, wheel_cache=options.wheel_cache,
        report=report,
    )  # fmt: skip
    plan = make_plan(ws, prepared, services)
    label = str(ws.component_dir.relative_to(ws.root))
    drifts = _component_drift(args, ws, services, prepared)
    if drifts:
        raise ConfigError(
            f"{label}: the tagged commit's component YAMLs are stale ({len(drifts)} file(s)), "
            "so they are not what this release would publish: run `kiln components --local` and "
            f"`kiln check`, commit, and tag again\n" + describe(drifts, label=label)
        )
    check_refusals(plan)
    for line in plan_text(plan).splitlines():
        report.detail(line)

    yamls = sorted(ws.component_dir.glob("*.yaml"))
    record = _bundle_record(ws, prepared, plan, head)
    staging = ws.state_dir / "release" / "bundle"
    shutil.rmtree(staging, ignore_errors=True)
    wheel = build_bundle(staging, org=ws.org, version=str(version), yamls=yamls, record=record)
    there = services.index.files(bundle).get(wheel.filename)
    if there is not None and there != wheel.sha256:
        raise PublishedConflict(
            f"{bundle} {version} is already published with other bytes (index sha256 "
            f"{there[:12]}..., this release {wheel.sha256[:12]}...): a published version never "
            "changes; tag a new version"
        )
    if rerun and there is not None and plan.up_to_date:
        report.stage("train", f"release {version} is already published: nothing to do")

    outcome = execute(ws, prepared, plan, services, release_version=str(version), report=report)
    if there is None:
        report.stage("bundle", f"bundle: uploading {wheel.filename} to {services.index.url}")
        upload_checked(services.index, [(bundle, wheel.path, wheel.sha256)], report=report)
    notes = release_notes(
        version,
        args.tag,
        previous,
        snapshot(ws.root, previous, label) if previous else Snapshot({}, {}, {}),
        snapshot(ws.root, head, label),
    )
    directory = _write_record(ws, outcome.manifest_path, notes, wheel.path, label)
    uploaded = outcome.uploaded + ([wheel.filename] if there is None else [])
    result = {
        "release": str(version),
        "tag": args.tag,
        "revision": head,
        "previous": previous,
        "uploaded": uploaded,
        "pushed": outcome.pushed,
        "bundle": {"filename": wheel.filename, "sha256": wheel.sha256},
        "record": str(directory),
    }
    if not uploaded and not outcome.pushed:
        summary = f"release {version} is already published: nothing uploaded, nothing pushed"
    else:
        pushed = len(outcome.pushed)
        summary = f"release {version}: uploaded {len(uploaded)} file(s), pushed {pushed} image(s)"
    common.emit(args, result, f"{summary}\nrecord: {directory}")
    return 0


def _bundle_record(
    ws: Workspace, prepared: Prepared, plan: ReleasePlan, head: str
) -> dict[str, Any]:
    """What the bundle's manifest records besides each YAML's sha256 (all of it fixed by
    the tagged commit, so a re-run builds the same bytes)."""
    from kiln import __version__  # noqa: PLC0415
    from kiln._release.stages import kfp_version  # noqa: PLC0415
    from kiln._release.train import component_pins  # noqa: PLC0415

    components = {}
    for component in ws.components:
        path = ws.component_dir / f"{component.name}.yaml"
        components[component.name] = {
            "mode": component.mode,
            "pins": list(component_pins(path.read_text(encoding="utf-8"))),
        }
    return {
        "kiln": __version__,
        "kfp": kfp_version(),
        "revision": head,
        "components": components,
        "images": {
            s.name: {"version": s.version, "ref": f"{s.inputs.repository}@{s.digest}"}
            for s in plan.images
            if s.inputs is not None
        },
        "helpers": {
            w.distribution: {"version": w.version, "filename": w.filename, "sha256": w.sha256}
            for w in prepared.wheels
        },
    }


def _write_record(ws: Workspace, manifest: Path, notes: str, bundle: Path, label: str) -> Path:
    """``dist/release/``: the manifest, the notes, the SBOMs, the catalog, the bundle."""
    directory = ws.dist_dir / "release"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    shutil.copy2(manifest, directory / "manifest.json")
    (directory / "RELEASE_NOTES.md").write_text(notes, encoding="utf-8")
    sboms = ws.dist_dir / "sbom"
    if sboms.is_dir():
        shutil.copytree(sboms, directory / "sbom")
    for name in ("README.md", "catalog.html"):
        found = ws.root / label / name
        if found.is_file():
            shutil.copy2(found, directory / ("catalog.md" if name == "README.md" else name))
    shutil.copy2(bundle, directory / bundle.name)
    data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    (directory / "manifest.json").write_text(
        json.dumps({**data, "bundle": bundle.name}, indent=2) + "\n", encoding="utf-8"
    )
    return directory
