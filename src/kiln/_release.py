"""The release: prepare (local only) -> plan (ask the servers) -> execute (stage by stage).

Stages: wheels -> publish (helpers + third-party mirror) -> bake -> push ->
components -> pipelines -> manifest. Every stage is idempotent: re-running an
interrupted release skips what is already published and finishes the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from kiln import __version__
from kiln._components import compile_pipeline, generate_component
from kiln._errors import CommandFailed, PublishedConflict
from kiln._files import sha256_file
from kiln._git import revision, source_url
from kiln._images import (
    FINGERPRINT_LABEL,
    ImageBuilder,
    ImageInputs,
    image_inputs,
    labels,
    write_context,
)
from kiln._index import Index
from kiln._model import Workspace
from kiln._plan import (
    Action,
    FileCandidate,
    ImageCandidate,
    PublishedImage,
    ReleasePlan,
    plan_release,
)
from kiln._registry import Registry
from kiln._runner import Runner, call
from kiln._wheelhouse import PipWheel, resolve_wheelhouse
from kiln._wheels import BuiltWheel, build_wheels

Say = Callable[[str], None]


@dataclass(frozen=True)
class Services:
    """The side effects a release needs, passed in (fakes in unit tests)."""

    index: Index
    registry: Registry
    builder: ImageBuilder
    runner: Runner = call
    # Resolves a wheelhouse inside a base image, when kiln's Python is not the image's.
    pip_wheel_in: Callable[[str], PipWheel] | None = None


@dataclass(frozen=True)
class Prepared:
    wheels: tuple[BuiltWheel, ...]
    images: tuple[ImageInputs, ...]

    def mirror_candidates(self) -> tuple[FileCandidate, ...]:
        seen: dict[str, FileCandidate] = {}
        for inputs in self.images:
            for w in inputs.wheelhouse.third_party:
                seen[w.filename] = FileCandidate("mirror", w.name, w.version, w.path, w.sha256)
        return tuple(seen[k] for k in sorted(seen))


@dataclass
class Outcome:
    plan: ReleasePlan
    manifest: dict[str, Any]
    manifest_path: Path
    uploaded: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)


def kfp_version() -> str:
    return dist_version("kfp")


def prepare(
    workspace: Workspace,
    services: Services,
    *,
    base_override: str | None = None,
    images: bool = True,
    say: Say = print,
) -> Prepared:
    """Build wheels and resolve wheelhouses: local work only, nothing is published."""
    say(f"==> wheels: building {len(workspace.helpers)} helper(s)")
    wheels = build_wheels(workspace.helpers, workspace.dist_dir / "wheels")
    for w in wheels:
        say(f"    {w.filename}  sha256:{w.sha256[:12]}")
    inputs: list[ImageInputs] = []
    for image in workspace.images if images else ():
        say(f"==> wheelhouse: {image.name} (helpers: {', '.join(image.helpers) or 'none'})")
        base = base_override or image.base
        wheelhouse = resolve_wheelhouse(
            workspace,
            image,
            wheels,
            kfp_version=kfp_version(),
            base=base,
            runner=services.runner,
            in_image=services.pip_wheel_in,
        )
        say(
            f"    {len(wheelhouse.third_party)} third-party wheel(s), "
            f"{len(wheelhouse.helpers)} helper wheel(s)"
        )
        inputs.append(
            image_inputs(
                image,
                registry=services.registry.host,
                org=workspace.org,
                base=base,
                base_id=services.builder.image_id(base),
                wheelhouse=wheelhouse,
            )
        )
    return Prepared(wheels=wheels, images=tuple(inputs))


def make_plan(workspace: Workspace, prepared: Prepared, services: Services) -> ReleasePlan:
    """Ask the index and the registry what they hold, and plan against it."""
    helper_paths = {h.name: h.path.relative_to(workspace.root) for h in workspace.helpers}
    candidates = [
        FileCandidate("helper", w.distribution, w.version, w.path, w.sha256, helper_paths[w.helper])
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
        digest = services.registry.digest(repo, inputs.tag)
        there = None
        if digest is not None:
            fp = services.registry.labels(repo, inputs.tag).get(FINGERPRINT_LABEL)
            there = PublishedImage(digest=digest, fingerprint=fp)
        candidate = ImageCandidate(
            inputs.image.name,
            inputs.tag,
            repo,
            inputs.fingerprint,
            inputs.image.path.relative_to(workspace.root) / "image.toml",
        )
        images.append((candidate, there))
    return plan_release(
        files,
        images,
        [c.name for c in workspace.components],
        [p.name for p in workspace.pipelines],
    )


def publish(plan: ReleasePlan, prepared: Prepared, services: Services, say: Say) -> list[str]:
    paths = {w.filename: w.path for w in prepared.wheels}
    paths.update({c.path.name: c.path for c in prepared.mirror_candidates()})
    todo = [s for s in plan.files if s.action is Action.PUBLISH]
    if not todo:
        say("==> publish: everything is already on the index")
        return []
    say(f"==> publish: uploading {len(todo)} file(s) to {services.index.url}")
    services.index.upload([paths[s.filename] for s in todo])
    for step in todo:  # ask the index, don't trust the upload's exit code alone
        there = services.index.files(step.project).get(step.filename)
        if there != step.sha256:
            raise CommandFailed(
                f"after upload, the index lists {step.filename} with sha256 {there}, "
                f"expected {step.sha256}"
            )
    return [s.filename for s in todo]


def bake(
    workspace: Workspace,
    plan: ReleasePlan,
    prepared: Prepared,
    services: Services,
    say: Say,
) -> tuple[dict[str, str], list[str]]:
    """Build and push what the plan says; return image name -> digest, and what was pushed."""
    digests: dict[str, str] = {}
    pushed: list[str] = []
    by_name = {i.image.name: i for i in prepared.images}
    src, rev = source_url(workspace.root), revision(workspace.root)
    for step in plan.images:
        inputs = by_name[step.name]
        if step.action is Action.SKIP and step.digest:
            say(f"==> image {inputs.ref}: up to date ({step.digest[:19]}...)")
            digests[step.name] = step.digest
            continue
        say(f"==> image {inputs.ref}: building offline (network none) from {inputs.base}")
        context = write_context(inputs, workspace.state_dir / "build" / step.name)
        services.builder.build(
            context,
            inputs.ref,
            buildargs={"BASE_IMAGE": inputs.base},
            labels=labels(inputs, source=src, revision=rev),
        )
        say(f"==> image {inputs.ref}: pushing")
        digest = services.builder.push(inputs.repository, inputs.tag)
        there = services.registry.digest(inputs.path_in_registry, inputs.tag)
        if there != digest:
            raise CommandFailed(f"pushed {inputs.ref} as {digest}, but the registry has {there}")
        digests[step.name] = digest
        pushed.append(f"{inputs.ref}@{digest}")
    return digests, pushed


def _image_rows(plan: ReleasePlan, prepared: Prepared, digests: dict[str, str]) -> list[Any]:
    rows = []
    by_name = {i.image.name: i for i in prepared.images}
    for step in plan.images:
        inputs = by_name[step.name]
        rows.append(
            {
                "name": step.name,
                "version": step.version,
                "repository": inputs.repository,
                "tag": inputs.tag,
                "digest": digests[step.name],
                "ref": f"{inputs.repository}@{digests[step.name]}",
                "fingerprint": step.fingerprint,
                "helpers": [f"{w.distribution}=={w.version}" for w in inputs.wheelhouse.helpers],
                "status": "pushed" if step.action is Action.BUILD else "unchanged",
            }
        )
    return rows


def check_refusals(plan: ReleasePlan) -> None:
    if plan.refusals:
        raise PublishedConflict(
            "nothing was published, because:\n" + "\n".join(f"  - {r}" for r in plan.refusals)
        )


def generate(
    workspace: Workspace, image_refs: dict[str, str], *, say: Say = print
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Write pinned component YAMLs and compiled pipelines under dist/."""
    out = workspace.dist_dir
    say(f"==> components: {len(workspace.components)} pinned by digest")
    component_rows = []
    for comp in workspace.components:
        path = generate_component(comp, image_refs[comp.image], out / "components")
        component_rows.append(_file_row(comp.name, path, workspace.root, image=comp.image))
    pipeline_rows = []
    for pipe in workspace.pipelines:
        path = compile_pipeline(pipe, out / "components", out / "pipelines")
        pipeline_rows.append(_file_row(pipe.name, path, workspace.root))
    return component_rows, pipeline_rows


