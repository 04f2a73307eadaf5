"""`kiln components`: every image's digest computed here (nothing is pushed), then the
committed component YAMLs written, or compared with what would be written.

It sits in ``_release`` rather than ``_components`` because it prepares a release
(wheels, wheelhouses, images) first; ``_components`` stays below ``_release``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kiln._components.drift import Drift, compare, describe
from kiln._components.yamls import FileRecord, generate
from kiln._context import Context, Services, Target, connect
from kiln._errors import ConfigError
from kiln._images.oci.index import BuiltIndex
from kiln._release.prepare import Prepared, prepare
from kiln._report import Reporter
from kiln._wheels.build import BuiltWheel
from kiln._workspace.model import Workspace


@dataclass(frozen=True)
class Components:
    """What `kiln components` wrote (nothing with ``check``: the committed YAMLs are
    current): each image's ``repository@digest``, the YAMLs, the compiled pipelines."""

    images: Mapping[str, str]
    components: tuple[FileRecord, ...] = ()
    pipelines: tuple[FileRecord, ...] = ()


def committed_label(ws: Workspace) -> str:
    """The committed component folder, relative to the repository (as messages name it)."""
    return str(ws.component_dir.relative_to(ws.root))


def component_drift(
    ws: Workspace,
    services: Services,
    report: Reporter,
    *,
    wheel_cache: bool,
    prepared: Prepared | None = None,
    wheels: tuple[BuiltWheel, ...] | None = None,
) -> list[Drift]:
    """The committed component YAMLs against what kiln generates now from ``prepared``
    (prepared here when not given: images built locally, nothing pushed, from ``wheels``
    when a ``prepare`` of this process built them already)."""
    if prepared is None:
        prepared = prepare(ws, services, wheel_cache=wheel_cache, report=report, wheels=wheels)
    # Kept from the last check: generate rewrites only the YAMLs whose bytes differ and
    # removes those of components that are gone (1004 YAMLs written again at N=500).
    scratch = ws.state_dir / "check"
    generate(
        ws, prepared.wheelhouses, prepared.image_refs, packages=prepared.packages,
        index_url=services.index.url, report=report, out=scratch / "components",
    )  # fmt: skip
    platforms = {  # each platform's image of an index: a YAML pinning one is named so
        image.digest: (str(platform), i.built.digest)
        for i in prepared.images
        if isinstance(i.built, BuiltIndex)
        for platform, image in i.built.images
    }
    return compare(
        ws.component_dir, scratch / "components", label=committed_label(ws), platforms=platforms
    )


def components(ws: Workspace, ctx: Context, target: Target, *, check: bool = False) -> Components:
    """Write the committed component YAMLs and compile the pipelines; with ``check``, write
    nothing and raise ConfigError, with the diff, when a committed YAML is stale."""
    services = connect(ws, ctx, target)
    # Every image's digest is computed here: nothing is pushed, and no engine is needed
    # when the base is in a registry or was read before.
    prepared = prepare(ws, services, wheel_cache=ctx.options.wheel_cache, report=ctx.report)
    refs = prepared.image_refs
    if check:
        drifts = component_drift(
            ws, services, ctx.report, wheel_cache=ctx.options.wheel_cache, prepared=prepared
        )
        if drifts:
            label = committed_label(ws)
            raise ConfigError(
                f"{label}: {len(drifts)} component YAML(s) are stale: run `kiln components"
                f"{' --local' if target.local else ''}` and commit the result\n"
                + describe(drifts, label=label)
            )
        return Components(refs)
    yamls, pipelines = generate(
        ws, prepared.wheelhouses, refs, packages=prepared.packages,
        index_url=services.index.url, report=ctx.report,
    )  # fmt: skip
    return Components(refs, yamls, pipelines)
