"""The release: prepare (local only, ``kiln._release.prepare``) -> plan (ask the servers)
-> execute (stage by stage).

Stages: wheels -> publish (helpers + third-party mirror) -> bake -> push ->
components -> pipelines -> manifest. Every stage is idempotent: re-running an
interrupted release skips what is already published and finishes the rest.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kiln import __version__
from kiln._components.yamls import generate
from kiln._context import Services
from kiln._errors import ArtifactAltered, CommandFailed, PublishedConflict, writing
from kiln._images.inputs import ImageInputs
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.index import BuiltIndex
from kiln._images.oci.sbom_cache import cached_sbom, sbom_path
from kiln._release.manifest import (
    ImageRecord,
    Manifest,
    PlatformRecord,
    SbomRecord,
    WheelRecord,
    recorded_wheels,
)
from kiln._release.plan import (
    Action,
    FileCandidate,
    ImageCandidate,
    ImageStep,
    ReleasePlan,
    plan_release,
)
from kiln._release.prepare import Prepared, image_builder, kfp_version
from kiln._report import Reporter
from kiln._servers.index import Index, files_for
from kiln._util.files import atomic_output, sha256_file, write_atomic
from kiln._util.git import revision
from kiln._wheels.build import BuiltWheel
from kiln._workspace.model import Workspace


@dataclass
class Outcome:
    plan: ReleasePlan
    manifest: Manifest
    manifest_path: Path
    uploaded: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)


def make_plan(workspace: Workspace, prepared: Prepared, services: Services) -> ReleasePlan:
    """Ask the index and the registry what they hold, and plan against it."""
    helper_paths = {h.name: h.path.relative_to(workspace.root) for h in workspace.helpers}
    recorded = recorded_wheels(workspace.dist_dir / "manifest.json", services.index.url)
    candidates = [
        FileCandidate(
            "helper",
            w.distribution,
            w.version,
            w.path,
            w.sha256,
            helper_paths[w.helper],
            recorded=recorded.get(w.filename),
        )
        for w in prepared.wheels
    ] + list(prepared.mirror_candidates())
    published = files_for(services.index, ((c.project, c.path.name) for c in candidates))
    files = [(c, dict(published[c.project])) for c in candidates]
    images = []
    for inputs in prepared.images:
        repo = inputs.path_in_registry
        candidate = ImageCandidate(
            inputs.image.name,
            inputs.tag,
            repo,
            inputs.digest,
            inputs.image.path.relative_to(workspace.root) / "image.toml",
            inputs=inputs,
        )
        images.append((candidate, services.registry.digest(repo, inputs.tag)))
    storage = services.index_storage
    return plan_release(
        files,
        images,
        [(c.name, c.image) for c in workspace.components if c.image is not None],
        [p.name for p in workspace.pipelines],
        restore_hint=f" (the local stack keeps its files in {storage}/)" if storage else "",
    )


def publish(plan: ReleasePlan, services: Services, report: Reporter) -> list[str]:
    todo = [s for s in plan.files if s.action is Action.PUBLISH]
    if not todo:
        report.stage("publish", "publish: everything is already on the index")
        return []
    report.stage("publish", f"publish: uploading {len(todo)} file(s) to {services.index.url}")
    upload_checked(
        services.index,
        [(s.project, s.path, s.sha256) for s in todo if s.path is not None],
        report=report,
    )
    return [s.filename for s in todo]


def upload_checked(
    index: Index, files: Sequence[tuple[str, Path, str]], *, report: Reporter | None = None
) -> None:
    """Upload ``files`` ((project, path, sha256)) and check the index then lists each with
    that sha256 (the upload's exit code alone is not trusted). A failed upload whose
    files then turn out to be there with those bytes was raced by another run of the
    same release, which published them: that is success; what is still missing is
    uploaded once more, as often as the other run keeps winning (each round, fewer
    files). A file listed with other bytes is the error, named."""
    todo = list(files)
    while todo:
        try:
            index.upload([path for _, path, _ in todo])
        except CommandFailed:
            listed = _listed(index, todo)
            raced = [f for f in todo if listed[f[1].name] == f[2]]
            if not raced:
                _check_listed(todo, listed, missing_too=False)
                raise
            (report or Reporter.null()).detail(
                f"    {len(raced)} file(s) were uploaded meanwhile, with the same bytes "
                "(another run of this release)"
            )
            todo = [f for f in todo if f not in raced]
        else:
            break
    _check_listed(files, _listed(index, files))


def _listed(index: Index, files: Sequence[tuple[str, Path, str]]) -> dict[str, str | None]:
    """Filename -> the sha256 the index lists it with (None: not listed), every project's
    page asked for at once (``files_of``)."""
    pages = files_for(index, ((project, path.name) for project, path, _ in files))
    return {path.name: pages[project].get(path.name) for project, path, _ in files}


def _check_listed(
    files: Sequence[tuple[str, Path, str]],
    listed: dict[str, str | None],
    *,
    missing_too: bool = True,
) -> None:
    """A ``CommandFailed`` for a file of ``files`` the index lists with other bytes, or
    (``missing_too``) does not list."""
    for _, path, sha in files:
        there = listed[path.name]
        if there is not None and there != sha:
            raise CommandFailed(
                f"after upload, the index lists {path.name} with sha256 {there}, expected "
                f"{sha}: another release published other bytes under this version; bump "
                "the version and release again"
            )
    for _, path, sha in files if missing_too else ():
        if listed[path.name] is None:
            raise CommandFailed(
                f"after upload, the index does not list {path.name} (sha256 {sha}): the "
                "upload reported success but stored nothing; check the index and re-run"
            )


def _inputs(step: ImageStep) -> ImageInputs:
    if step.inputs is None:
        raise ValueError(f"image step {step.name} carries no inputs: plan it with make_plan")
    return step.inputs


def bake(
    workspace: Workspace, plan: ReleasePlan, services: Services, report: Reporter
) -> tuple[dict[str, str], list[str]]:
    """Build and push what the plan says; return image name -> digest, and what was pushed."""
    digests: dict[str, str] = {}
    pushed: list[str] = []
    for step in plan.images:
        inputs = _inputs(step)
        if step.action is Action.SKIP:
            report.stage("image", f"image {inputs.ref}: up to date ({step.digest[:19]}...)")
            digests[step.name] = step.digest
            continue
        if inputs.built is None:
            raise ValueError(f"image step {step.name}: its inputs were never built")
        digests[step.name] = _push_kiln_built(step, inputs, inputs.built, services, report)
        pushed.append(f"{inputs.ref}@{digests[step.name]}")
    return digests, pushed


def _push_kiln_built(
    step: ImageStep,
    inputs: ImageInputs,
    built: BuiltImage | BuiltIndex,
    services: Services,
    report: Reporter,
) -> str:
    """Push an image kiln built (by digest, smoke-checked, then tagged); the digest the
    plan (and the components) pinned, checked, and the registry's answer for its tag."""
    report.stage("push", f"image {inputs.ref}: pushing {built.digest[:19]}...")
    digest = image_builder(services, step.name).push(inputs, built)
    there = services.registry.digest(inputs.path_in_registry, inputs.tag)
    if digest != step.digest or there != digest:
        raise CommandFailed(
            f"pushed {inputs.ref} as {digest} (the registry's tag: {there}), but the plan "
            f"pinned {step.digest}; no component YAML was written. Something else moved "
            "the tag or the registry rewrote the manifest: check the registry, then run again"
        )
    return digest


def _write_sbom(
    workspace: Workspace, inputs: ImageInputs, digest: str, platform: str | None = None
) -> SbomRecord:
    """The image's SBOM (one ``platform``'s, of an image made for several), written to
    ``dist/sbom/<image>[.<platform>].cdx.json``."""
    path = sbom_path(workspace.dist_dir, inputs.image.name, platform)
    with writing(path):  # a full or read-only dist: a disk fault naming it
        made = cached_sbom(
            inputs.of_platform(platform) if platform else inputs,
            digest,
            workspace.state_dir / "cache" / "sbom",
        )
        write_atomic(path, made)
    return SbomRecord(path=str(path.relative_to(workspace.root)), sha256=sha256_file(path))


def _platform_records(workspace: Workspace, inputs: ImageInputs) -> tuple[PlatformRecord, ...]:
    """Each platform's image of an image made for several, with its SBOM; () for one."""
    if not isinstance(inputs.built, BuiltIndex):
        return ()
    return tuple(
        PlatformRecord(
            platform, image.digest, _write_sbom(workspace, inputs, image.digest, platform)
        )
        for platform, (_, image) in zip(inputs.image.platforms, inputs.built.images, strict=True)
    )


def _image_records(
    workspace: Workspace, plan: ReleasePlan, digests: dict[str, str], pushed_by: str | None
) -> tuple[ImageRecord, ...]:
    records = []
    for step in plan.images:
        inputs = _inputs(step)
        pushed = step.action is Action.BUILD
        platforms = _platform_records(workspace, inputs)
        records.append(
            ImageRecord(
                name=step.name,
                version=step.version,
                repository=inputs.repository,
                tag=inputs.tag,
                digest=digests[step.name],
                ref=f"{inputs.repository}@{digests[step.name]}",
                helpers=tuple(f"{w.distribution}=={w.version}" for w in inputs.wheelhouse.helpers),
                status="pushed" if pushed else "unchanged",
                # An index's: its first platform's (each one's under ``platforms``).
                sbom=platforms[0].sbom
                if platforms
                else _write_sbom(workspace, inputs, digests[step.name]),
                revision=pushed_by if pushed else None,
                platforms=platforms,
            )
        )
    return tuple(records)


def check_refusals(plan: ReleasePlan) -> None:
    """Stop before anything is written when the plan refuses anything."""
    if not plan.refusals:
        return
    because = "nothing was published, because:\n" + "\n".join(f"  - {r}" for r in plan.refusals)
    if plan.altered:
        raise ArtifactAltered(because)
    raise PublishedConflict(because)


def install_wheels(wheels: tuple[BuiltWheel, ...], target: Path) -> None:
    """Copy the accepted wheels from the staging folder to ``dist/wheels``; one already
    there with the same sha256 is left as it is (a no-op release of 500 helpers copied
    all 500)."""
    with writing(target):  # a full or read-only dist: a disk fault naming it
        target.mkdir(parents=True, exist_ok=True)
        for w in wheels:
            there = target / w.filename
            if w.path.parent == target or (there.is_file() and sha256_file(there) == w.sha256):
                continue
            with w.path.open("rb") as src, atomic_output(there) as out:
                shutil.copyfileobj(src, out, 1 << 20)


def check_engine(plan: ReleasePlan, services: Services) -> None:
    """An image is smoke-checked by the engine after its push by digest, before its tag
    is put: an engine that cannot be reached stops the release before anything is
    published. So does a registry that refuses the OCI index an image of several
    platforms is pushed as (probed in the first such image's repository)."""
    todo = [s for s in plan.images if s.action is not Action.SKIP]
    if services.oci is not None and todo:
        indexes = [_inputs(s) for s in todo if isinstance(_inputs(s).built, BuiltIndex)]
        services.oci.preflight(indexes[0].path_in_registry if indexes else None)


def execute(
    workspace: Workspace,
    prepared: Prepared,
    plan: ReleasePlan,
    services: Services,
    *,
    release_version: str | None = None,
    report: Reporter | None = None,
) -> Outcome:
    report = report or Reporter.null()
    check_refusals(plan)
    check_engine(plan, services)
    uploaded = publish(plan, services, report)
    digests, pushed = bake(workspace, plan, services, report)
    outcome = record(
        workspace, prepared, plan, services, digests=digests, release_version=release_version,
        report=report,
    )  # fmt: skip
    outcome.uploaded, outcome.pushed = uploaded, pushed
    return outcome


def record(
    workspace: Workspace,
    prepared: Prepared,
    plan: ReleasePlan,
    services: Services,
    *,
    digests: dict[str, str],
    release_version: str | None,
    report: Reporter,
) -> Outcome:
    """What a release writes once its artifacts are published (``digests``: each image's,
    by name): the SBOMs, the component and pipeline YAMLs, ``dist/manifest.json``. Each
    record says what ``plan`` did ("published", "pushed") or found ("unchanged")."""
    install_wheels(prepared.wheels, workspace.dist_dir / "wheels")
    rev = revision(workspace.root)
    images = _image_records(workspace, plan, digests, rev)
    components, pipelines = generate(
        workspace,
        prepared.wheelhouses,
        {i.name: i.ref for i in images},
        packages=prepared.packages,
        index_url=services.index.url,
        report=report,
    )
    published = {s.filename: s.action for s in plan.files}
    manifest = Manifest(
        kiln=__version__,
        release=release_version,
        revision=rev,
        index=services.index.url,
        registry=services.registry.host,
        kfp=kfp_version(),
        wheels=tuple(
            WheelRecord(
                distribution=w.distribution,
                version=w.version,
                filename=w.filename,
                sha256=w.sha256,
                status="published" if published[w.filename] is Action.PUBLISH else "unchanged",
            )
            for w in prepared.wheels
        ),
        mirrored=tuple(sorted(s.filename for s in plan.files if s.kind == "mirror")),
        images=images,
        components=components,
        pipelines=pipelines,
    )
    manifest_path = workspace.dist_dir / "manifest.json"
    with writing(manifest_path):
        manifest.write(manifest_path)
    report.stage("manifest", f"manifest: {manifest_path}")
    return Outcome(plan, manifest, manifest_path)
