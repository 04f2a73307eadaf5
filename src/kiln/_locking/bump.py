"""``kiln bump`` as a library call: the version edits (``kiln._workspace.bump``), then
the image locks they made stale written again.

It lives here, above both, because a bump that moves a helper's dependencies moves
the locks of the images containing it, and writing a lock is this package's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiln._lock.format import lock_path
from kiln._locking.flow import LockTools, is_fresh, relock
from kiln._report import Reporter
from kiln._workspace.bump import BumpPlan, Kind, apply_bump, plan_bump, render_bump
from kiln._workspace.discovery import discover
from kiln._workspace.model import Workspace


@dataclass(frozen=True)
class BumpResult:
    plan: BumpPlan
    written: bool  # False: a dry run; every edit was checked, nothing written
    stale: tuple[str, ...]  # images whose lock is stale after the edits (relocked unless dry)
    relocked: tuple[str, ...]  # the images whose lock was written again

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "written": self.written, "relocked": sorted(self.relocked)}


def bump(
    ws: Workspace,
    target: str,
    level: str,
    *,
    kind: Kind | None = None,
    dry_run: bool = False,
    kfp: str,
    tools: Callable[[], LockTools],
    report: Reporter,
) -> BumpResult:
    """Raise ``target``'s version by ``level`` and every version that must follow it
    (``plan_bump``), then write again each lock the edits made stale (with ``tools()``,
    asked only then). ``dry_run``: check every edit, write nothing, and say which locks
    would be stale."""
    plan = plan_bump(ws, target, level, kind=kind)
    if dry_run:
        render_bump(plan)  # every edit checked, nothing written
    else:
        apply_bump(plan)
    # An image whose helpers' dependencies moved needs a fresh lock too.
    after = ws if dry_run else discover(ws.root)
    stale = []
    for name in plan.images_to_relock:
        image = after.image(name)
        # One never locked is left to `kiln check` and the release, which say so.
        if lock_path(image).is_file() and not is_fresh(after, image, kfp):
            stale.append(image)
    relocked = {}
    if stale and not dry_run:
        relocked = relock(after, stale, kfp=kfp, tools=tools(), report=report)
    return BumpResult(
        plan=plan,
        written=not dry_run,
        stale=tuple(i.name for i in stale),
        relocked=tuple(relocked),
    )
