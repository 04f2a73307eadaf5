"""`kiln release --dev`: changed helpers as X.Y.Z.devN, their images as dev-<sha>, dev YAMLs
and a dev bundle, in seconds; stable versions and tags are never touched.

The release runs on a copy of the repository (``kiln._release.dev``) whose helper and
image versions are the dev ones; its YAMLs, compiled pipelines and manifest are copied
to ``dist/dev/`` (`kiln run --dev` runs them). The index and registry checks are the
usual ones: a dev version already published with other bytes is refused. The dry run
(``plan_dev``) goes as far on the copy, builds the dev YAMLs and bundle there, and
publishes nothing.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename
from packaging.version import Version

from kiln._components.yamls import generate
from kiln._context import Context, Services, Target, connect
from kiln._release.bundle import (
    build_bundle,
    bundle_line,
    bundle_name,
    bundle_published,
    publish_bundle,
)
from kiln._release.dev import DevStamp, copy_tree, dev_plan, dev_stamp
from kiln._release.jobs import ImageWork, image_work
from kiln._release.plan import Action, ReleasePlan, plan_text
from kiln._release.prepare import Prepared, prepare
from kiln._release.stages import check_refusals, execute, make_plan
from kiln._release.train import released_versions
from kiln._servers.index import files_of
from kiln._util.files import replaced_folder
from kiln._wheels.build import BuiltWheel
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


@dataclass(frozen=True)
class DevPlan:
    """What `kiln release --dev --dry-run` found: the dev number and image tag, the dev
    release's version, each helper or image that would move with its dev version, the
    release plan of the dev copy, and the dev bundle's file name and sha256 (built in a
    temporary folder, gone since; ``bundle_there``: the index has it with these bytes).
    Nothing was published and nothing written in ``dist/``."""

    number: int
    image_tag: str
    version: str
    moved: Mapping[str, str]
    plan: ReleasePlan
    bundle: str
    bundle_sha256: str
    bundle_there: bool
    # Each image's digests, wheels and cost, read on the copy before it is removed.
    work: tuple[ImageWork, ...] = ()

    def to_json(self) -> dict[str, Any]:
        action = Action.SKIP if self.bundle_there else Action.PUBLISH
        return {
            "dev": self.number,
            "image_tag": self.image_tag,
            "version": self.version,
            "helpers": dict(self.moved),
            "plan": self.plan.to_dict(),
            "bundle": {
                "filename": self.bundle,
                "sha256": self.bundle_sha256,
                "action": action.value,
            },
        }

    @property
    def text(self) -> str:
        moved = ", ".join(f"{n} {v}" for n, v in sorted(self.moved.items()))
        head = (
            f"dev {self.version} ({self.image_tag}), dry run: nothing published, nothing "
            f"written in dist/; dev versions: {moved or 'none (nothing changed)'}"
        )
        bundle = bundle_line(self.bundle, there=self.bundle_there)
        return f"{head}\n{plan_text(self.plan)}\n{bundle}"


@dataclass(frozen=True)
class _Staged:
    """A dev release past every check, on its copy of the repository (``ws``): what it
    publishes, and what publishing needs."""

    ws: Workspace
    tmp: Path  # the copy's temporary folder, removed when the release ends
    stamp: DevStamp
    moved: Mapping[str, str]
    services: Services
    prepared: Prepared
    plan: ReleasePlan
    version: str  # X.Y.Z.devN


def plan_dev(ws: Workspace, ctx: Context, target: Target) -> DevPlan:
    """`kiln release --dev --dry-run`: the checks and the plan of ``release_dev`` on its
    copy of the repository, the dev YAMLs and bundle built there (in a temporary folder);
    nothing is published, nothing written in ``dist/``, and a local stack this had to
    start is stopped again (``ctx.cleanup``)."""
    with _staged(ws, ctx, target, read_only=True) as staged:
        dev_ws, prepared = staged.ws, staged.prepared
        generate(
            dev_ws, prepared.wheelhouses, prepared.image_refs, packages=prepared.packages,
            index_url=staged.services.index.url, report=ctx.report,
        )  # fmt: skip
        wheel = _dev_bundle(staged, staged.tmp / "bundle")
        there = bundle_published(staged.services.index, bundle_name(ws.org), wheel, fix=_FIX)
        return DevPlan(
            number=staged.stamp.number,
            image_tag=staged.stamp.image_tag,
            version=staged.version,
            moved=staged.moved,
            plan=staged.plan,
            bundle=wheel.filename,
            bundle_sha256=wheel.sha256,
            bundle_there=there,
            work=image_work(staged.plan),
        )


def release_dev(ws: Workspace, ctx: Context, target: Target) -> DevRelease:
    """Publish dev versions of what changed since it was published (see the module)."""
    report = ctx.report
    with _staged(ws, ctx, target, read_only=False) as staged:
        dev_ws, services = staged.ws, staged.services
        outcome = execute(
            dev_ws, staged.prepared, staged.plan, services, release_version=staged.version,
            report=report,
        )  # fmt: skip
        # dist/dev is made beside and put in place whole, once its bundle is published.
        with replaced_folder(ws.dist_dir / "dev") as target_dir:
            shutil.copytree(dev_ws.component_dir, target_dir / "components")
            if (dev_ws.dist_dir / "pipelines").is_dir():
                shutil.copytree(dev_ws.dist_dir / "pipelines", target_dir / "pipelines")
            shutil.copy2(outcome.manifest_path, target_dir / "manifest.json")
            wheel = _dev_bundle(staged, target_dir / "bundle")
            uploaded = publish_bundle(services.index, bundle_name(ws.org), wheel, report, fix=_FIX)
    return DevRelease(
        number=staged.stamp.number,
        image_tag=staged.stamp.image_tag,
        version=staged.version,
        moved=staged.moved,
        uploaded=(*outcome.uploaded, *uploaded),
        pushed=tuple(outcome.pushed),
        bundle=wheel.filename,
        components=ws.dist_dir / "dev" / "components",
    )


_FIX = "commit, or run again (an uncommitted tree gets a new dev number each second)"


@contextmanager
def dev_share(
    ws: Workspace, ctx: Context, target: Target, select: Collection[str]
) -> Iterator[tuple[Workspace, Services, ReleasePlan]]:
    """A job's share of the dev release (`kiln release --dev --job J`): the dev copy of
    ``ws`` with only the images ``select`` names prepared, its services and its plan; the
    copy is removed when the block ends."""
    with _staged(ws, ctx, target, read_only=False, select=select) as staged:
        yield staged.ws, staged.services, staged.plan


@contextmanager
def _staged(
    ws: Workspace,
    ctx: Context,
    target: Target,
    *,
    read_only: bool,
    select: Collection[str] | None = None,
) -> Iterator[_Staged]:
    """The dev release's copy of ``ws``, bumped to the dev versions, prepared (only the
    images ``select`` names, if given) and planned, its plan's refusals checked; the copy
    is removed when the block ends."""
    report, wheel_cache = ctx.report, ctx.options.wheel_cache
    services = connect(ws, ctx, target, read_only=read_only)
    stamp = dev_stamp(ws.root)
    # Which helpers the index does not have as they are now: those get dev versions.
    wheels = prepare(ws, services, images=False, wheel_cache=wheel_cache).wheels
    changed, published = set(), {}
    pages = files_of(services.index, (w.distribution for w in wheels))
    for w in wheels:
        there = pages[w.distribution]
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
        prepared = prepare(dev_ws, services, wheel_cache=wheel_cache, report=report, select=select)
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
        yield _Staged(
            dev_ws, Path(tmp), stamp, moved, services, prepared, release_plan,
            f"{version}.dev{stamp.number}",
        )  # fmt: skip


def _dev_bundle(staged: _Staged, outdir: Path) -> BuiltWheel:
    """The dev bundle of the copy's component YAMLs, built into ``outdir``."""
    return build_bundle(
        outdir, org=staged.ws.org, version=staged.version,
        yamls=sorted(staged.ws.component_dir.glob("*.yaml")), record={},
    )  # fmt: skip


def _bundle_version(released: list[Version]) -> str:
    """The stable version the dev bundle leads to: the last release's next patch."""
    stable = [v for v in released if not v.is_devrelease]
    if not stable:
        return "0.1.0"
    major, minor, patch = (*stable[-1].release, 0, 0)[:3]
    return f"{major}.{minor}.{patch + 1}"
