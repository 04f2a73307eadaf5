"""The release plan: what to publish, build, skip or refuse, and why. Pure data.

The planner compares what was prepared locally (wheels, image inputs) with what
the index and the registry already hold. It never talks to a server itself:
the caller passes in what the servers said, so the plan is testable as data.

The plan covers every artifact, in the order the stages run (``STAGES``), and
each step carries what its executor needs (the file to upload, the image's
inputs), so executors never look anything up again by name.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln._images.oci.index import BuiltIndex

if TYPE_CHECKING:
    from kiln._images.inputs import ImageInputs

# The stages of a release, in the order they run; `--dry-run` lists the plan in it too.
STAGES = ("wheels", "publish", "images", "components", "pipelines", "manifest")


class Action(str, enum.Enum):
    PUBLISH = "publish"  # upload a file to the index
    BUILD = "build"  # build and push an image
    SKIP = "skip"  # already there with identical content
    REFUSE = "refuse"  # already there with different content: a published version never changes


@dataclass(frozen=True)
class FileCandidate:
    kind: str  # "helper" (built here) or "mirror" (third-party wheel from upstream)
    project: str
    version: str
    path: Path
    sha256: str
    source: Path | None = None  # the helper folder, for messages
    # sha256 kiln recorded when it last published this file (previous manifest), if any
    recorded: str | None = None


@dataclass(frozen=True)
class FileStep:
    kind: str
    project: str
    version: str
    filename: str
    sha256: str
    action: Action
    reason: str
    # refused because the index serves other bytes than kiln published (not a source change)
    altered: bool = False
    path: Path | None = None  # the local file to upload


@dataclass(frozen=True)
class ImageCandidate:
    name: str
    version: str
    repository: str  # path in the registry, e.g. "acme/base"
    digest: str  # the image's manifest digest, computed by kiln before any push
    config: Path  # images/<name>/image.toml, for messages
    inputs: ImageInputs | None = None  # what the push needs (None in pure-plan tests)


@dataclass(frozen=True)
class ImageStep:
    name: str
    version: str
    repository: str
    action: Action
    reason: str
    digest: str  # computed before the push; the push checks the registry stores exactly it
    inputs: ImageInputs | None = None

    def to_dict(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "inputs"}
        inputs = self.inputs
        if inputs is not None and isinstance(inputs.built, BuiltIndex):  # the index's digest
            pairs = zip(inputs.image.platforms, inputs.built.images, strict=True)
            row["platforms"] = [{"platform": p, "digest": i.digest} for p, (_, i) in pairs]
        return {**row, "action": self.action.value}


@dataclass(frozen=True)
class ComponentStep:
    """A component YAML to generate, pinned to its image's digest."""

    name: str
    image: str
    repository: str  # the image's path in the registry
    digest: str  # the pin: the image's digest, known before any push
    reason: str


@dataclass(frozen=True)
class ReleasePlan:
    files: tuple[FileStep, ...]
    images: tuple[ImageStep, ...]
    components: tuple[ComponentStep, ...]
    pipelines: tuple[str, ...]

    @property
    def refusals(self) -> tuple[str, ...]:
        steps: list[FileStep | ImageStep] = [*self.files, *self.images]
        return tuple(s.reason for s in steps if s.action is Action.REFUSE)

    @property
    def altered(self) -> tuple[str, ...]:
        """Refusals where the index, not the source, changed."""
        return tuple(s.reason for s in self.files if s.altered)

    @property
    def up_to_date(self) -> bool:
        steps: list[FileStep | ImageStep] = [*self.files, *self.images]
        return all(s.action is Action.SKIP for s in steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": list(STAGES),
            "files": [{**asdict(s), "action": s.action.value} for s in self.files],
            "images": [s.to_dict() for s in self.images],
            "components": [asdict(c) for c in self.components],
            "pipelines": list(self.pipelines),
            "refusals": list(self.refusals),
        }


def unrecorded_hint(helper: Path | str) -> str:
    """What a conflict without a manifest record cannot rule out: kiln would say "altered"
    (exit 8) had dist/manifest.json recorded the bytes it published (a fresh clone has none:
    dist/ is not committed)."""
    return (
        f" (kiln has no record of the bytes it published (dist/manifest.json), so it "
        f"cannot tell this from an altered index file: if {helper} did not change since, "
        "compare the index's file with this build before bumping)"
    )


