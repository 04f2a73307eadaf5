"""The release: prepare (local only) -> plan (ask the servers) -> execute (stage by stage).

Stages: wheels -> publish (helpers + third-party mirror) -> bake -> push ->
components -> pipelines -> manifest. Every stage is idempotent: re-running an
interrupted release skips what is already published and finishes the rest.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from kiln import __version__
from kiln._components.catalog import Entry, read_yaml, write_catalog
from kiln._components.generate import (
    cached,
    compile_pipeline,
    files_digest,
    generate_component,
    inputs_key,
)
from kiln._components.packages import check_imports, closure, install_items, pip_options
from kiln._debian.locking import fresh_os_lock
from kiln._errors import ArtifactAltered, CommandFailed, ConfigError, PublishedConflict
from kiln._images.base import build_ref
from kiln._images.inputs import ImageInputs, OciBuilder, OsBase, image_inputs
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.sbom import image_sbom, sbom_path
from kiln._release.manifest import (
    FileRecord,
    ImageRecord,
    Manifest,
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
from kiln._report import Reporter
from kiln._servers.index import Index
from kiln._servers.registry import Registry
from kiln._util.cmd import Runner, call
from kiln._util.files import sha256_file
from kiln._util.git import revision
from kiln._wheels.build import BuiltWheel, build_wheels, wheel_cache_dir
from kiln._wheels.lock import Lock, Pages, check_fresh, lock_path, read_lock
from kiln._wheels.sdist import SdistBuilder, SourceFetch, sdist_cache_dir
from kiln._wheels.wheelhouse import (
    Downloader,
    PipDownload,
    SimplePages,
    Wheelhouse,
    resolve_wheelhouse,
)
from kiln._workspace.model import Component, Image, Pipeline, Workspace


@dataclass(frozen=True)
class Services:
    """The side effects a release needs, passed in (fakes in unit tests)."""

    index: Index
    registry: Registry
    # kiln's image builder (None: a command that builds no image, e.g. `kiln publish`)
    oci: OciBuilder | None = None
    runner: Runner = call
    # Where the index keeps its files, when kiln knows (the local stack), for messages.
    index_storage: Path | None = None
    # The upstream index's simple pages, by URL; fetches locked wheels (None: pip download).
    upstream_pages: Callable[[str], Pages] = SimplePages
    download: Downloader | None = None
    # Fetches the sdists and build backends of wheels a lock builds (the CLI passes the
    # same PipDownload as `download`: it holds the private index's credentials).
    sources: SourceFetch | None = None


@dataclass(frozen=True)
class PackagesInputs:
    """Packages mode: the plain Python base its pods start from (reference as pinned) and
    the wheelhouse of its lock, whose files the pods install by URL and sha256."""

    base: str
    wheelhouse: Wheelhouse


@dataclass(frozen=True)
class Prepared:
    wheels: tuple[BuiltWheel, ...]
    images: tuple[ImageInputs, ...]
    packages: PackagesInputs | None = None

    def mirror_candidates(self) -> tuple[FileCandidate, ...]:
        seen: dict[str, FileCandidate] = {}
        houses = [i.wheelhouse for i in self.images]
        if self.packages is not None:
            houses.append(self.packages.wheelhouse)
        for house in houses:
            for w in house.mirror():  # wheels kiln built from sdists: their sources
                seen[w.filename] = FileCandidate("mirror", w.name, w.version, w.path, w.sha256)
        return tuple(seen[k] for k in sorted(seen))


@dataclass
class Outcome:
    plan: ReleasePlan
    manifest: Manifest
    manifest_path: Path
    uploaded: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)


def kfp_version() -> str:
    return dist_version("kfp")


def staging_dir(workspace: Workspace) -> Path:
    """Where a release builds its wheels before the plan is accepted (kiln's own state)."""
    return workspace.state_dir / "staging" / "wheels"


# Packages mode's base (the OS layer and pip): what its pods' `python3 -m pip install`
# needs. Debian marks its Python as managed by apt (PEP 668); no apt runs in a pod.
PACKAGES_ENV: tuple[tuple[str, str], ...] = (
    ("PIP_BREAK_SYSTEM_PACKAGES", "1"),
    ("PIP_ROOT_USER_ACTION", "ignore"),
)


def prepare(
    workspace: Workspace,
    services: Services,
    *,
    images: bool = True,
    wheel_cache: bool = True,
    report: Reporter | None = None,
) -> Prepared:
    """Build wheels (into the staging folder) and resolve wheelhouses: nothing is published,
    and nothing is written outside kiln's state folder. Without ``images``, only the
    wheels."""
    report = report or Reporter.null()
    selected = list(workspace.locked) if images else []
    # Every image is built from its committed lock: a missing or stale one stops the
    # release before anything is built.
    locks: dict[str, Lock] = {}
    for image in selected:
        locks[image.name] = read_lock(image)
        check_fresh(locks[image.name], workspace, image, kfp_version())
    # The committed OS lock, checked fresh, when a selected image is built on it.
    os_lock = fresh_os_lock(workspace) if any(i.base is None for i in selected) else None
    report.stage("wheels", f"wheels: building {len(workspace.helpers)} helper(s)")
    staging = staging_dir(workspace)
    shutil.rmtree(staging, ignore_errors=True)
    wheels = build_wheels(
        workspace.helpers,
        staging,
        cache_dir=wheel_cache_dir(workspace.state_dir, enabled=wheel_cache),
    )
    for w in wheels:
        report.detail(f"    {w.filename}  sha256:{w.sha256[:12]}")
    inputs: list[ImageInputs] = []
    packages: PackagesInputs | None = None
    pages = [
        (f"{services.index.url}/simple/", services.index),
        (workspace.upstream_index, services.upstream_pages(workspace.upstream_index)),
    ]
    download = services.download or PipDownload(services.runner)
    fetch = services.sources or PipDownload(services.runner)
    sdists = SdistBuilder(
        fetch, services.runner, cache_dir=sdist_cache_dir(workspace.state_dir), report=report
    )
    for image in selected:
        lock = locks[image.name]
        registry_base = build_ref(image, lock)
        base: str | OsBase
        if registry_base is not None:
            base = registry_base
        elif os_lock is not None:
            base = OsBase.of(os_lock, image)
        else:  # pragma: no cover - the OS lock is read whenever an image has no base
            raise ValueError(f"{image.name}: no OS lock read")
        report.stage(
            "wheelhouse",
            f"wheelhouse: {image.name} (helpers: {', '.join(image.helpers) or 'none'})",
        )
        wheelhouse = resolve_wheelhouse(
            workspace,
            image,
            wheels,
            lock=lock,
            pages=pages,
            download=download,
            sdists=sdists,
        )
        report.detail(
            f"    {len(wheelhouse.third_party)} third-party wheel(s), "
            f"{len(wheelhouse.helpers)} helper wheel(s)"
        )
        if image is workspace.packages:  # installed by pods at start
            if isinstance(base, str):
                packages = PackagesInputs(base=base, wheelhouse=wheelhouse)
                continue
            built = _packages_base(
                workspace, image, base, wheelhouse, services=services, report=report
            )
            inputs.append(built)
            packages = PackagesInputs(f"{built.repository}@{built.digest}", wheelhouse)
            continue
        found = image_inputs(
            image,
            registry=services.registry.host,
            org=workspace.org,
            base=base,
            wheelhouse=wheelhouse,
        )
        inputs.append(_build_with_kiln(workspace, found, services, report))
    return Prepared(wheels=wheels, images=tuple(inputs), packages=packages)


def _packages_base(
    workspace: Workspace,
    image: Image,
    base: OsBase,
    wheelhouse: Wheelhouse,
    *,
    services: Services,
    report: Reporter,
) -> ImageInputs:
    """Packages mode's base, built by kiln: the OS layer and the locked pip, tagged by
    its own digest (its YAMLs pin the digest; the tag only names it in the registry)."""
    pip = tuple(w for w in wheelhouse.third_party if w.name == "pip")
    if not pip:
        raise ConfigError(
            f"{lock_path(image)}: it pins no pip, which packages mode's base needs (its pods "
            "run `python3 -m pip install`): run `kiln lock packages`"
        )
    house = Wheelhouse(image=image.name, requirements=(), third_party=pip, helpers=())
    inputs = ImageInputs(
        image=dataclasses.replace(image, version=f"python{image.python}-pip{pip[0].version}"),
        repository=f"{services.registry.host}/{workspace.org}/{image.name}",
        tag="unbuilt",
        base=base,
        wheelhouse=house,
        smoke=("pip",),
        env=PACKAGES_ENV,
    )
    built = _build_with_kiln(workspace, inputs, services, report)
    return dataclasses.replace(built, tag=f"py{image.python}-{built.digest[7:19]}")


def _oci(services: Services, image: str) -> OciBuilder:
    if services.oci is None:
        raise ConfigError(
            f"images/{image}: this command runs without kiln's image builder: run "
            "`kiln release`, `kiln bake` or `kiln components --local`"
        )
    return services.oci


def _build_with_kiln(
    workspace: Workspace, inputs: ImageInputs, services: Services, report: Reporter
) -> ImageInputs:
    """``inputs`` with the image kiln builds from them: its digest is known from here on."""
    what = inputs.image.name if inputs.tag == "unbuilt" else inputs.ref
    report.stage("image", f"image {what}: building with kiln on {inputs.base_name}")
    # Only committed values go into the image: the git remote differs from clone to clone.
    oci = _oci(services, inputs.image.name)
    built, base = oci.build(inputs, source=workspace.source)
    report.detail(f"    {what}: {built.digest}")
    return dataclasses.replace(inputs, built=built, base_id=base.image_id)


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
    published: dict[str, dict[str, str]] = {}
    files = []
    for c in candidates:
        if c.project not in published:
            published[c.project] = dict(services.index.files(c.project))
        files.append((c, published[c.project]))
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
    uploaded once more."""

    def listed(project: str, path: Path) -> str | None:
        return index.files(project).get(path.name)

    try:
        index.upload([path for _, path, _ in files])
    except CommandFailed:
        missing = [(p, path, sha) for p, path, sha in files if listed(p, path) != sha]
        if len(missing) == len(files):
            raise
        (report or Reporter.null()).detail(
            f"    {len(files) - len(missing)} file(s) were uploaded meanwhile, with the same "
            "bytes (another run of this release)"
        )
        if missing:
            index.upload([path for _, path, _ in missing])
    for project, path, sha in files:
        there = listed(project, path)
        if there != sha:
            raise CommandFailed(
                f"after upload, the index lists {path.name} with sha256 {there}, expected {sha}"
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
    step: ImageStep, inputs: ImageInputs, built: BuiltImage, services: Services, report: Reporter
) -> str:
    """Push an image kiln built; the digest the plan (and the components) pinned, checked."""
    report.stage("push", f"image {inputs.ref}: pushing {built.digest[:19]}...")
    digest = _oci(services, step.name).push(inputs, built)
    there = services.registry.digest(inputs.path_in_registry, inputs.tag)
    if digest != step.digest or there != digest:
        raise CommandFailed(
            f"pushed {inputs.ref} as {digest} (the registry's tag: {there}), but the plan "
            f"pinned {step.digest}; no component YAML was written. Something else moved "
            "the tag or the registry rewrote the manifest: check the registry, then run again"
        )
    return digest


def _write_sbom(workspace: Workspace, inputs: ImageInputs, digest: str) -> SbomRecord:
    """The image's SBOM, written to ``dist/sbom/<image>.cdx.json``."""
    path = sbom_path(workspace.dist_dir, inputs.image.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_sbom(inputs, digest))
    return SbomRecord(path=str(path.relative_to(workspace.root)), sha256=sha256_file(path))


def _image_records(
    workspace: Workspace, plan: ReleasePlan, digests: dict[str, str], pushed_by: str | None
) -> tuple[ImageRecord, ...]:
    records = []
    for step in plan.images:
        inputs = _inputs(step)
        pushed = step.action is Action.BUILD
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
                sbom=_write_sbom(workspace, inputs, digests[step.name]),
                revision=pushed_by if pushed else None,
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
    """Copy the accepted wheels from the staging folder to ``dist/wheels``."""
    target.mkdir(parents=True, exist_ok=True)
    for w in wheels:
        if w.path.parent != target:
            shutil.copy2(w.path, target / w.filename)


def generate(
    workspace: Workspace,
    prepared: Prepared,
    image_refs: Mapping[str, str],
    *,
    index_url: str,
    report: Reporter | None = None,
    out: Path | None = None,
) -> tuple[tuple[FileRecord, ...], tuple[FileRecord, ...]]:
    """Write the pinned component YAMLs (the committed tree, ``workspace.component_dir``,
    or ``out``; a YAML of a component that no longer exists is removed) and compile the
    pipelines (under dist/, or beside ``out``). ``index_url``: the private index
    packages-mode pods install from."""
    pipelines_out = workspace.dist_dir / "pipelines" if out is None else out.parent / "pipelines"
    out = out or workspace.component_dir
    modes = [c.mode for c in workspace.components]
    (report or Reporter.null()).stage(
        "components",
        f"components: {modes.count('image')} pinned to image digests, "
        f"{modes.count('packages')} to hash-checked packages",
    )
    houses = {i.image.name: i.wheelhouse for i in prepared.images}
    records = []
    entries = []
    cache = workspace.state_dir / "cache" / "components"
    # Every component module's bytes: one may import another (a generated YAML holds its
    # function's source, read by KFP from the loaded module).
    sources = files_digest((workspace.root / "pipelines" / "components").glob("*.py"))

    def generated(c: Component, image: str, source: str, **packages: Any) -> Path:
        key = inputs_key(
            kind="component", sources=sources, name=c.name, image=image, source=source,
            packages=packages,
        )  # fmt: skip
        return cached(
            cache, key, out / f"{c.name}.yaml",
            lambda: generate_component(c, image, out, packages=packages or None, source=source),
        )  # fmt: skip

    for c in workspace.components:
        source = str(c.path.relative_to(workspace.root))
        if c.image is not None:
            house = houses[c.image]
            wheels = [w.path for w in house.third_party] + [w.path for w in house.helpers]
            check_imports(c, wheels, where=f"image {c.image}")
            path = generated(c, image_refs[c.image], source)
            pins: tuple[str, ...] = (image_refs[c.image],)
            inside = tuple(f"{w.distribution}=={w.version}" for w in house.helpers)
        else:
            if prepared.packages is None or workspace.packages is None:
                raise ValueError("packages mode's wheelhouse was not prepared")
            installed = closure(
                workspace, c, prepared.packages.wheelhouse, workspace.packages.python
            )
            check_imports(c, [i.path for i in installed], where="its packages")
            options = {
                "packages_to_install": install_items(installed, index_url=index_url),
                **pip_options(index_url),
            }
            path = generated(c, prepared.packages.base, source, **options)
            pins = (
                f"base {prepared.packages.base}",
                *(f"{i.name}=={i.version}" for i in installed),
            )
            helper_dists = {str(canonicalize_name(h.distribution)) for h in workspace.helpers}
            inside = tuple(f"{i.name}=={i.version}" for i in installed if i.name in helper_dists)
        records.append(_file_record(c.name, path, workspace.root, image=c.image))
        entries.append(_catalog_entry(workspace, c, path, pins, inside))
    written = {Path(r.path).name for r in records}
    for stale in out.glob("*.yaml"):
        if stale.name not in written:
            stale.unlink()  # its component is gone
    write_catalog(
        entries, out, title=f"{workspace.org} components",
        generated_by=f"Generated by kiln {__version__} from pipelines/components/: do not edit; "
        "run `kiln components --local`.",
    )  # fmt: skip
    yamls = files_digest(out.glob("*.yaml"))  # what a pipeline's load(name) reads

    def compiled(p: Pipeline) -> Path:
        key = inputs_key(kind="pipeline", source=p.path.read_bytes().hex(), yamls=yamls)
        return cached(
            cache, key, pipelines_out / f"{p.name}.yaml",
            lambda: compile_pipeline(p, out, pipelines_out),
        )  # fmt: skip

    pipelines = tuple(
        _file_record(p.name, compiled(p), workspace.root) for p in workspace.pipelines
    )
    return tuple(records), pipelines


def _catalog_entry(
    workspace: Workspace,
    component: Component,
    path: Path,
    pins: tuple[str, ...],
    helpers: tuple[str, ...],
) -> Entry:
    """The catalog's row of ``component``: its interface read back from its YAML."""
    description, inputs, outputs = read_yaml(path)
    # Where it is committed (also when ``path`` is a scratch copy for --check).
    rel = (workspace.component_dir / path.name).relative_to(workspace.root).as_posix()
    where, how = f'"{rel}"', "load_component_from_file"  # in a clone of this repository
    if workspace.source and workspace.source.startswith("https://github.com/"):
        raw = workspace.source.replace("https://github.com/", "https://raw.githubusercontent.com/")
        where, how = f'"{raw}/vX.Y.Z/{rel}"  # vX.Y.Z: the release tag', "load_component_from_url"
    snippet = f"from kfp import components\n\n{component.name} = components.{how}(\n    {where}\n)"
    return Entry(
        name=component.name,
        source=component.path.relative_to(workspace.root).as_posix(),
        yaml=rel,
        description=description,
        inputs=inputs,
        outputs=outputs,
        mode=component.mode,
        pins=pins,
        helpers=helpers,
        snippet=snippet,
    )


def check_engine(plan: ReleasePlan, services: Services) -> None:
    """An image is smoke-checked by the engine after its push: an engine that cannot be
    reached stops the release before anything is published."""
    if services.oci is not None and any(s.action is not Action.SKIP for s in plan.images):
        services.oci.preflight()


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
    install_wheels(prepared.wheels, workspace.dist_dir / "wheels")
    digests, pushed = bake(workspace, plan, services, report)
    rev = revision(workspace.root)
    images = _image_records(workspace, plan, digests, rev)
    components, pipelines = generate(
        workspace,
        prepared,
        {i.name: i.ref for i in images},
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
    manifest.write(manifest_path)
    report.stage("manifest", f"manifest: {manifest_path}")
    return Outcome(plan, manifest, manifest_path, uploaded, pushed)


def _file_record(name: str, path: Path, root: Path, image: str | None = None) -> FileRecord:
    rel = str(path.relative_to(root))
    return FileRecord(name=name, path=rel, sha256=sha256_file(path), image=image)
