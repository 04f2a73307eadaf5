"""`kiln check` as a flow: build the helper wheels (from the cache), ask the index and
the registry, compare (``kiln._release.check``), look at what the published artifacts
contain (``kiln._release.check_artifacts``: moved tags, lost blobs, altered wheels),
then compare the committed component YAMLs with what kiln generates now. Reads only: a
local stack it had to start is stopped again."""

from __future__ import annotations

import dataclasses

from kiln._context import Context, Target, connect
from kiln._release.check import RELOCK, Report, check, component_findings
from kiln._release.check_artifacts import (
    image_findings,
    recorded_images,
    wheel_findings,
    yaml_pins,
)
from kiln._release.components import committed_label, component_drift
from kiln._release.manifest import recorded_wheels
from kiln._release.prepare import kfp_version, prepare
from kiln._workspace.model import Workspace


def check_release(ws: Workspace, ctx: Context, target: Target) -> Report:
    """Every finding: what must be bumped, relocked or regenerated before releasing, and
    what is new to publish."""
    report, wheel_cache = ctx.report, ctx.options.wheel_cache
    services = connect(ws, ctx, target, read_only=True)
    prepared = prepare(ws, services, wheel_cache=wheel_cache, report=report, images=False)
    report.stage("check", f"check: against {services.index.url} and {services.registry.host}")
    recorded = recorded_wheels(ws.dist_dir / "manifest.json", services.index.url)
    result = check(
        ws,
        prepared.wheels,
        index=services.index,
        registry=services.registry,
        kfp_version=kfp_version(),
        recorded=recorded,
    )
    # What the published artifacts contain: moved tags, lost blobs, altered older wheels.
    host = services.registry.host
    altered = [
        *wheel_findings(services.index, recorded, [w.filename for w in prepared.wheels]),
        *image_findings(
            ws,
            services.registry,
            recorded_images(ws.dist_dir / "manifest.json", host),
            yaml_pins(ws.component_dir, host),
        ),
    ]
    result = dataclasses.replace(result, findings=(*result.findings, *altered))
    if not any(f.kind == RELOCK for f in result.findings):  # YAMLs come from fresh locks
        drifts = component_drift(
            ws, services, report, wheel_cache=wheel_cache, wheels=prepared.wheels
        )
        fix = f"kiln components{' --local' if target.local else ''} and commit the result"
        found = component_findings(drifts, label=committed_label(ws), fix=fix)
        result = dataclasses.replace(result, findings=(*result.findings, *found))
    return result
