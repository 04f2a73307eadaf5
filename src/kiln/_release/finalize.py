"""`kiln release --finalize --plan FILE`: the last step of a release matrix. Every job
of `kiln plan --jobs K` has published its share; this checks that the index and the
registry hold all of the plan, then writes what a one-machine release writes once it
has published: the SBOMs, the component and pipeline YAMLs, ``dist/manifest.json``,
and for ``--tag`` the components bundle (uploaded) and ``dist/release/``.

Order: the plan is of this release and commit (``PlanMismatch`` otherwise); every wheel
is on the index with the plan's sha256 and every image in the registry at the plan's
digest, each platform's image of an index too. A missing one stops here
(``ReleaseIncomplete``, naming it and the job that publishes it: re-run that job); one
there with other bytes is a ``PlanMismatch``. Nothing is written before. Then the
release is prepared as one machine prepares it, but nothing is built that the plan and
its jobs built from the same sources: each helper's wheel is downloaded from the index
at the plan's sha256 when every helper folder is as the plan's commit has it (else the
wheels are built, each checked against the plan's sha256), each image's wheelhouse is
resolved from its committed lock, and each image is taken from the registry at the
plan's digest (its SBOM and YAMLs need its inputs and digest alone; a job built it and
checked it against the plan before pushing it). Its config's labels,
read from the registry, must be those kiln gives an image built from this commit's
inputs (its helpers' and third-party wheels' versions, its base, its name and
version), else a ``PlanMismatch``. Everything is recorded with what the plan said each
job would do: a wheel the plan publishes is "published", an image it builds "pushed".
So the outputs are, byte for byte, those of a one-machine release of the same commit
started from the plan's state.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from kiln._context import Context, Services, Target, connect
from kiln._errors import ConfigError, PlanMismatch, ReleaseIncomplete
from kiln._images.inputs import ImageInputs
from kiln._images.oci.builder import image_labels
from kiln._images.oci.published import (
    PublishedImage,
    PublishedIndex,
    published_image,
    published_index,
)
from kiln._release.job import (
    PlannedJob,
    check_release,
    image_problems,
    read_jobs,
    unmade_pages,
    wheel_problems,
)
from kiln._release.jobs import ImageWork
from kiln._release.plan import ReleasePlan
from kiln._release.prepare import ImageSource, prepare, staging_dir
from kiln._release.stages import Outcome, make_plan, record
from kiln._release.tag import TagRelease, check_tag, finish_tag
from kiln._servers.index import files_for
from kiln._util.git import git_output
from kiln._wheels.build import BuiltWheel
from kiln._wheels.wheelhouse import PipDownload
from kiln._workspace.model import Workspace
from kiln._workspace.platforms import PLATFORMS


def finalize(
    ws: Workspace,
    ctx: Context,
    target: Target,
    *,
    plan: Path,
    tag: str | None = None,
    dev: bool = False,
) -> TagRelease | Outcome:
    """Check the whole plan at ``plan`` is published, then write the release's record
    (see the module): `kiln release --tag`'s for ``tag``, else the plain release's."""
    if dev:
        raise ConfigError(
            "--finalize --dev is not supported yet: a dev release's matrix is finalized by "
            "running `kiln release --dev` once more on one machine (it publishes nothing "
            "the jobs published, and writes the manifest)"
        )
    jobs = read_jobs(plan)
    if not jobs:
        raise ConfigError(f"{plan}: a plan of no job; make it again with `kiln plan --jobs K`")
    check_release(ws, jobs[0], tag, dev)
    services = connect(ws, ctx, target)
    check_published(jobs, services)
    ctx.report.stage("finalize", f"finalize: every artifact of {plan} is published")
    published = registry_images(jobs, services)
    wheels = index_wheels(ws, jobs, services) if _helpers_committed(ws, jobs) else None
    if tag is not None:
        checked = check_tag(ws, ctx, target, tag, services, published=published, wheels=wheels)
        full = _as_planned(checked.planned.plan, jobs, services)
        outcome = record(
            ws, checked.prepared, full, services, digests=_digests(full),
            release_version=checked.planned.release, report=ctx.report,
        )  # fmt: skip
        return finish_tag(ws, checked, outcome, ctx.report)
    prepared = prepare(
        ws, services, wheel_cache=ctx.options.wheel_cache, report=ctx.report, published=published,
        wheels=wheels,
    )  # fmt: skip
    full = _as_planned(make_plan(ws, prepared, services), jobs, services)
    return record(
        ws, prepared, full, services, digests=_digests(full), release_version=None,
        report=ctx.report,
    )  # fmt: skip


def check_published(jobs: Sequence[PlannedJob], services: Services) -> None:
    """Every wheel and image of the plan's ``jobs`` is published with the plan's bytes:
    a ``ReleaseIncomplete`` names each one missing and its job, a ``PlanMismatch``
    each one there with other bytes."""
    missing: list[tuple[str, int]] = []
    wrong: list[str] = []
    # every project's page at once, each once (hundreds of wheels: not one at a time)
    wanted = {(w.project, w.filename) for job in jobs for w in job.publishes.values()}
    pages = files_for(services.index, sorted(wanted))
    for job in jobs:
        for wheel in job.publishes.values():
            there = pages[wheel.project].get(wheel.filename)
            if there is None:
                missing.append((f"{wheel.filename} is not on {services.index.url}", job.number))
            elif there != wheel.sha256:
                wrong.append(
                    f"{wheel.filename}: the index has sha256 {there}, the plan {wheel.sha256}"
                )
        for image in job.images:
            if _image_missing(image, services, wrong):
                missing.append(
                    (f"{image.repository}:{image.tag} is not in the registry", job.number)
                )
    source = jobs[0].source
    if missing:
        lines = [f"{m} (job {j} publishes it: re-run job {j})" for m, j in missing] + wrong
        rerun = ", ".join(str(j) for j in sorted({j for _, j in missing}))
        raise ReleaseIncomplete(
            f"{source}: {len(missing)} artifact(s) of the plan not published yet, so nothing "
            "was written:\n" + "\n".join(f"  - {line}" for line in lines) + "\n"
            f"re-run job(s) {rerun} of the matrix (a re-run publishes only what is missing), "
            "then finalize again"
        )
    if wrong:
        raise PlanMismatch(
            f"{source}: the servers hold other bytes than the plan says, so nothing was "
            "written:\n" + "\n".join(f"  - {w}" for w in wrong) + "\n"
            "something else published under these versions since the plan was made: make "
            "the plan again from this commit and re-run every job"
        )


def _helpers_committed(ws: Workspace, jobs: Sequence[PlannedJob]) -> bool:
    """Whether every helper folder is as the plan's commit has it: the plan names a
    commit (``check_release`` found it is HEAD) and git lists no change in any helper
    folder, tracked or untracked. Then the plan's wheels were built from these very
    sources; else (no commit, an edit) finalize builds the wheels and checks each."""
    if jobs[0].revision is None:
        return False
    folders = [str(h.path.relative_to(ws.root)) for h in ws.helpers]
    changed = git_output(ws.root, "status", "--porcelain", "--untracked-files=all", "--", *folders)
    return changed == ""


def index_wheels(
    ws: Workspace, jobs: Sequence[PlannedJob], services: Services
) -> tuple[BuiltWheel, ...]:
    """Each helper's wheel, downloaded from the index at the plan's sha256 into the
    staging folder instead of built (``check_published`` found each there; the plan
    built it from these committed sources, ``_helpers_committed``, and the job that
    uploaded it built it again and checked it against the plan first): a cold build of
    200 helpers' wheels was most of a finalize job's work. A helper of this commit whose
    wheel the plan lacks is a ``PlanMismatch``."""
    # By name-version, as a wheel's filename starts (a helper's ``wheel_stem``).
    planned = {
        "-".join(w.filename.split("-", 2)[:2]): w
        for j in jobs
        for w in j.publishes.values()
        if w.kind == "helper"
    }
    fetch = services.sources or PipDownload(services.runner)
    staging = staging_dir(ws)
    shutil.rmtree(staging, ignore_errors=True)
    missing = [h for h in ws.helpers if h.wheel_stem not in planned]
    if missing:
        raise PlanMismatch(
            f"{jobs[0].source}: what this commit builds is not the plan's, so nothing was "
            "written:\n"
            + "\n".join(f"  - {h.wheel_stem}: this commit releases it, the plan does not"
                        for h in missing)
            + "\nmake the plan again from this commit and re-run every job"
        )  # fmt: skip
    wheels = []
    for helper in ws.helpers:
        wheel = planned[helper.wheel_stem]
        path = fetch.fetch_file(
            wheel.project, wheel.filename, wheel.sha256, index_url=f"{services.index.url}/simple/",
            dest=staging,
        )  # fmt: skip
        wheels.append(
            BuiltWheel(helper.name, helper.distribution, helper.version, path, wheel.sha256)
        )
    return tuple(wheels)


def registry_images(jobs: Sequence[PlannedJob], services: Services) -> ImageSource:
    """Each image of this commit, read from the registry at the plan's digest (every
    platform's image of an index too) instead of built: ``check_published`` found each
    there. Its config's labels must be what kiln labels an image built from the inputs
    it is given (see the module); an image the plan lacks, or other labels, is a
    ``PlanMismatch``."""
    planned = {i.name: i for j in jobs for i in j.images}

    def read(inputs: ImageInputs, source: str | None) -> PublishedImage | PublishedIndex:
        name = inputs.image.name
        work = planned.get(name)
        if work is None:
            raise PlanMismatch(
                f"{jobs[0].source}: what this commit builds is not the plan's, so nothing "
                f"was written:\n  - {name}: this commit releases it, the plan does not\n"
                "make the plan again from this commit and re-run every job"
            )
        if not inputs.wheelhouses:
            _check_labels(
                work, work.digest, inputs, source=source, architecture=None, services=services
            )
            return published_image(work.digest)
        houses = dict(inputs.wheelhouses)
        platforms = inputs.image.platforms
        if tuple(p for p, _ in work.platforms) != tuple(platforms):
            raise PlanMismatch(
                f"{jobs[0].source}: {name} is made for {', '.join(platforms)}, the plan's "
                f"index for {', '.join(p for p, _ in work.platforms) or 'one platform'}: make "
                "the plan again from this commit and re-run every job"
            )
        for number, (platform, digest) in enumerate(work.platforms):
            arch = None if number == 0 else PLATFORMS[platform][0]
            of = dataclasses.replace(inputs, wheelhouse=houses[platform])
            _check_labels(work, digest, of, source=source, architecture=arch, services=services)
        return published_index(work.digest, work.platforms)

    return read


def _check_labels(
    work: ImageWork,
    digest: str,
    inputs: ImageInputs,
    *,
    source: str | None,
    architecture: str | None,
    services: Services,
) -> None:
    """The registry's image ``digest`` of ``work``'s repository carries every label kiln
    gives the image it builds from ``inputs`` (for ``architecture``), with the same value."""
    there = services.registry.labels(work.repository.partition("/")[2], digest)
    expected = image_labels(inputs, source=source, architecture=architecture)
    differ = [
        f"{key}: the registry's image has {there.get(key)!r}, this commit's inputs give {value!r}"
        for key, value in sorted(expected.items())
        if there.get(key) != value
    ]
    if differ:
        raise PlanMismatch(
            f"{work.repository}@{digest} ({work.name}) was not built from this commit's "
            "inputs, so nothing was written:\n" + "\n".join(f"  - {d}" for d in differ) + "\n"
            "the plan and its jobs ran on other inputs (another commit, lock or kiln): make "
            "the plan again from this commit and re-run every job"
        )


def _image_missing(image: ImageWork, services: Services, wrong: list[str]) -> bool:
    """Whether the registry lacks ``image``'s tag; one there but not at the plan's digest
    (or, an index, not over the plan's platform images) goes to ``wrong``."""
    ref = f"{image.repository}:{image.tag}"
    host, _, path = image.repository.partition("/")
    if host != services.registry.host:
        wrong.append(
            f"{ref}: the plan is for registry {host}, this run's is {services.registry.host}"
        )
        return False
    there = services.registry.digest(path, image.tag)
    if there is None:
        return True
    if there != image.digest:
        wrong.append(f"{ref}: the registry has {there}, the plan {image.digest}")
    elif image.platforms:
        listed = _index_images(services, path, image.digest)
        wrong += [
            f"{ref}: its index does not list {platform}'s image {digest}, the plan's"
            for platform, digest in image.platforms
            if digest not in listed
        ]
    return False


def _index_images(services: Services, path: str, digest: str) -> set[str]:
    """The digests of the images the index ``path@digest`` lists."""
    data = json.loads(services.registry.manifest(path, digest, lists=True))
    return {str(row.get("digest")) for row in data.get("manifests", ())}


def _as_planned(plan: ReleasePlan, jobs: Sequence[PlannedJob], services: Services) -> ReleasePlan:
    """``plan`` (made now: everything published, so skipped) checked against the plan
    file's builds and sha256s, with each step's action as the plan file's: what the
    matrix did, as a one-machine release records it."""
    wheels = {f: w for j in jobs for f, w in j.publishes.items()}
    images = {i.name: i for j in jobs for i in j.images}
    steps = {s.name: s for s in plan.images}
    files = {s.filename: s for s in plan.files}
    pages = unmade_pages(wheels.values(), files, services)
    problems = [
        p for f, w in sorted(wheels.items()) for p in wheel_problems(w, files.get(f), pages)
    ]
    problems += [p for i in images.values() for p in image_problems(i, steps.get(i.name), services)]
    unplanned = sorted({*files}.difference(wheels)) + sorted({*steps}.difference(images))
    problems += [f"{name}: this commit releases it, the plan does not" for name in unplanned]
    if problems:
        raise PlanMismatch(
            f"{jobs[0].source}: what this commit builds is not the plan's, so nothing was "
            "written:\n" + "\n".join(f"  - {p}" for p in problems) + "\n"
            "the plan was made from other inputs (another commit, lock or kiln): make the "
            "plan again from this commit and re-run every job"
        )
    return dataclasses.replace(
        plan,
        files=tuple(dataclasses.replace(s, action=wheels[s.filename].action) for s in plan.files),
        images=tuple(dataclasses.replace(s, action=images[s.name].action) for s in plan.images),
    )


def _digests(plan: ReleasePlan) -> dict[str, str]:
    return {s.name: s.digest for s in plan.images}
