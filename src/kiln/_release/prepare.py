"""A release's local work: build the helper wheels (into kiln's staging folder), resolve
each image's wheelhouse from its committed lock, and build each image with kiln, so its
digest is known before anything is asked of a server or published."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from importlib.metadata import version as dist_version
from pathlib import Path

from kiln._components.yamls import PackagesInputs
from kiln._context import Services
from kiln._errors import ConfigError
from kiln._images.inputs import ImageInputs, OciBuilder, OsBase, image_inputs
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.index import BuiltIndex
from kiln._images.oci.multiarch import build_index
from kiln._images.registry_base import build_ref
from kiln._lock.format import Lock, lock_path, read_lock
from kiln._lock.inputs import check_fresh
from kiln._locking.debian import fresh_os_lock
from kiln._release.plan import FileCandidate
from kiln._report import Reporter
from kiln._wheels.build import BuiltWheel, build_wheels, wheel_cache_dir
from kiln._wheels.sdist import SdistBuilder, sdist_cache_dir
from kiln._wheels.verify import check_compiles
from kiln._wheels.wheelhouse import PipDownload, Wheelhouse, resolve_wheelhouse
from kiln._workspace.model import Image, Workspace
from kiln._workspace.platforms import python_platform

# Packages mode's base (the OS layer and pip): what its pods' `python3 -m pip install`
# needs. Debian marks its Python as managed by apt (PEP 668); no apt runs in a pod.
PACKAGES_ENV: tuple[tuple[str, str], ...] = (
    ("PIP_BREAK_SYSTEM_PACKAGES", "1"),
    ("PIP_ROOT_USER_ACTION", "ignore"),
)


# Where a prepare takes an image's bytes from instead of building it (given the inputs and
# the workspace's source): the matrix's finalize step reads each image the jobs pushed
# from the registry, at the plan's digest (``kiln._release.finalize``).
ImageSource = Callable[[ImageInputs, str | None], BuiltImage | BuiltIndex]


@dataclass(frozen=True)
class Prepared:
    wheels: tuple[BuiltWheel, ...]
    images: tuple[ImageInputs, ...]
    packages: PackagesInputs | None = None

    @property
    def wheelhouses(self) -> Mapping[str, Wheelhouse]:
        """Each image's wheelhouse, by image name."""
        return {i.image.name: i.wheelhouse for i in self.images}

    @property
    def image_refs(self) -> Mapping[str, str]:
        """Each image's ``repository@digest``, by image name (what its YAMLs pin)."""
        return {i.image.name: f"{i.repository}@{i.digest}" for i in self.images}

    def mirror_candidates(self) -> tuple[FileCandidate, ...]:
        seen: dict[str, FileCandidate] = {}
        # Every platform's wheels: a clone releases from the private index alone.
        houses = [i.wheelhouse for i in self.images]
        houses += [house for i in self.images for _, house in i.wheelhouses]
        if self.packages is not None:
            houses.append(self.packages.wheelhouse)
            houses += [house for _, house in self.packages.wheelhouses]
        for house in houses:
            for w in house.mirror():  # wheels kiln built from sdists: their sources
                seen[w.filename] = FileCandidate("mirror", w.name, w.version, w.path, w.sha256)
        return tuple(seen[k] for k in sorted(seen))


def kfp_version() -> str:
    return dist_version("kfp")


def staging_dir(workspace: Workspace) -> Path:
    """Where a release builds its wheels before the plan is accepted (kiln's own state)."""
    return workspace.state_dir / "staging" / "wheels"


def prepare(
    workspace: Workspace,
    services: Services,
    *,
    images: bool = True,
    wheel_cache: bool = True,
    report: Reporter | None = None,
    select: Collection[str] | None = None,
    wheels: tuple[BuiltWheel, ...] | None = None,
    published: ImageSource | None = None,
    helpers: Collection[str] | None = None,
) -> Prepared:
    """Build wheels (into the staging folder) and resolve wheelhouses: nothing is published,
    and nothing is written outside kiln's state folder. Without ``images``, only the
    wheels; with ``select``, only the images (and packages mode's pseudo-image) it names
    are resolved and built (a job of a release matrix: its share); ``wheels``: the ones an
    earlier ``prepare`` of this workspace built (and checked) in this process, not built
    again; ``published``: where each image's bytes come from instead of kiln's builder
    (the images are resolved, not built); ``helpers``: only these helpers' wheels are
    built (a matrix job's: what its images hold and the wheels it publishes)."""
    report = report or Reporter.null()
    selected = list(workspace.locked) if images else []
    if select is not None:
        selected = [i for i in selected if i.name in select]
    # Every image is built from its committed lock: a missing or stale one stops the
    # release before anything is built.
    locks: dict[str, Lock] = {}
    for image in selected:
        locks[image.name] = read_lock(image)
        check_fresh(locks[image.name], workspace, image, kfp_version())
    # The committed OS lock, checked fresh, when a selected image is built on it.
    os_lock = fresh_os_lock(workspace) if any(i.base is None for i in selected) else None
    if wheels is None:
        wheels = _build(workspace, wheel_cache, report, helpers)
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

        def resolve(platform: str | None, image: Image = image, lock: Lock = lock) -> Wheelhouse:
            return resolve_wheelhouse(
                workspace, image, wheels, lock=lock, pages=pages, download=download,
                sdists=sdists, note=report.step, platform=platform,
            )  # fmt: skip

        wheelhouse = resolve(None)
        # Every platform's wheels (OCI platform -> its wheelhouse), when the image is
        # made for more than one: the first's is ``wheelhouse``.
        first, *others = image.platforms
        houses = {first: wheelhouse} if others else {}
        houses |= {p: resolve(python_platform(image.platform, p)) for p in others}
        report.detail(
            f"    {len(wheelhouse.third_party)} third-party wheel(s), "
            f"{len(wheelhouse.helpers)} helper wheel(s)"
        )
        if image is workspace.packages:  # installed by pods at start
            if isinstance(base, str):
                packages = PackagesInputs(base, wheelhouse, tuple(houses.items()))
                continue
            built = _packages_base(
                workspace, image, base, wheelhouse, tuple(houses), services=services,
                report=report, published=published,
            )  # fmt: skip
            inputs.append(built)
            ref = f"{built.repository}@{built.digest}"
            # Its pods install each platform's files: every platform's wheelhouse.
            packages = PackagesInputs(ref, wheelhouse, tuple(houses.items()))
            continue
        found = image_inputs(
            image,
            registry=services.registry.host,
            org=workspace.org,
            base=base,
            wheelhouse=wheelhouse,
        )
        found = dataclasses.replace(found, wheelhouses=tuple(houses.items()))
        inputs.append(_build_with_kiln(workspace, found, services, report, published))
    return Prepared(wheels=wheels, images=tuple(inputs), packages=packages)


