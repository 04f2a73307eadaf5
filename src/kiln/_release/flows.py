"""The plain release flows: publish (wheels only), bake (wheels and images), and the
release (every stage, or with ``dry_run`` only the plan).

Each prepares (local work), plans (asks the servers), refuses before anything is
written when the plan refuses anything, then carries out its stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kiln._context import Context, Services, Target, connect
from kiln._errors import ArtifactAltered, PublishedConflict
from kiln._release.plan import FileStep, ReleasePlan, plan_text
from kiln._release.prepare import Prepared, prepare
from kiln._release.stages import (
    Outcome,
    bake,
    check_engine,
    check_refusals,
    execute,
    install_wheels,
    make_plan,
    publish,
)
from kiln._workspace.model import Workspace


@dataclass(frozen=True)
class Parts:
    """What every release flow starts from: its services, the local work, the plan."""

    services: Services
    prepared: Prepared
    plan: ReleasePlan


def plan_parts(
    ws: Workspace, ctx: Context, target: Target, *, images: bool = True, read_only: bool = False
) -> Parts:
    """Prepare (local work) and plan (ask the servers): what every release flow runs."""
    services = connect(ws, ctx, target, images=images, read_only=read_only)
    prepared = prepare(
        ws, services, images=images, wheel_cache=ctx.options.wheel_cache, report=ctx.report
    )
    return Parts(services, prepared, make_plan(ws, prepared, services))


@dataclass(frozen=True)
class Published:
    """`kiln publish`: every wheel the plan considered, and the ones uploaded."""

    index_url: str
    files: tuple[FileStep, ...]
    uploaded: tuple[str, ...]


def publish_wheels(ws: Workspace, ctx: Context, target: Target) -> Published:
    """Build the helper wheels, upload the ones the index does not have (and the
    third-party wheels kiln built from sdists), and copy them to ``dist/wheels``."""
    parts = plan_parts(ws, ctx, target, images=False)
    check_refusals(parts.plan)
    uploaded = publish(parts.plan, parts.services, ctx.report)
    install_wheels(parts.prepared.wheels, ws.dist_dir / "wheels")
    return Published(parts.services.index.url, parts.plan.files, tuple(uploaded))


@dataclass(frozen=True)
class Baked:
    """`kiln bake`: each image's ``repository@digest`` by name, and what was pushed."""

    refs: Mapping[str, str]
    pushed: tuple[str, ...]


def bake_images(ws: Workspace, ctx: Context, target: Target) -> Baked:
    """Publish the wheels, then build each image with kiln and push what the registry
    does not have."""
    parts = plan_parts(ws, ctx, target)
    check_refusals(parts.plan)
    check_engine(parts.plan, parts.services)
    publish(parts.plan, parts.services, ctx.report)
    install_wheels(parts.prepared.wheels, ws.dist_dir / "wheels")
    digests, pushed = bake(ws, parts.plan, parts.services, ctx.report)
    refs = {i.image.name: f"{i.repository}@{digests[i.image.name]}" for i in parts.prepared.images}
    return Baked(refs, tuple(pushed))


@dataclass(frozen=True)
class Released:
    """`kiln release`: the plan, and what carrying it out did (None: a dry run)."""

    plan: ReleasePlan
    outcome: Outcome | None

    @property
    def exit_code(self) -> int:
        """A dry run's verdict: 0, or the exit code of what its plan refuses."""
        if self.plan.altered:
            return ArtifactAltered.exit_code
        return PublishedConflict.exit_code if self.plan.refusals else 0


def release(
    ws: Workspace,
    ctx: Context,
    target: Target,
    *,
    dry_run: bool = False,
    version: str | None = None,
) -> Released:
    """Every stage: skip what is published, refuse what would change a published version,
    write ``dist/manifest.json`` (stamped ``version``). A ``dry_run`` plans, changes
    nothing, and stops a local stack it had to start."""
    parts = plan_parts(ws, ctx, target, read_only=dry_run)
    if dry_run:
        return Released(parts.plan, None)
    for line in plan_text(parts.plan).splitlines():
        ctx.report.detail(line)
    outcome = execute(
        ws, parts.prepared, parts.plan, parts.services, release_version=version,
        report=ctx.report,
    )  # fmt: skip
    return Released(parts.plan, outcome)
