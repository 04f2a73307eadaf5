"""`kiln release --dev`: changed helpers as X.Y.Z.devN, their images as dev-<sha>, dev YAMLs
and a dev bundle, in seconds; stable versions and tags are never touched.

The release runs on a copy of the repository (``kiln._release.dev``) whose helper and
image versions are the dev ones; its YAMLs, compiled pipelines and manifest are copied
to ``dist/dev/`` (`kiln run --dev` runs them). The index and registry checks are the
usual ones: a dev version already published with other bytes is refused.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename
from packaging.version import Version

from kiln._context import Context, Target, connect
from kiln._release.bundle import build_bundle, bundle_name, publish_bundle
from kiln._release.dev import copy_tree, dev_plan, dev_stamp
from kiln._release.prepare import prepare
from kiln._release.stages import check_refusals, execute, make_plan
from kiln._release.train import released_versions
from kiln._workspace.bump import apply_bump
from kiln._workspace.discovery import discover
from kiln._workspace.model import Workspace


@dataclass(frozen=True)
class DevRelease:
    """What `kiln release --dev` did: its dev number and image tag, the dev release's
    version, each moved helper or image with its dev version, what was uploaded and
    pushed, the bundle's file name, and where the dev YAMLs are."""

    number: int
    image_tag: str
    version: str  # X.Y.Z.devN: the bundle's and the manifest's
    moved: Mapping[str, str]
    uploaded: tuple[str, ...]
    pushed: tuple[str, ...]
    bundle: str
    components: Path  # dist/dev/components

    def to_json(self) -> dict[str, Any]:
        return {
            "dev": self.number,
            "image_tag": self.image_tag,
            "helpers": dict(self.moved),
            "uploaded": list(self.uploaded),
            "pushed": list(self.pushed),
            "bundle": self.bundle,
            "components": str(self.components),
        }

    @property
    def summary(self) -> str:
        return (
            f"dev {self.version}: uploaded {len(self.uploaded)} file(s), pushed "
            f"{len(self.pushed)} image(s); YAMLs in {self.components} "
            f"(`kiln run --dev PIPELINE`)"
        )


def release_dev(ws: Workspace, ctx: Context, target: Target) -> DevRelease:
    """Publish dev versions of what changed since it was published (see the module)."""
    report, wheel_cache = ctx.report, ctx.options.wheel_cache
    services = connect(ws, ctx, target)
    stamp = dev_stamp(ws.root)
    # Which helpers the index does not have as they are now: those get dev versions.
    wheels = prepare(ws, services, images=False, wheel_cache=wheel_cache).wheels
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
        prepared = prepare(dev_ws, services, wheel_cache=wheel_cache, report=report)
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
        target_dir = ws.dist_dir / "dev"
        shutil.rmtree(target_dir, ignore_errors=True)
        shutil.copytree(dev_ws.component_dir, target_dir / "components")
        if (dev_ws.dist_dir / "pipelines").is_dir():
            shutil.copytree(dev_ws.dist_dir / "pipelines", target_dir / "pipelines")
        shutil.copy2(outcome.manifest_path, target_dir / "manifest.json")
        wheel = build_bundle(
            target_dir / "bundle", org=ws.org, version=dev_version,
            yamls=sorted(dev_ws.component_dir.glob("*.yaml")), record={},
        )  # fmt: skip
        uploaded = publish_bundle(
            services.index, bundle_name(ws.org), wheel, report,
            fix="commit, or run again (an uncommitted tree gets a new dev number each second)",
        )  # fmt: skip
    return DevRelease(
        number=stamp.number,
        image_tag=stamp.image_tag,
        version=dev_version,
        moved=moved,
        uploaded=(*outcome.uploaded, *uploaded),
        pushed=tuple(outcome.pushed),
        bundle=wheel.filename,
        components=target_dir / "components",
    )


def _bundle_version(released: list[Version]) -> str:
    """The stable version the dev bundle leads to: the last release's next patch."""
    stable = [v for v in released if not v.is_devrelease]
    if not stable:
        return "0.1.0"
    major, minor, patch = (*stable[-1].release, 0, 0)[:3]
    return f"{major}.{minor}.{patch + 1}"
