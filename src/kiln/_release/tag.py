"""`kiln release --tag vX.Y.Z`: the tagged commit, published, with its release record.

Order matters for recovery: every check that can refuse runs before anything is
published (tree, tag, train version, the previous release's tag for the notes, locks,
committed YAMLs, the plan's refusals, the bundle already on the index with other bytes).
Then the usual stages publish what is new, the components bundle goes last, and
``dist/release/`` is written. A run killed anywhere completes when run again; the same
tag again publishes nothing and says so. The dry run (``plan_tag``) runs the same checks
and stops where publishing would start, with the plan.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from kiln import __version__
from kiln._components.drift import describe
from kiln._context import Context, Services, Target, connect
from kiln._errors import ConfigError
from kiln._release.bundle import (
    build_bundle,
    bundle_line,
    bundle_name,
    bundle_published,
    publish_bundle,
)
from kiln._release.components import committed_label, component_drift
from kiln._release.plan import Action, ReleasePlan, plan_text
from kiln._release.prepare import ImageSource, Prepared, kfp_version, prepare
from kiln._release.stages import Outcome, check_refusals, execute, make_plan
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
from kiln._util.files import replaced_folder
from kiln._wheels.build import BuiltWheel
from kiln._workspace.model import Workspace


@dataclass(frozen=True)
class TagRelease:
    """What `kiln release --tag` did: the release and its tag, the tagged commit, the
    previous release's tag, what was uploaded and pushed, the bundle, and the record."""

    release: str  # X.Y.Z
    tag: str
    revision: str
    previous: str | None
    uploaded: tuple[str, ...]
    pushed: tuple[str, ...]
    bundle: BuiltWheel
    record: Path  # dist/release/

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "tag": self.tag,
            "revision": self.revision,
            "previous": self.previous,
            "uploaded": list(self.uploaded),
            "pushed": list(self.pushed),
            "bundle": {"filename": self.bundle.filename, "sha256": self.bundle.sha256},
            "record": str(self.record),
        }

    @property
    def summary(self) -> str:
        if not self.uploaded and not self.pushed:
            return f"release {self.release} is already published: nothing uploaded, nothing pushed"
        return (
            f"release {self.release}: uploaded {len(self.uploaded)} file(s), pushed "
            f"{len(self.pushed)} image(s)"
        )


@dataclass(frozen=True)
class TagPlan:
    """What `kiln release --tag --dry-run` found: every check passed, and what the release
    would publish (the plan, and the bundle: ``bundle_there`` when the index has it with
    these bytes). Nothing was published and nothing written in ``dist/``."""

    release: str
    tag: str
    revision: str
    previous: str | None
    plan: ReleasePlan
    bundle: BuiltWheel
    bundle_there: bool

    def to_json(self) -> dict[str, Any]:
        action = Action.SKIP if self.bundle_there else Action.PUBLISH
        return {
            "release": self.release,
            "tag": self.tag,
            "revision": self.revision,
            "previous": self.previous,
            "plan": self.plan.to_dict(),
            "bundle": {
                "filename": self.bundle.filename,
                "sha256": self.bundle.sha256,
                "action": action.value,
            },
        }

    @property
    def text(self) -> str:
        head = (
            f"release {self.release} ({self.tag} at {self.revision[:12]}), dry run: nothing "
            "published, nothing written in dist/"
        )
        bundle = bundle_line(self.bundle.filename, there=self.bundle_there)
        return f"{head}\n{plan_text(self.plan)}\n{bundle}"


@dataclass(frozen=True)
class CheckedTag:
    """A tag release past every check: what it publishes, and what publishing needs."""

    planned: TagPlan
    services: Services
    prepared: Prepared
    label: str


def plan_tag(ws: Workspace, ctx: Context, target: Target, tag: str) -> TagPlan:
    """`kiln release --tag --dry-run`: every check of ``release_tag`` (each refuses as it
    does), then the plan; nothing is published, nothing written in ``dist/``, and a local
    stack this had to start is stopped again (``ctx.cleanup``)."""
    return _check(ws, ctx, target, tag, read_only=True).planned


def release_tag(ws: Workspace, ctx: Context, target: Target, tag: str) -> TagRelease:
    """Release the commit ``tag`` (``vX.Y.Z``) names, which must be HEAD of a clean tree."""
    checked = check_tag(ws, ctx, target, tag)
    planned, services = checked.planned, checked.services
    for line in plan_text(planned.plan).splitlines():
        ctx.report.detail(line)
    outcome = execute(
        ws, checked.prepared, planned.plan, services, release_version=planned.release,
        report=ctx.report,
    )  # fmt: skip
    return finish_tag(ws, checked, outcome, ctx.report)


