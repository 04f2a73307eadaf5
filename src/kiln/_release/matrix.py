"""`kiln plan --jobs K`: the release plan (the dry run's, with every check of the release
it plans: ``--tag``'s, ``--dev``'s or the plain one's) cut into K jobs for a CI matrix
(``kiln._release.jobs``). Nothing is published and nothing written in ``dist/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiln._context import Context, Target
from kiln._release.dev_release import plan_dev
from kiln._release.flows import plan_parts
from kiln._release.jobs import JobPlan, image_work, jobs_text, split, wheel_work
from kiln._release.stages import check_refusals
from kiln._release.tag import plan_tag
from kiln._util.git import revision
from kiln._workspace.model import Workspace


@dataclass(frozen=True)
class MatrixPlan:
    """The plan's jobs, and the release they are shares of: ``kind`` "tag" (``release`` is
    X.Y.Z), "dev" (X.Y.Z.devN) or "plain" (None), and the commit."""

    kind: str
    release: str | None
    tag: str | None
    revision: str | None
    jobs: JobPlan

    def to_json(self) -> dict[str, Any]:
        return {
            "release": {
                "kind": self.kind,
                "version": self.release,
                "tag": self.tag,
                "revision": self.revision,
            },
            **self.jobs.to_dict(),
        }

    @property
    def text(self) -> str:
        what = {"tag": f"release {self.release} ({self.tag})", "dev": f"dev {self.release}"}
        head = (
            f"{what.get(self.kind, 'release')} at {(self.revision or 'no commit')[:12]}: "
            f"{sum(len(j.images) for j in self.jobs.jobs)} image(s), {len(self.jobs.wheels)} "
            f"wheel(s) in {len(self.jobs.jobs)} job(s); nothing published"
        )
        return f"{head}\n{jobs_text(self.jobs)}"


def plan_jobs(
    ws: Workspace,
    ctx: Context,
    target: Target,
    *,
    jobs: int,
    tag: str | None = None,
    dev: bool = False,
) -> MatrixPlan:
    """The release ``tag`` names (or the dev release, or the plain one) planned as its dry
    run plans it, every check made (a refusal raises as the release would), then split
    into ``jobs`` jobs. A local stack this had to start is stopped again."""
    if jobs < 1:
        raise ValueError(f"a plan has at least one job, not {jobs}")
    release: str | None
    head: str | None
    if tag is not None:
        planned = plan_tag(ws, ctx, target, tag)
        plan, kind, release, head = planned.plan, "tag", planned.release, planned.revision
        images = image_work(plan)
    elif dev:
        dev_planned = plan_dev(ws, ctx, target)
        plan, kind, release, head = dev_planned.plan, "dev", dev_planned.version, revision(ws.root)
        images = dev_planned.work  # read on the dev copy, which is gone now
    else:
        parts = plan_parts(ws, ctx, target, read_only=True)
        check_refusals(parts.plan)
        plan, kind, release, head = parts.plan, "plain", None, revision(ws.root)
        images = image_work(plan)
    return MatrixPlan(kind, release, tag, head, split(wheel_work(plan), images, jobs))
