"""`kiln release --job J --plan FILE`: one job's share of a release that `kiln plan --jobs
K` cut into jobs (``kiln._release.jobs``), and nothing else.

The job reads the plan the plan job wrote (it does not plan again: planning computes
every image's digest, so every job would build every image) and needs only the
repository, the index and the registry. It builds only the images of its share that
the plan builds (an image already pushed too when it uploads one of its wheels: it
needs that file), fetching their locked wheels as any release does, from the index or
upstream, and the wheels of the helpers those images hold and of the helpers whose
wheels it owns (wheels are reproducible; it uploads only those it owns). Before
anything is published, it checks what it made against the plan: each image's digest
(an index's and each platform's), each wheel it owns by sha256 (one it did not make:
the index's), the commit, the registry. A difference stops the job (``PlanMismatch``,
exit 11) with nothing of it published. Then its wheels go first, then its images
(pushed by digest, smoke-checked, tagged). An image the plan found pushed, the job only
asks the registry about. No manifest, bundle, notes or component YAML is written:
that is the finalize step's.

A job run again (failed, killed, or twice at once) skips what is already published
with the same bytes, as a release does.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln._context import Context, Services, Target, connect
from kiln._errors import ConfigError, PlanMismatch
from kiln._release.dev_release import dev_share
from kiln._release.jobs import ImageWork, WheelWork, platform_digests
from kiln._release.plan import Action, FileStep, ImageStep, ReleasePlan
from kiln._release.prepare import prepare
from kiln._release.stages import bake, check_engine, check_refusals, make_plan, publish
from kiln._release.train import check_tree
from kiln._report import Reporter
from kiln._servers.index import files_for
from kiln._util.git import revision
from kiln._workspace.model import Workspace, helper_closure


@dataclass(frozen=True)
class PlannedJob:
    """Job ``number`` of a plan file: the release it is a share of, its images, and the
    wheels it publishes, by filename."""

    source: Path
    number: int
    count: int
    kind: str
    tag: str | None
    revision: str | None
    images: tuple[ImageWork, ...]
    publishes: dict[str, WheelWork]

    @property
    def unclaimed(self) -> set[str]:
        """Wheels it uploads that none of its images needs (packages mode's)."""
        return self.uploads.difference(f for i in self.images for f in i.wheels)

    @property
    def uploads(self) -> set[str]:
        """The wheels it publishes that the plan found missing from the index."""
        return {f for f, w in self.publishes.items() if w.action is Action.PUBLISH}


def read_jobs(path: Path) -> tuple[PlannedJob, ...]:
    """Every job of the plan at ``path`` (`kiln plan --json`'s output), in order."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        jobs, wheels, release = data["jobs"], data["wheels"], data["release"]
        planned = {w["filename"]: _wheel(w) for w in wheels}
        kind, tag, head = release["kind"], release["tag"], release["revision"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not a plan of `kiln plan --jobs K --json` ({type(exc).__name__}: {exc}): "
            "pass the file the plan job wrote"
        ) from None
    found = []
    for number, job in enumerate(jobs):
        try:
            images = tuple(_image(i) for i in job["images"])
            publishes = {f: planned[f] for f in job["publishes"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: job {number} is malformed ({exc!r})") from None
        found.append(PlannedJob(path, number, len(jobs), kind, tag, head, images, publishes))
    return tuple(found)


def read_job(path: Path, number: int) -> PlannedJob:
    """Job ``number`` of the plan at ``path`` (`kiln plan --json`'s output)."""
    jobs = read_jobs(path)
    if not 0 <= number < len(jobs):
        raise ConfigError(
            f"{path}: job {number} is not in this plan, which has {len(jobs)} job(s) "
            f"(0 to {len(jobs) - 1}): give --job a number the matrix was made from"
        )
    return jobs[number]


def _wheel(row: dict[str, Any]) -> WheelWork:
    return WheelWork(
        row["filename"], row["project"], row["version"], row["kind"], row["sha256"],
        Action(row["action"]),
    )  # fmt: skip


def _image(row: dict[str, Any]) -> ImageWork:
    return ImageWork(
        name=row["name"],
        repository=row["repository"],
        tag=row["tag"],
        action=Action(row["action"]),
        digest=row["digest"],
        platforms=tuple((p["platform"], p["digest"]) for p in row["platforms"]),
        wheels=tuple(row["wheels"]),
        cost=int(row["cost"]),
    )


@dataclass(frozen=True)
class JobRun:
    """What `kiln release --job J` did: the files it uploaded, the images it pushed
    (``repository:tag@digest``), and those its plan found pushed, checked there."""

    job: int
    count: int
    uploaded: tuple[str, ...]
    pushed: tuple[str, ...]
    checked: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "jobs_count": self.count,
            "uploaded": list(self.uploaded),
            "pushed": list(self.pushed),
            "checked": list(self.checked),
        }

    @property
    def summary(self) -> str:
        return (
            f"job {self.job} of {self.count}: uploaded {len(self.uploaded)} file(s), pushed "
            f"{len(self.pushed)} image(s), {len(self.checked)} already pushed at the plan's "
            "digest; no manifest written (the finalize step's)"
        )


def release_job(
    ws: Workspace,
    ctx: Context,
    target: Target,
    *,
    plan: Path,
    job: int,
    tag: str | None = None,
    dev: bool = False,
) -> JobRun:
    """Publish job ``job``'s share of the plan at ``plan`` (see the module): of
    `kiln release --tag` of ``tag``, of `kiln release --dev`, or of the plain release
    (the plan must be of the same one)."""
    planned = read_job(plan, job)
    check_release(ws, planned, tag, dev)
    if not planned.images and not planned.publishes:  # K above the work: an empty job
        ctx.report.stage("job", f"job {job} of {planned.count}: nothing in the plan for it")
        return JobRun(job, planned.count, (), (), ())
    # Its images to build, and those with a wheel it uploads (it needs the file).
    names = {i.name for i in planned.images if i.action is not Action.SKIP}
    names |= {i.name for i in planned.images if planned.uploads.intersection(i.wheels)}
    if planned.unclaimed and ws.packages is not None:
        names.add(ws.packages.name)
    if dev:
        with dev_share(ws, ctx, target, names) as (dev_ws, services, full):
            return _run(dev_ws, planned, full, services, ctx.report)
    services = connect(ws, ctx, target)
    prepared = prepare(
        ws, services, wheel_cache=ctx.options.wheel_cache, report=ctx.report, select=names,
        helpers=_helpers(ws, planned, names),
    )  # fmt: skip
    return _run(ws, planned, make_plan(ws, prepared, services), services, ctx.report)


def _helpers(ws: Workspace, planned: PlannedJob, images: Collection[str]) -> set[str]:
    """The helpers whose wheels the job builds: those its ``images`` hold (each one's
    helpers and every helper they pin) and those whose wheels it publishes. A cold build
    of every helper's wheel was most of a job's work at N=200, for wheels it neither
    uploads nor puts in an image."""
    # Packages mode's base holds pip alone: its pods install their helpers from the index.
    held = [h for i in ws.locked if i.name in images and i is not ws.packages for h in i.helpers]
    names = set(helper_closure(ws, held))
    owned = {w.project for w in planned.publishes.values() if w.kind == "helper"}
    return names | {h.name for h in ws.helpers if h.distribution in owned}


def _run(
    ws: Workspace, planned: PlannedJob, full: ReleasePlan, services: Services, report: Reporter
) -> JobRun:
    """Check the job's part of ``full`` against the plan file, then publish it: wheels
    first, then images."""
    share = _share(full, planned, services)
    check_refusals(share)
    check_engine(share, services)
    uploaded = publish(share, services, report)
    _, pushed = bake(ws, share, services, report)
    refs = [f"{i.repository}:{i.tag}@{i.digest}" for i in planned.images]
    checked = tuple(r for r in refs if r not in pushed)
    return JobRun(planned.number, planned.count, tuple(uploaded), tuple(pushed), checked)


def check_release(ws: Workspace, planned: PlannedJob, tag: str | None, dev: bool) -> None:
    """The plan is of this release (--tag's, --dev's, at this commit), or a PlanMismatch."""
    kind = "tag" if tag is not None else "dev" if dev else "plain"
    if kind != planned.kind or tag != planned.tag:
        what = (
            f"the release of {planned.tag}"
            if planned.kind == "tag"
            else f"a {planned.kind} release"
        )
        given = f"--tag {tag}" if tag else "--dev" if dev else "neither --tag nor --dev"
        raise PlanMismatch(
            f"{planned.source} plans {what}, but this run was given {given}: run it "
            "with the release options the plan was made with"
        )
    head = check_tree(ws.root, tag) if tag is not None else revision(ws.root)
    if planned.revision is not None and head != planned.revision:
        raise PlanMismatch(
            f"{planned.source} was planned at commit {planned.revision[:12]}, but {ws.root} "
            f"is at {(head or 'no commit')[:12]}: check out the plan's commit (every job of "
            "a matrix releases the same one); nothing was published"
        )


def _share(plan: ReleasePlan, planned: PlannedJob, services: Services) -> ReleasePlan:
    """The job's part of what it planned: the wheels it owns and its images, each checked
    against the plan file (a PlanMismatch names every difference; nothing published)."""
    problems: list[str] = []
    files = {s.filename: s for s in plan.files}
    pages = unmade_pages(planned.publishes.values(), files, services)
    for filename, wheel in sorted(planned.publishes.items()):
        problems += wheel_problems(wheel, files.get(filename), pages)
    steps = {s.name: s for s in plan.images}
    for image in planned.images:
        problems += image_problems(image, steps.get(image.name), services)
    if problems:
        raise PlanMismatch(
            f"job {planned.number} of {planned.source} does not match its plan, so nothing "
            "of it was published:\n" + "\n".join(f"  - {p}" for p in problems) + "\n"
            "the plan was made from other inputs (another commit, lock or kiln) or a build "
            "is not reproducible: make the plan again from this commit and re-run every job"
        )
    mine = {i.name for i in planned.images}
    return ReleasePlan(
        files=tuple(s for s in plan.files if s.filename in planned.publishes),
        images=tuple(s for s in plan.images if s.name in mine),
        components=(),
        pipelines=(),
    )


def unmade_pages(
    wheels: Iterable[WheelWork], made: Mapping[str, FileStep], services: Services
) -> dict[str, Mapping[str, str]]:
    """The index's pages (project -> filename -> sha256) of the planned ``wheels`` this
    run did not make (not in ``made``) and the plan found on the index: those
    ``wheel_problems`` reads, each asked for once, all at once (``files_of``: hundreds
    of wheels are not hundreds of round trips one after the other)."""
    unmade = {
        (w.project, w.filename)
        for w in wheels
        if w.filename not in made and w.action is not Action.PUBLISH
    }
    return files_for(services.index, sorted(unmade))


def wheel_problems(
    wheel: WheelWork, step: FileStep | None, pages: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """How a wheel the job owns differs from the plan's: what it made (``step``), or,
    not made (the plan found it on the index: only a skipped image needs it), the
    index's file (its project's page in ``pages``, from ``unmade_pages``)."""
    name, sha256 = wheel.filename, wheel.sha256
    if step is not None:
        if step.sha256 != sha256:
            return [f"{name}: built with sha256 {step.sha256}, the plan says {sha256}"]
        return []
    if wheel.action is Action.PUBLISH:
        return [f"{name}: the plan says this job publishes it, but it made no such file"]
    there = pages[wheel.project].get(name)
    if there != sha256:
        return [f"{name}: the plan found it on the index with sha256 {sha256}, it has {there}"]
    return []


def image_problems(image: ImageWork, step: ImageStep | None, services: Services) -> Sequence[str]:
    """How what this job built (``step``; None: not built, the plan found it pushed) or
    the registry holds differs from the plan's ``image``."""
    ref = f"{image.repository}:{image.tag}"
    host, _, path = image.repository.partition("/")
    if host != services.registry.host:
        here = services.registry.host
        return [f"{ref}: the plan is for registry {host}, this job publishes to {here}"]
    if step is None:
        there = services.registry.digest(path, image.tag)
        if there != image.digest:
            return [f"{ref}: the plan found it pushed as {image.digest}, the registry has {there}"]
        return []
    problems = []
    if step.version != image.tag:
        problems.append(f"{image.name}: tagged {step.version}, the plan says {image.tag}")
    if step.digest != image.digest:
        problems.append(f"{ref}: built as {step.digest}, the plan says {image.digest}")
    built = dict(platform_digests(step))
    for platform, digest in image.platforms:
        if built.get(platform) != digest:
            made = built.get(platform)
            problems.append(f"{ref} for {platform}: built as {made}, the plan says {digest}")
    return problems
