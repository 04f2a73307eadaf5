"""``kiln new`` as a library call: write a helper, component or pipeline skeleton
(``kiln._workspace.scaffold``) and say what to do next."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiln._errors import ConfigError
from kiln._workspace import scaffold
from kiln._workspace.model import Workspace

NewKind = Literal["helper", "component", "pipeline"]


@dataclass(frozen=True)
class NewResult:
    written: tuple[Path, ...]  # every file written or edited
    hints: tuple[str, ...]  # the next steps, for a person


def new(
    ws: Workspace,
    kind: NewKind,
    name: str,
    *,
    images: Sequence[str] = (),
    component: str | None = None,
) -> NewResult:
    """Write the skeleton of a ``kind`` named ``name``. ``images``: a helper's images (it
    is added to each), a component's one image; ``component``: a pipeline's."""
    if kind == "helper":
        written = scaffold.new_helper(ws, name, images=images)
        package = name.replace("-", "_")
        hints = [
            f"write helpers/{name}/src/{package}/ and helpers/{name}/tests/",
            f"pip install -e helpers/{name} && pytest helpers/{name}",
            "kiln build   (builds its wheel with the others)",
        ]
        hints += [
            f"images/{i}/image.toml now lists {name}: if version {ws.image(i).version} "
            "is already published, bump its `version`"
            for i in dict.fromkeys(images)
        ]
        if not images:
            hints.append(f"put it in an image: list {name!r} in images/<i>/image.toml")
    elif kind == "component":
        if len(images) != 1:
            raise ConfigError(
                f"component {name}: name the one image it runs on (got {len(images)})"
            )
        written = scaffold.new_component(ws, name, image=images[0])
        hints = [
            f"edit pipelines/components/{name}.py, then: kiln release --local",
            f"run it in a pipeline: kiln new pipeline NAME --component {name}",
        ]
    else:
        written = scaffold.new_pipeline(ws, name, component=component)
        hints = [
            "kiln release --local",
            f"kiln run {name}   (arguments: RUN_ARGS, or --arg NAME=VALUE)",
        ]
    return NewResult(tuple(written), tuple(hints))