def execute(
    workspace: Workspace,
    prepared: Prepared,
    plan: ReleasePlan,
    services: Services,
    *,
    release_version: str | None = None,
    say: Say = print,
) -> Outcome:
    check_refusals(plan)
    uploaded = publish(plan, prepared, services, say)
    digests, pushed = bake(workspace, plan, prepared, services, say)
    images = {row["name"]: row for row in _image_rows(plan, prepared, digests)}
    component_rows, pipeline_rows = generate(
        workspace, {name: row["ref"] for name, row in images.items()}, say=say
    )
    published = {s.filename: s.action for s in plan.files}
    manifest = {
        "kiln": __version__,
        "release": release_version,
        "revision": revision(workspace.root),
        "index": services.index.url,
        "registry": services.registry.host,
        "kfp": kfp_version(),
        "wheels": [
            {
                "distribution": w.distribution,
                "version": w.version,
                "filename": w.filename,
                "sha256": w.sha256,
                "status": "published" if published[w.filename] is Action.PUBLISH else "unchanged",
            }
            for w in prepared.wheels
        ],
        "mirrored": sorted(s.filename for s in plan.files if s.kind == "mirror"),
        "images": list(images.values()),
        "components": component_rows,
        "pipelines": pipeline_rows,
    }
    manifest_path = workspace.dist_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    say(f"==> manifest: {manifest_path}")
    return Outcome(plan, manifest, manifest_path, uploaded, pushed)


def _file_row(name: str, path: Path, root: Path, **extra: str) -> dict[str, str]:
    return {"name": name, **extra, "path": str(path.relative_to(root)), "sha256": sha256_file(path)}