def plan_file(
    candidate: FileCandidate, published: Mapping[str, str], *, restore_hint: str = ""
) -> FileStep:
    """``published``: filename -> sha256 of the files the index holds for this project.

    ``restore_hint`` says where the index keeps its files, for the message that
    tells an operator how to undo an alteration.
    """
    name = candidate.path.name
    there = published.get(name)
    altered = False
    if there is None:
        action, reason = Action.PUBLISH, "not on the index yet"
    elif there == candidate.sha256:
        action, reason = Action.SKIP, "on the index with identical bytes"
    elif candidate.kind == "helper" and candidate.recorded == candidate.sha256:
        altered = True
        action, reason = (
            Action.REFUSE,
            (
                f"{name}: the index serves sha256 {there[:12]}..., but kiln published "
                f"{candidate.sha256[:12]}... and today's build of {candidate.source or name} "
                "still gives exactly those bytes: the file on the index was altered or "
                f"replaced. Do not bump the version: restore it by deleting {name} from the "
                f"index{restore_hint} and re-running the release, which uploads the built "
                "copy again"
            ),
        )
    elif candidate.kind == "helper":
        where = candidate.source or Path(candidate.project)
        action, reason = (
            Action.REFUSE,
            (
                f"{where}: {candidate.project} {candidate.version} is already published with "
                f"different bytes (index sha256 {there[:12]}..., "
                f"built {candidate.sha256[:12]}...); "
                f"a published version never changes: bump version in {where / 'pyproject.toml'}"
                f"{unrecorded_hint(where) if candidate.recorded is None else ''}"
            ),
        )
    else:
        altered = True
        action, reason = (
            Action.REFUSE,
            (
                f"{name} on the index differs from the upstream file "
                f"(index sha256 {there[:12]}..., upstream {candidate.sha256[:12]}...): the "
                f"mirror was altered. Investigate, then restore it by deleting {name} from the "
                f"index{restore_hint} and re-running the release, which mirrors it again"
            ),
        )
    return FileStep(
        kind=candidate.kind,
        project=candidate.project,
        version=candidate.version,
        filename=name,
        sha256=candidate.sha256,
        action=action,
        reason=reason,
        altered=altered,
        path=candidate.path,
    )


def plan_image(candidate: ImageCandidate, published: str | None) -> ImageStep:
    """``published``: the registry's digest for the candidate's tag (None: no such tag)."""
    ref = f"{candidate.repository}:{candidate.version}"
    if published is None:
        action = Action.BUILD
        reason = f"not in the registry yet; kiln builds it as {candidate.digest}"
    elif published == candidate.digest:
        action, reason = Action.SKIP, "in the registry with the identical digest"
    else:
        action = Action.REFUSE
        reason = (
            f"{candidate.config.parent}: {ref} is already pushed as {published}, but kiln "
            f"builds it as {candidate.digest} (helpers, wheels, base image or image.toml "
            f"changed); a pushed version never changes: bump version in {candidate.config}"
        )
    return ImageStep(
        name=candidate.name,
        version=candidate.version,
        repository=candidate.repository,
        action=action,
        reason=reason,
        digest=candidate.digest,
        inputs=candidate.inputs,
    )


def plan_component(name: str, image: str, images: Mapping[str, ImageStep]) -> ComponentStep:
    step = images[image]
    if step.action is Action.SKIP:
        reason = f"pinned to {step.repository}@{step.digest} (the image is unchanged)"
    else:
        reason = (
            f"pinned to {step.repository}@{step.digest} (computed by kiln before the push, "
            "which checks the registry stores exactly that)"
        )
    return ComponentStep(name, image, step.repository, step.digest, reason)


def plan_release(
    files: Sequence[tuple[FileCandidate, Mapping[str, str]]],
    images: Sequence[tuple[ImageCandidate, str | None]],
    components: Sequence[tuple[str, str]],
    pipelines: Sequence[str],
    *,
    restore_hint: str = "",
) -> ReleasePlan:
    """Each candidate comes with what its server already holds (an image: the registry's
    digest for its tag, or None); ``components``:
    (component name, image name) pairs."""
    image_steps = tuple(plan_image(c, published) for c, published in images)
    by_name = {s.name: s for s in image_steps}
    return ReleasePlan(
        files=tuple(plan_file(c, p, restore_hint=restore_hint) for c, p in files),
        images=image_steps,
        components=tuple(plan_component(n, i, by_name) for n, i in components if i in by_name),
        pipelines=tuple(pipelines),
    )


def plan_text(plan: ReleasePlan) -> str:
    """The plan for a person: each action with its reason; refusals last, in full."""
    lines = [
        f"  {s.action.value:8} {s.filename}: {s.reason}"
        for s in plan.files
        if s.kind == "helper" and s.action.value != "refuse"
    ]
    mirror = [s for s in plan.files if s.kind == "mirror"]
    todo = sum(1 for s in mirror if s.action.value == "publish")
    same = sum(1 for s in mirror if s.action.value == "skip")
    lines.append(
        f"  mirror   {len(mirror)} third-party wheel(s): {todo} not on the index yet, "
        f"{same} already there with identical bytes"
    )
    lines += [
        f"  {s.action.value:8} image {s.repository}:{s.version}: {s.reason}"
        for s in plan.images
        if s.action.value != "refuse"
    ]
    by_image: dict[str, list[str]] = {}
    for c in plan.components:
        by_image.setdefault(c.image, []).append(c.name)
    lines += [
        f"  generate {len(names)} component(s) on {image} ({', '.join(names)}): "
        + next(c.reason for c in plan.components if c.image == image)
        for image, names in by_image.items()
    ]
    lines += [f"  {s.action.value:8} {s.reason}" for s in plan.files if s.action.value == "refuse"]
    lines += [f"  {s.action.value:8} {s.reason}" for s in plan.images if s.action.value == "refuse"]
    return "plan:\n" + "\n".join(lines)
