"""Contrast enhancement as a light pipeline step, in packages mode.

kiln turns each public function here into a component YAML. `PACKAGES = True`:
instead of an image, the YAML pins the exact, hash-checked files (imgproc, numpy,
kfp) that the pod installs from the private index when it starts; kiln reads them
from the function's imports. Imports the pod needs go inside the function: KFP
ships the function's source, not this module.
"""

PACKAGES = True


def stretch_contrast_demo(seed: int, low_percentile: float, high_percentile: float) -> float:
    """Stretch a synthetic low-contrast image; return the output's standard deviation."""
    import numpy as np
    from imgproc import stretch_contrast

    rng = np.random.default_rng(seed)
    image = rng.normal(128, 6, size=(64, 64)).clip(0, 255).astype(np.uint8)
    out = stretch_contrast(image, low_percentile, high_percentile)
    return float(out.std())
