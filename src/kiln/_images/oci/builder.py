"""kiln's OCI builder as a release uses it: an image's inputs in, its bytes (and so its
digest) out before any push; then the push, which checks the registry stores exactly them.

After the push, the image is run by digest with no network (``smoke``): every baked
helper's import package and ``kfp`` must import and ``pip check`` must be clean but
for kfp's intentionally absent client dependencies.

The config holds nothing that changes at every commit: ``created`` is the fixed
SOURCE_DATE_EPOCH and the git revision is left out (the release manifest records it),
so an image whose inputs did not change keeps its digest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import docker

from kiln._errors import ConfigError, ServiceUnavailable
from kiln._images.base import split_reference
from kiln._images.oci.base import (
    BaseImage,
    BlobSource,
    base_python,
    from_registry,
    last_seen,
    load_base,
    probe_scheme,
    pull_base,
)
from kiln._images.oci.build import KFP_ENV, PythonLayer, assemble, python_layer
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.compress import GZIP, check_pinned
from kiln._images.oci.image import BuiltImage, labels, rfc3339
from kiln._images.oci.install import InstallScheme
from kiln._images.oci.layers import MTIME
from kiln._images.oci.push import BlobRegistry, push_image
from kiln._images.oci.smoke import (
    ContainerRunner,
    DockerContainers,
    Run,
    import_packages,
    smoke_check,
)
from kiln._servers.credentials import Credentials
from kiln._wheels.tags import supported_tags

if TYPE_CHECKING:
    from kiln._images.inputs import ImageInputs


def cache_dir(state_dir: Path) -> Path:
    """The layer cache of a workspace (``.kiln/cache/oci``)."""
    return state_dir / "cache" / "oci"


def image_labels(inputs: ImageInputs, *, source: str | None) -> dict[str, str]:
    """The labels (and manifest annotations) of an image: no fingerprint, no
    revision, a fixed ``created``. ``source`` must already be free of credentials."""
    wh = inputs.wheelhouse
    return labels(
        title=inputs.image.name,
        version=inputs.image.version,
        created=rfc3339(MTIME),
        source=source,
        base_name=inputs.image.base,  # image.toml's, not a local stand-in's name
        extra={
            "org.kiln.helpers": ",".join(f"{w.distribution}=={w.version}" for w in wh.helpers),
            "org.kiln.third-party": ",".join(f"{w.name}=={w.version}" for w in wh.third_party),
        },
    )


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
) -> tuple[BuiltImage, list[PythonLayer], InstallScheme]:
    """``base`` with one layer per (name, wheels) group that has wheels, each installed
    into the base's scheme and compiled by the base's own Python; ``labels`` are also
    the manifest's annotations. The image, its Python layers and the scheme."""
    check_pinned()
    python = base_python(base, cache)
    scheme = probe_scheme(base, cache, python)
    tags = supported_tags(scheme.python, platform)
    layers: list[PythonLayer] = []
    for name, wheels in groups:
        if wheels:
            layer = python_layer(
                name, wheels, scheme=scheme, cache=cache, compression=GZIP,
                what=what, compiler=python, tags=tags,
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

    The base comes from its registry when its reference is pinned by digest or names a
    registry host (``base_registry(host)`` gives the client), else from the local
    engine (``engine()``, asked only then; when it cannot be reached, the copy read
    before is used, if the cache holds one). The engine also runs the smoke check."""

    def __init__(
        self,
        engine: Callable[[], docker.DockerClient],
        cache: Path,
        registry: BlobRegistry,
        *,
        base_registry: Callable[[str], BlobSource] | None = None,
        log: Callable[[str], None] = lambda _line: None,
        containers: ContainerRunner | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._engine = engine
        self._cache = LayerCache(cache)
        self._registry = registry
        self._base_registry = base_registry
        self._log = log
        # ``credentials``: the push registry's, for the engine's pull of the smoke check.
        self._containers = containers or _LazyContainers(engine, credentials)

    def base(self, ref: str, *, pinned_id: str | None = None) -> BaseImage:
        """The base ``ref``; ``pinned_id`` is the image ID its lock pins, if it does."""
        if from_registry(ref):
            if self._base_registry is None:
                raise ConfigError(f"base image {ref!r} is in a registry, and kiln has no client")
            return pull_base(self._base_registry(split_reference(ref)[0]), ref, self._cache)
        try:
            client = self._engine()
        except ServiceUnavailable as exc:
            seen = last_seen(ref, self._cache, GZIP)
            if seen is None:
                raise ServiceUnavailable(
                    f"{exc}. kiln reads base image {ref!r} from the engine (its reference "
                    "names no registry) and has no copy of it yet: start the engine once, or "
                    "pin a base that lives in a registry"
                ) from None
            self._log(
                f"    base {ref}: the Docker Engine is not reachable; using the copy read "
                f"before ({seen.image_id[:19]}...)"
            )
            base = seen
        else:
            base = load_base(client, ref, self._cache, GZIP)
        if pinned_id is not None and base.image_id != pinned_id:
            raise ConfigError(
                f"base image {ref!r} is {base.image_id} here, but the lock pins {pinned_id}: "
                "run `kiln lock` if the new base is intended"
            )
        return base

    def build(
        self, inputs: ImageInputs, *, source: str | None, pinned_id: str | None = None
    ) -> tuple[BuiltImage, BaseImage]:
        """The image's bytes (so its digest), and the base it was built on."""
        what = f"image {inputs.ref}"
        base = self.base(inputs.base, pinned_id=pinned_id)
        groups = (
            ("third-party", [w.path for w in inputs.wheelhouse.third_party]),
            ("helpers", [w.path for w in inputs.wheelhouse.helpers]),
        )
        built, _layers, _scheme = build_on(
            base, self._cache, groups, platform=inputs.image.platform,
            env={**KFP_ENV, **dict(inputs.image.env)},
            labels=image_labels(inputs, source=source), what=what, log=self._log,
        )  # fmt: skip
        if base.origin is not None and base.origin[0] == self._registry.host:
            # Blob digest -> the push registry's repository that holds it already.
            mounts = {b.digest: base.origin[1] for b in base.layers}
            built = dataclasses.replace(built, mounts=mounts)
        return built, base

    def preflight(self) -> None:
        """The engine that will smoke-check a push answers (else ServiceUnavailable)."""
        if isinstance(self._containers, _LazyContainers):
            self._engine()

    def push(self, inputs: ImageInputs, image: BuiltImage) -> str:
        """Push ``image`` (its digest checked by the registry), then smoke-check it there."""
        pushed = push_image(
            self._registry, inputs.path_in_registry, inputs.tag, image, log=self._log
        )
        packages = [p for w in inputs.wheelhouse.helpers for p in import_packages(w.path)]
        smoke_check(
            self._containers, f"{inputs.repository}@{pushed.digest}", packages, log=self._log
        )
        return pushed.digest