def _build(
    workspace: Workspace,
    wheel_cache: bool,
    report: Reporter,
    names: Collection[str] | None = None,
) -> tuple[BuiltWheel, ...]:
    helpers = [h for h in workspace.helpers if names is None or h.name in names]
    report.stage("wheels", f"wheels: building {len(helpers)} helper(s)")
    staging = staging_dir(workspace)
    cache = wheel_cache_dir(workspace.state_dir, enabled=wheel_cache)
    # Kept from the last run: a wheel there with its cache entry's sha256 is not copied
    # again (500 wheels removed and copied back at N=500); anything else is removed.
    wheels = build_wheels(
        helpers,
        staging,
        cache_dir=cache,
        note=report.step,
    )
    built = {w.path.name for w in wheels}
    for stale in staging.iterdir() if staging.is_dir() else ():
        if stale.name in built:
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    for w in wheels:
        report.detail(f"    {w.filename}  sha256:{w.sha256[:12]}")
    # A wheel whose sources do not compile stops here: before the plan, before any upload.
    # ... compiled once per wheel (by its sha256) while the cache is on.
    memo = None if cache is None else cache.parent / "compiled"
    check_compiles(wheels, workspace.helpers, workspace.root, memo=memo)
    return wheels


def _packages_base(
    workspace: Workspace,
    image: Image,
    base: OsBase,
    wheelhouse: Wheelhouse,
    platforms: tuple[str, ...],
    *,
    services: Services,
    report: Reporter,
    published: ImageSource | None = None,
) -> ImageInputs:
    """Packages mode's base, built by kiln: the OS layer and the locked pip, tagged by
    its own digest (its YAMLs pin the digest; the tag only names it in the registry).
    For more than one of ``platforms``, an image each (pip is one pure wheel) and the
    index over them."""
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
        wheelhouses=tuple((p, house) for p in platforms),
    )
    built = _build_with_kiln(workspace, inputs, services, report, published)
    return dataclasses.replace(built, tag=f"py{image.python}-{built.digest[7:19]}")


def image_builder(services: Services, image: str) -> OciBuilder:
    """``services``' image builder, or an error naming the commands that have one."""
    if services.oci is None:
        raise ConfigError(
            f"images/{image}: this command runs without kiln's image builder: run "
            "`kiln release`, `kiln bake` or `kiln components --local`"
        )
    return services.oci


def _build_with_kiln(
    workspace: Workspace,
    inputs: ImageInputs,
    services: Services,
    report: Reporter,
    published: ImageSource | None = None,
) -> ImageInputs:
    """``inputs`` with the image kiln builds from them (or, ``published``, the one it
    reads): its digest is known from here on."""
    what = inputs.image.name if inputs.tag == "unbuilt" else inputs.ref
    if published is not None:
        read = published(inputs, workspace.source)
        report.stage("image", f"image {what}: published as {read.digest} (not built)")
        return dataclasses.replace(inputs, built=read)
    report.stage("image", f"image {what}: building with kiln on {inputs.base_name}")
    # Only committed values go into the image: the git remote differs from clone to clone.
    oci = image_builder(services, inputs.image.name)
    built: BuiltImage | BuiltIndex
    if inputs.wheelhouses:  # more than one platform: an image each, and the index
        built = build_index(oci, inputs, dict(inputs.wheelhouses), source=workspace.source)
        for platform, image in built.images:
            report.detail(f"    {what} for {platform}: {image.digest}")
        report.detail(f"    {what}: index {built.digest}")
    else:
        built = oci.build(inputs, source=workspace.source)[0]
        report.detail(f"    {what}: {built.digest}")
    return dataclasses.replace(inputs, built=built)
