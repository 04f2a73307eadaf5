"""Stretch contrast of a synthetic image, using the pinned contrast component."""

from collections.abc import Callable
from typing import Any

# Arguments `kiln run contrast_demo` uses unless overridden with --arg NAME=VALUE.
RUN_ARGS = {"seed": 7}


def build(load: Callable[[str], Any]) -> Any:
    from kfp import dsl

    stretch = load("stretch_contrast_demo")

    @dsl.pipeline(name="contrast-demo", description="Contrast stretching on a pinned image.")
    def contrast_demo(seed: int = 7) -> float:
        task = stretch(seed=seed, low_percentile=2.0, high_percentile=98.0)
        return task.output  # type: ignore[no-any-return]

    return contrast_demo
