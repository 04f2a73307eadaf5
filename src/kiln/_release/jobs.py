"""The release plan cut into K jobs, for a CI matrix (`kiln plan --jobs K`). Pure data.

The unit of work is an image: an image is built from its wheelhouse alone (its helper
wheels, built from the repository, and its locked third-party wheels), never from
another image kiln builds, so an image and everything it needs always go to one job.
Images are dealt out heaviest first, each to the job with the least work so far
(ties: the lower job number); the result depends on the plan alone, so the same
repository and servers give byte-identical JSON.

Wheels go first in each job. Each wheel the release publishes (a helper's, a mirrored
third-party file) is owned by exactly one job, the one that uploads it when the index
lacks it: the lowest-numbered job whose images need it, or, for a wheel no image needs
(packages mode's: its pods install them from the index), the job with the least work.
A job whose image needs a wheel another job owns only reads it: it builds or fetches
it locally, as any release does, and does not upload it.

Cost, the estimate that balances the jobs, in MiB-equivalents: an image to build costs,
for each of its platforms, the size of that platform's wheels (the build unpacks,
hashes and compresses every byte of them) plus ``PLATFORM_COST`` (its OS layers, the
push, the smoke check that starts a container); an image already in the registry
costs ``SKIP_COST`` (a job only asks the registry its digest).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kiln._images.oci.index import BuiltIndex
from kiln._release.plan import Action, FileStep, ImageStep, ReleasePlan
from kiln._wheels.build import BuiltWheel
from kiln._wheels.sdist_cache import SourceFile
from kiln._wheels.wheelhouse import WheelFile

PLATFORM_COST = 16  # MiB-equivalents per platform an image is built for (an estimate)
SKIP_COST = 1  # an image already in the registry: one question to it
_MIB = 1 << 20


@dataclass(frozen=True)
class WheelWork:
    """A file the release puts on the index (``kind``: "helper" or "mirror")."""

    filename: str
    project: str
    version: str
    kind: str
    sha256: str
    action: Action  # publish (not on the index yet) or skip (there, same bytes)


@dataclass(frozen=True)
class ImageWork:
    """An image of the plan: its expected digest (the index's, for several platforms,
    with each platform's image digest in ``platforms``), the files it is built from,
    and its cost."""

    name: str
    repository: str  # <registry>/<org>/<name>
    tag: str
    action: Action  # build (and push) or skip (in the registry at ``digest``)
    digest: str
    platforms: tuple[tuple[str, str], ...]  # (OCI platform, its image's digest); () for one
    wheels: tuple[str, ...]  # the filenames of the wheels it needs that the release publishes
    cost: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "repository": self.repository,
            "tag": self.tag,
            "action": self.action.value,
            "digest": self.digest,
            "platforms": [{"platform": p, "digest": d} for p, d in self.platforms],
            "wheels": list(self.wheels),
            "cost": self.cost,
        }


@dataclass(frozen=True)
class Job:
    """One job of the matrix: its images, the wheels it publishes (it owns them) and the
    ones its images need that another job publishes (it only reads them)."""

    number: int
    images: tuple[ImageWork, ...]
    publishes: tuple[str, ...]
    reads: tuple[str, ...]

    @property
    def cost(self) -> int:
        return sum(i.cost for i in self.images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.number,
            "cost": self.cost,
            "images": [i.to_dict() for i in self.images],
            "publishes": list(self.publishes),
            "reads": list(self.reads),
        }


@dataclass(frozen=True)
class JobPlan:
    """The release plan as ``len(jobs)`` jobs; ``wheels`` each with its owner's number."""

    wheels: tuple[tuple[WheelWork, int], ...]
    jobs: tuple[Job, ...]

    def job(self, number: int) -> Job:
        if not 0 <= number < len(self.jobs):
            raise IndexError(number)
        return self.jobs[number]

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs_count": len(self.jobs),
            "cost_unit": (
                f"MiB of wheels per platform built, +{PLATFORM_COST} per platform; "
                f"{SKIP_COST} for an image already pushed"
            ),
            "wheels": [
                {
                    "filename": w.filename,
                    "project": w.project,
                    "version": w.version,
                    "kind": w.kind,
                    "sha256": w.sha256,
                    "action": w.action.value,
                    "job": owner,
                }
                for w, owner in self.wheels
            ],
            "jobs": [j.to_dict() for j in self.jobs],
        }


