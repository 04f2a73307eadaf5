"""Enhance the contrast of synthetic images on the light image, compare on the heavy one.

sample images (base) -> enhance contrast (base) -> before/after plots (analytics).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

# Arguments `kiln run contrast_compare` uses unless overridden with --arg NAME=VALUE.
RUN_ARGS = {"seed": 3, "count": 3, "size": 96, "method": "adaptive"}


def build(load: Callable[[str], Any]) -> Any:
    from kfp import dsl

    make_sample_images = load("make_sample_images")
    enhance_contrast = load("enhance_contrast")
    compare_images = load("compare_images")

    class Outputs(NamedTuple):
        std_gain: float
        pairs: int
        page: dsl.HTML
        first_pair: dsl.Artifact

    @dsl.pipeline(name="contrast-compare", description="Enhance contrast, plot before/after.")
    def contrast_compare(
        seed: int = 3, count: int = 3, size: int = 96, method: str = "adaptive"
    ) -> Outputs:
        images = make_sample_images(seed=seed, count=count, size=size)
        enhanced = enhance_contrast(images=images.outputs["images"], method=method)
        compared = compare_images(
            before=images.outputs["images"], after=enhanced.outputs["enhanced"]
        )
        return Outputs(
            std_gain=enhanced.outputs["Output"],
            pairs=compared.outputs["Output"],
            page=compared.outputs["page"],
            first_pair=compared.outputs["first_pair"],
        )

    return contrast_compare
