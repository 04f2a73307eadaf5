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

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import docker

from kiln._errors import ConfigError
from kiln._images.oci.base import base_python, load_base, probe_scheme
from kiln._images.oci.build import KFP_ENV, PythonLayer, assemble, python_layer
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.compress import GZIP, check_pinned
from kiln._images.oci.image import BuiltImage, labels, rfc3339
from kiln._images.oci.layers import MTIME
from kiln._images.oci.push import BlobRegistry, push_image
from kiln._images.oci.smoke import ContainerRunner, DockerContainers, import_packages, smoke_check
from kiln._wheels.tags import supported_tags

if TYPE_CHECKING:
    from kiln._images.inputs import ImageInputs


def cache_dir(state_dir: Path) -> Path:
    """The layer cache of a workspace (``.kiln/cache/oci``)."""
    return state_dir / "cache" / "oci"


def image_labels(inputs: ImageInputs, *, source: str | None) -> dict[str, str]:
    """The labels (and manifest annotations) of a kiln-built image: no fingerprint, no
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


class KilnBuilder:
    """Builds from the local engine's base image and the wheelhouse; pushes to ``registry``."""

    def __init__(
        self,
        client: docker.DockerClient,
        cache: Path,
        registry: BlobRegistry,
        *,
        log: Callable[[str], None] = lambda _line: None,
        containers: ContainerRunner | None = None,
    ) -> None:
        self._client = client
        self._cache = LayerCache(cache)
        self._registry = registry
        self._log = log
        self._containers = containers or DockerContainers(client)

    def build(self, inputs: ImageInputs, *, source: str | None) -> BuiltImage:
        check_pinned()
        what = f"image {inputs.ref}"
        base = load_base(self._client, inputs.base, self._cache, GZIP)
        if base.image_id != inputs.base_id:
            raise ConfigError(
                f"{what}: base {inputs.base} changed while kiln read it ({inputs.base_id}, "
                f"then {base.image_id}): run again"
            )
        python = base_python(base, self._cache)
        scheme = probe_scheme(base, self._cache, python)
        tags = supported_tags(scheme.python, inputs.image.platform)
        groups = (
            ("third-party", [w.path for w in inputs.wheelhouse.third_party]),
            ("helpers", [w.path for w in inputs.wheelhouse.helpers]),
        )
        layers: list[PythonLayer] = []
        for name, wheels in groups:
            if wheels:
                layer = python_layer(
                    name, wheels, scheme=scheme, cache=self._cache, compression=GZIP,
                    what=what, compiler=python, tags=tags,
                )  # fmt: skip
                self._log(
                    f"    {name} layer {layer.blob.digest[:19]} "
                    f"({'cached' if layer.cached else 'built'}, {layer.blob.size} bytes)"
                )
                layers.append(layer)
        oci = image_labels(inputs, source=source)
        env = {**KFP_ENV, **dict(inputs.image.env)}
        return assemble(base, layers, env=env, labels=oci, annotations=oci, what=what)

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
