"""kiln's OCI builder as a release uses it: an image's inputs in, its bytes (and so its
digest) out before any push; then the push, which checks the registry stores exactly them.

An image is built for one of its platforms (``platforms``: linux/amd64 by default, the
first one): on kiln's OS base, another platform's image is that architecture's OS
layers, a third-party layer of that platform's wheelhouse and the very helper layer of
the first platform (pure-Python wheels whose bytecode the same Python version writes:
every layer's .pyc is compiled by this machine's architecture's Python of the same OS
lock, so nothing runs emulated), with a config that says its architecture.

The image is pushed by digest, then run by digest with no network (``smoke``): every
baked helper's import package and ``kfp`` must import and ``pip check`` must be clean
but for kfp's intentionally absent client dependencies; only then is its tag put.

The config holds nothing that changes at every commit: ``created`` is the fixed
SOURCE_DATE_EPOCH and the git revision is left out (the release manifest records it),
so an image whose inputs did not change keeps its digest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kiln._errors import ConfigError
from kiln._images.inputs import OsBase, base_label
from kiln._images.oci.assemble import KFP_ENV, PythonLayer, assemble, python_layer
from kiln._images.oci.base_image import (
    BaseImage,
    BlobSource,
    base_image_python,
    probe_scheme,
    pull_base,
)
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.compress import GZIP, check_pinned
from kiln._images.oci.image import BuiltImage, labels, rfc3339
from kiln._images.oci.index import BuiltIndex, Platform
from kiln._images.oci.install import InstallScheme
from kiln._images.oci.interpreter import BaseImagePython
from kiln._images.oci.push import BlobRegistry, probe_index, push_image, push_index
from kiln._images.oci.smoke import (
    ContainerRunner,
    DockerContainers,
    Run,
    smoke_check,
)
from kiln._images.os_layers import OsLayers
from kiln._images.os_tree import host_architecture
from kiln._images.registry_base import split_reference
from kiln._lock.tags import supported_tags
from kiln._servers.credentials import Credentials
from kiln._util.epoch import MTIME
from kiln._wheels.metadata import import_packages
from kiln._workspace.platforms import PLATFORMS, python_platform

if TYPE_CHECKING:
    import docker

    from kiln._images.inputs import ImageInputs


def cache_dir(state_dir: Path) -> Path:
    """The layer cache of a workspace (``.kiln/cache/oci``)."""
    return state_dir / "cache" / "oci"


def image_labels(
    inputs: ImageInputs, *, source: str | None, architecture: str | None = None
) -> dict[str, str]:
    """The labels (and manifest annotations) of an image (for the Debian ``architecture``
    on kiln's OS base; None: the lock's first): no fingerprint, no revision, a fixed
    ``created``. ``source`` must already be free of credentials."""
    wh = inputs.wheelhouse
    extra = {
        "org.kiln.helpers": ",".join(f"{w.distribution}=={w.version}" for w in wh.helpers),
        "org.kiln.third-party": ",".join(f"{w.name}=={w.version}" for w in wh.third_party),
    }
    base = inputs.base
    if not isinstance(base, str):
        if architecture is not None:  # that architecture's OS layers
            base = OsBase(base.lock.of(architecture), base.extras)
        lock = base.lock
        extra["org.kiln.os"] = f"debian {lock.suite} {lock.release} {lock.architecture}"
    key, value = base_label(base)
    extra[key] = value
    return labels(
        title=inputs.image.name,
        version=inputs.image.version,
        created=rfc3339(MTIME),
        source=source,
        base_name=inputs.image.base,  # image.toml's registry base (None: kiln's OS base)
        extra={k: v for k, v in extra.items() if v},
    )


# What runs the smoke check of an image for a platform this machine does not run.
ForeignRunner = Callable[[Platform, BuiltImage], ContainerRunner]

# A base's own Python, run here (``base_image_python``; a fake in unit tests).
PythonOf = Callable[[BaseImage, LayerCache], BaseImagePython]


def build_on(
    base: BaseImage,
    cache: LayerCache,
    groups: Sequence[tuple[str, Sequence[Path]]],
    *,
    platform: str,
    env: Mapping[str, str],
    labels: Mapping[str, str],
    what: str,
    log: Callable[[str], None] = lambda _line: None,
    compiler: BaseImage | None = None,
    python_of: PythonOf = base_image_python,
    sha256s: Mapping[Path, str] | None = None,
) -> tuple[BuiltImage, list[PythonLayer], InstallScheme]:
    """``base`` with one layer per (name, wheels) group that has wheels, each installed
    into the base's scheme and compiled by the base's own Python (or ``compiler``'s: a
    base of this machine's architecture with the same Python, for a foreign ``base``
    whose Python cannot run here); ``platform``: the wheels' (uv's). ``labels`` are also
    the manifest's annotations; ``sha256s``: the wheels' hashed already in this run
    (``python_layer``). The image, its Python layers and the scheme."""
    check_pinned()
    python = python_of(compiler or base, cache)
    scheme = probe_scheme(compiler or base, cache, python)
    tags = supported_tags(scheme.python, platform)
    layers: list[PythonLayer] = []
    for name, wheels in groups:
        if wheels:
            layer = python_layer(
                name, wheels, scheme=scheme, cache=cache, compression=GZIP,
                what=what, compiler=python, tags=tags, sha256s=sha256s,
            )  # fmt: skip
            log(
                f"    {name} layer {layer.blob.digest[:19]} "
                f"({'cached' if layer.cached else 'built'}, {layer.blob.size} bytes)"
            )
            layers.append(layer)
    image = assemble(base, layers, env=env, labels=labels, annotations=labels, what=what)
    return image, layers, scheme


class _LazyContainers:
    """The engine's ContainerRunner, connected on first use (a build needs no engine)."""

    def __init__(
        self, engine: Callable[[], docker.DockerClient], credentials: Credentials | None
    ) -> None:
        self._engine = engine
        self._credentials = credentials
        self._runner: ContainerRunner | None = None

    def __call__(self, image: str, command: Sequence[str]) -> Run:
        if self._runner is None:
            self._runner = DockerContainers(self._engine(), self._credentials)
        return self._runner(image, command)