def split(wheels: Sequence[WheelWork], images: Sequence[ImageWork], count: int) -> JobPlan:
    """Deal ``images`` out to ``count`` jobs (heaviest first, each to the least loaded),
    and give each of ``wheels`` one owner (see the module). More jobs than images leaves
    the last ones empty: they publish nothing, so a fixed CI matrix still runs."""
    if count < 1:
        raise ValueError(f"a plan has at least one job, not {count}")
    names = [i.name for i in images]
    if len(set(names)) != len(names):
        raise ValueError(f"an image is planned twice: {sorted(names)}")
    shares: list[list[ImageWork]] = [[] for _ in range(count)]
    loads = [0] * count
    for image in sorted(images, key=lambda i: (-i.cost, i.name)):
        lightest = min(range(count), key=lambda j: (loads[j], j))
        shares[lightest].append(image)
        loads[lightest] += image.cost
    known = {w.filename for w in wheels}
    owners: dict[str, int] = {}
    for number, share in enumerate(shares):
        share.sort(key=lambda i: i.name)
        for image in share:
            for filename in image.wheels:
                if filename not in known:
                    raise ValueError(f"image {image.name} needs {filename}, which is not planned")
                owners.setdefault(filename, number)
    lightest = min(range(count), key=lambda j: (loads[j], j))
    ordered = sorted(wheels, key=lambda w: w.filename)
    owned = tuple((w, owners.get(w.filename, lightest)) for w in ordered)
    jobs = []
    for number, share in enumerate(shares):
        needed = {f for image in share for f in image.wheels}
        mine = tuple(w.filename for w, owner in owned if owner == number)
        jobs.append(Job(number, tuple(share), mine, tuple(sorted(needed.difference(mine)))))
    return JobPlan(owned, tuple(jobs))


def wheel_work(plan: ReleasePlan) -> tuple[WheelWork, ...]:
    """Every file the plan puts on the index (a refused plan is never split)."""
    return tuple(_wheel(s) for s in plan.files)


def _wheel(step: FileStep) -> WheelWork:
    return WheelWork(step.filename, step.project, step.version, step.kind, step.sha256, step.action)


def image_work(plan: ReleasePlan) -> tuple[ImageWork, ...]:
    """Each image of the plan with its digests, the planned wheels it needs and its cost;
    read from the files its plan built (so call it before they are removed)."""
    planned = {s.filename for s in plan.files}
    return tuple(_image(step, planned) for step in plan.images)


def _image(step: ImageStep, planned: set[str]) -> ImageWork:
    inputs = step.inputs
    if inputs is None:
        raise ValueError(f"image step {step.name} carries no inputs: plan it with make_plan")
    houses = [house for _, house in inputs.wheelhouses] or [inputs.wheelhouse]
    files: list[list[BuiltWheel | WheelFile | SourceFile]] = [
        [*h.helpers, *h.third_party, *h.sources] for h in houses
    ]
    needed = sorted({f.filename for fs in files for f in fs}.intersection(planned))
    cost = SKIP_COST
    if step.action is not Action.SKIP:
        cost = sum(PLATFORM_COST + _mib(f.path.stat().st_size for f in fs) for fs in files)
    return ImageWork(
        name=step.name,
        repository=inputs.repository,
        tag=step.version,
        action=step.action,
        digest=step.digest,
        platforms=platform_digests(step),
        wheels=tuple(needed),
        cost=cost,
    )


def platform_digests(step: ImageStep) -> tuple[tuple[str, str], ...]:
    """(OCI platform, its image's digest) of an image built for several; () for one."""
    inputs = step.inputs
    if inputs is None or not isinstance(inputs.built, BuiltIndex):
        return ()
    pairs = zip(inputs.image.platforms, inputs.built.images, strict=True)
    return tuple((p, image.digest) for p, (_, image) in pairs)


def _mib(sizes: Iterable[int]) -> int:
    return math.ceil(sum(sizes) / _MIB)


def jobs_text(plan: JobPlan) -> str:
    """The jobs for a person: a row per job, then each job's images and wheels."""
    rows = [f"{'job':>3}  {'cost':>6}  {'images':>6}  {'publishes':>9}  {'reads':>5}"]
    rows += [
        f"{j.number:>3}  {j.cost:>6}  {len(j.images):>6}  {len(j.publishes):>9}  {len(j.reads):>5}"
        for j in plan.jobs
    ]
    actions = {w.filename: w.action.value for w, _ in plan.wheels}
    for job in plan.jobs:
        rows.append(f"job {job.number}:" + ("" if job.images or job.publishes else " nothing"))
        for image in job.images:
            over = f", {len(image.platforms)} platforms" if image.platforms else ""
            rows.append(
                f"  {image.action.value:7} image {image.repository}:{image.tag} "
                f"{image.digest} (cost {image.cost}{over})"
            )
        todo = sum(1 for f in job.publishes if actions[f] == Action.PUBLISH.value)
        if job.publishes:
            rows.append(
                f"  wheels  publishes {len(job.publishes)} ({todo} not on the index yet), "
                f"reads {len(job.reads)} another job publishes"
            )
    return "\n".join(rows)