def finish_tag(
    ws: Workspace, checked: CheckedTag, outcome: Outcome, report: Reporter
) -> TagRelease:
    """After the release's artifacts are published and ``outcome`` recorded them: the
    components bundle goes last, then ``dist/release/`` (the matrix's finalize step
    ends the same way)."""
    planned, services, label = checked.planned, checked.services, checked.label
    uploaded = publish_bundle(
        services.index, bundle_name(ws.org), planned.bundle, report,
        fix="a published version never changes; tag a new version",
    )  # fmt: skip
    previous, head = planned.previous, planned.revision
    notes = release_notes(
        Version(planned.release),
        planned.tag,
        previous,
        snapshot(ws.root, previous, label) if previous else Snapshot({}, {}, {}),
        snapshot(ws.root, head, label),
    )
    directory = _write_record(ws, outcome.manifest_path, notes, planned.bundle.path, label)
    return TagRelease(
        release=planned.release,
        tag=planned.tag,
        revision=head,
        previous=previous,
        uploaded=(*outcome.uploaded, *uploaded),
        pushed=tuple(outcome.pushed),
        bundle=planned.bundle,
        record=directory,
    )


def check_tag(
    ws: Workspace,
    ctx: Context,
    target: Target,
    tag: str,
    services: Services | None = None,
    *,
    published: ImageSource | None = None,
    wheels: tuple[BuiltWheel, ...] | None = None,
) -> CheckedTag:
    """Every check of `kiln release --tag` (see the module), on ``services`` if given;
    ``published`` and ``wheels``: where the images and the helper wheels come from
    instead of kiln's builders (``prepare``)."""
    return _check(
        ws, ctx, target, tag, read_only=False, services=services, published=published,
        wheels=wheels,
    )  # fmt: skip


def _check(
    ws: Workspace,
    ctx: Context,
    target: Target,
    tag: str,
    *,
    read_only: bool,
    services: Services | None = None,
    published: ImageSource | None = None,
    wheels: tuple[BuiltWheel, ...] | None = None,
) -> CheckedTag:
    """Every check that can refuse, before anything is published (see the module)."""
    report = ctx.report
    version = tag_version(tag)
    head = check_tree(ws.root, tag)
    services = services or connect(ws, ctx, target, read_only=read_only)
    bundle = bundle_name(ws.org)
    released = released_versions(services.index.files(bundle))
    rerun = check_train(version, released, bundle)
    previous = previous_tag(ws.root, version)
    check_history(version, released, previous)
    report.stage("train", f"release {version} ({tag} at {head[:12]})")
    prepared = prepare(
        ws, services, wheel_cache=ctx.options.wheel_cache, report=report, published=published,
        wheels=wheels,
    )  # fmt: skip
    plan = make_plan(ws, prepared, services)
    label = committed_label(ws)
    drifts = component_drift(
        ws, services, report, wheel_cache=ctx.options.wheel_cache, prepared=prepared
    )
    if drifts:
        raise ConfigError(
            f"{label}: the tagged commit's component YAMLs are stale ({len(drifts)} file(s)), "
            "so they are not what this release would publish: run `kiln components --local` and "
            f"`kiln check`, commit, and tag again\n" + describe(drifts, label=label)
        )
    check_refusals(plan)
    yamls = sorted(ws.component_dir.glob("*.yaml"))
    record = _bundle_record(ws, prepared, plan, head)
    staging = ws.state_dir / "release" / "bundle"
    shutil.rmtree(staging, ignore_errors=True)
    wheel = build_bundle(staging, org=ws.org, version=str(version), yamls=yamls, record=record)
    there = bundle_published(
        services.index, bundle, wheel,
        fix="a published version never changes; tag a new version",
    )  # fmt: skip
    if rerun and there and plan.up_to_date:
        report.stage("train", f"release {version} is already published: nothing to do")
    planned = TagPlan(str(version), tag, head, previous, plan, wheel, there)
    return CheckedTag(planned, services, prepared, label)


def _bundle_record(
    ws: Workspace, prepared: Prepared, plan: ReleasePlan, head: str
) -> dict[str, Any]:
    """What the bundle's manifest records besides each YAML's sha256 (all of it fixed by
    the tagged commit, so a re-run builds the same bytes)."""
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
    """``dist/release/``: the manifest, the notes, the SBOMs, the catalog, the bundle;
    made beside and put in place whole (a killed run leaves the previous record)."""
    directory = ws.dist_dir / "release"
    with replaced_folder(directory) as staged:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        (staged / "manifest.json").write_text(  # the staged folder: all or nothing
            json.dumps({**data, "bundle": bundle.name}, indent=2) + "\n", encoding="utf-8"
        )
        (staged / "RELEASE_NOTES.md").write_text(notes, encoding="utf-8")
        sboms = ws.dist_dir / "sbom"
        if sboms.is_dir():
            shutil.copytree(sboms, staged / "sbom")
        for name in ("README.md", "catalog.html"):
            found = ws.root / label / name
            if found.is_file():
                shutil.copy2(found, staged / ("catalog.md" if name == "README.md" else name))
        shutil.copy2(bundle, staged / bundle.name)
    return directory