class KilnBuilder:
    """Builds from the base and the wheelhouse; pushes to ``registry``.

    The base is kiln's OS base (``os_layers()`` gives its layers: from the cache, the
    registry or the Debian mirrors) or a registry image pinned by digest
    (``base_registry(host)`` gives the client). The engine runs the smoke check only.
    ``siblings``: the workspace's other repositories in ``registry``, whose blobs a push
    mounts instead of uploading (the shared OS layer is stored once)."""

    def __init__(
        self,
        engine: Callable[[], docker.DockerClient],
        cache: Path,
        registry: BlobRegistry,
        *,
        base_registry: Callable[[str], BlobSource] | None = None,
        os_layers: Callable[[], OsLayers] | None = None,
        siblings: Sequence[str] = (),
        log: Callable[[str], None] = lambda _line: None,
        containers: ContainerRunner | None = None,
        credentials: Credentials | None = None,
        note: Callable[[str], None] | None = None,
        python_of: PythonOf = base_image_python,
        foreign: ForeignRunner | None = None,
    ) -> None:
        """``note``: one line a person reads (a damaged layer-cache blob rebuilt);
        ``python_of``: a base's Python, which compiles the bytecode and tells the scheme;
        ``foreign``: what runs the smoke check of another platform's image."""
        self._foreign_runner = foreign
        self._python_of = python_of
        self._engine = engine
        self._cache = LayerCache(cache, note=note or log)
        self._registry = registry
        self._base_registry = base_registry
        self._os_layers = os_layers
        self._siblings = tuple(siblings)
        self._log = log
        # ``credentials``: the push registry's, for the engine's pull of the smoke check.
        self._containers = containers or _LazyContainers(engine, credentials)

    def base(self, ref: str | OsBase, architecture: str | None = None) -> BaseImage:
        """The base: kiln's OS base (for the Debian ``architecture``; None: its lock's
        first), or a registry image pinned by digest."""
        if not isinstance(ref, str):
            if self._os_layers is None:
                raise ConfigError(f"{ref.name}: kiln has no source for its OS layers here")
            return self._os_layers().base_image(ref.lock, ref.extras, architecture=architecture)
        if "@sha256:" not in ref:
            raise ConfigError(
                f"base image {ref!r} is not pinned by digest; run `kiln lock` to pin it"
            )
        if self._base_registry is None:
            raise ConfigError(f"base image {ref!r} is in a registry, and kiln has no client")
        return pull_base(self._base_registry(split_reference(ref)[0]), ref, self._cache)

    def _foreign(self, inputs: ImageInputs, platform: str) -> tuple[BaseImage, BaseImage | None]:
        """The base of ``platform``, another platform than the image's first, and the
        base whose Python compiles for it (None: its own runs here)."""
        arch = PLATFORMS[platform][0]
        if isinstance(inputs.base, str):
            raise ConfigError(
                f"{inputs.image.path / 'image.toml'}: kiln builds {platform} on its OS base "
                f"only, not yet on a registry base ({inputs.base}); build it for "
                f"{inputs.image.platforms[0]} alone, or drop base = for kiln's OS base"
            )
        host = host_architecture()
        return self.base(inputs.base, arch), None if arch == host else self.base(inputs.base, host)

    def read_ahead(self, inputs: ImageInputs, platform: str) -> None:
        """Start reading the .debs of ``platform``'s OS layers in the background (another
        platform than the first, built next: ``multiarch``), when kiln builds them here."""
        base = inputs.base
        if isinstance(base, str) or self._os_layers is None:
            return
        layers = self._os_layers()
        arch = PLATFORMS[platform][0]
        layers.read_ahead(base.lock, architecture=arch)
        if base.extras is not None:
            layers.read_ahead(base.lock, base.extras, architecture=arch)

    def build(
        self, inputs: ImageInputs, *, source: str | None, platform: str | None = None
    ) -> tuple[BuiltImage, BaseImage]:
        """The image's bytes (so its digest), and the base it was built on, for
        ``platform`` (OCI, one of the image's; None: its first, built as it always was).
        ``inputs.wheelhouse`` must be that platform's (``resolve_wheelhouse``)."""
        first = inputs.image.platforms[0]
        platform = platform or first
        if platform not in inputs.image.platforms:
            raise ConfigError(
                f"{inputs.image.path / 'image.toml'}: the image is made for "
                f"{', '.join(inputs.image.platforms)}, not {platform}; add it to platforms"
            )
        what = f"image {inputs.ref}" + ("" if platform == first else f" for {platform}")
        compiler, arch = None, None
        if platform == first:
            base = self.base(inputs.base)
        else:
            base, compiler = self._foreign(inputs, platform)
            arch = PLATFORMS[platform][0]
        house = inputs.wheelhouse
        groups = (
            ("third-party", [w.path for w in house.third_party]),
            ("helpers", [w.path for w in house.helpers]),
        )
        env = {**KFP_ENV, **dict(inputs.env), **dict(inputs.image.env)}
        # Each hashed when the wheelhouse was read (third-party: checked against the lock)
        # or the helper's wheel built: the layer keys do not read them again.
        sha256s = {w.path: w.sha256 for w in house.third_party}
        sha256s.update((w.path, w.sha256) for w in house.helpers)
        built, _layers, scheme = build_on(
            base, self._cache, groups, platform=python_platform(inputs.image.platform, platform),
            env=env, labels=image_labels(inputs, source=source, architecture=arch), what=what,
            log=self._log, compiler=compiler, python_of=self._python_of, sha256s=sha256s,
        )  # fmt: skip
        if scheme.python != inputs.image.python:
            raise ConfigError(
                f"{inputs.image.path / 'image.toml'}: python = {inputs.image.python!r}, but "
                f"its base ({base.ref}) runs Python {scheme.python}; set python = "
                f"{scheme.python!r} (then `kiln lock {inputs.image.name}`), or change the base"
            )
        if base.origin is not None and base.origin[0] == self._registry.host:
            # Blob digest -> the push registry's repository that holds it already.
            mounts = {b.digest: base.origin[1] for b in base.layers}
            built = dataclasses.replace(built, mounts=mounts)
        return built, base

    def preflight(self, index_repository: str | None = None) -> None:
        """The engine that will smoke-check a push answers (else ServiceUnavailable); the
        registry takes an OCI index in ``index_repository`` (else CommandFailed)."""
        if isinstance(self._containers, _LazyContainers):
            self._engine()
        if index_repository is not None:
            probe_index(self._registry, index_repository)

    def _mounts(self, repository: str, image: BuiltImage) -> BuiltImage:
        """``image`` with a sibling repository to mount each blob from that the target
        repository lacks and a sibling holds (the shared OS layer, pushed once)."""
        mounts = dict(image.mounts)
        for blob in image.layers:
            if blob.digest in mounts or self._registry.blob_exists(repository, blob.digest):
                continue
            for sibling in self._siblings:
                if sibling != repository and self._registry.blob_exists(sibling, blob.digest):
                    mounts[blob.digest] = sibling
                    break
        return dataclasses.replace(image, mounts=mounts)

    def push(self, inputs: ImageInputs, image: BuiltImage | BuiltIndex) -> str:
        """Push ``image`` by digest (checked by the registry), smoke-check it there, and
        only then tag it: an image that fails its smoke check is never tagged. An index:
        each platform's image pushed and checked (this machine's by the engine, another
        platform's by ``foreign``), then the index, then its tag."""
        repository = inputs.path_in_registry
        # Each helper's import packages (what the smoke check imports, with kfp).
        owners = {p: w.helper for w in inputs.wheelhouse.helpers for p in import_packages(w.path)}
        modules = inputs.smoke if inputs.smoke is not None else ("kfp", *owners)

        def fix(failed: Sequence[str]) -> str:
            return smoke_fix(
                inputs.image.name, inputs.tag, sorted({owners[m] for m in failed if m in owners})
            )

        def verify(digest: str, runner: ContainerRunner | None = None) -> None:
            smoke_check(
                runner or self._containers, f"{inputs.repository}@{digest}", modules,
                log=self._log, fix=fix,
            )  # fmt: skip

        if isinstance(image, BuiltImage):
            pushed = push_image(
                self._registry, repository, inputs.tag, self._mounts(repository, image),
                verify=verify, log=self._log,
            )  # fmt: skip
            return pushed.digest

        def verify_platform(platform: Platform, one: BuiltImage) -> None:
            if platform.architecture == host_architecture():
                verify(one.digest)
            elif self._foreign_runner is None:
                raise ConfigError(
                    f"image {inputs.ref}: kiln has no way to check its {platform} image here"
                )
            else:
                verify(one.digest, self._foreign_runner(platform, one))

        mounted = dataclasses.replace(
            image, images=tuple((p, self._mounts(repository, i)) for p, i in image.images)
        )
        pushed = push_index(
            self._registry, repository, inputs.tag, mounted, verify=verify_platform,
            log=self._log,
        )  # fmt: skip
        return pushed.digest


def smoke_fix(image: str, tag: str, helpers: Sequence[str]) -> str:
    """What to do when ``image``'s smoke check fails (``helpers``: those whose packages
    failed to import): its tag ``tag`` was never put."""
    if helpers:
        named = ", ".join(f"helpers/{h}" for h in helpers)
        bumps = " and ".join(f"`kiln bump {h} patch`" for h in helpers)
        what = (
            f"fix the source of {named}, bump it ({bumps}: its wheel is on the index, and a "
            "published version never changes), and release again"
        )
    else:
        what = f"fix the image's lock or its helpers (`kiln lock {image}`) and release again"
    return (
        f"nothing was tagged ({tag} was not put) and no component YAML or manifest was "
        f"written: {what}"
    )
