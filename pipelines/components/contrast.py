"""Contrast enhancement as a pipeline step, on the `base` image.

kiln turns each public function here into a component YAML pinned to the
image by digest. Imports the pod needs go inside the function: KFP ships the
function's source, not this module.
"""

IMAGE = "base"


def stretch_contrast_demo(seed: int, low_percentile: float, high_percentile: float) -> float:
    """Stretch a synthetic low-contrast image; return the output's standard deviation."""
    import numpy as np
    from imgproc import stretch_contrast

    rng = np.random.default_rng(seed)
    image = rng.normal(128, 6, size=(64, 64)).clip(0, 255).astype(np.uint8)
    out = stretch_contrast(image, low_percentile, high_percentile)
    return float(out.std())
