"""Image preprocessing helpers shared by pipeline components.

Every function takes a grayscale (H, W) or colour (H, W, C) numpy array and
returns an array of the same shape and dtype, with values in the input dtype's
range (for floats: the range [0, 1]).

- ``stretch_contrast``: linear stretch between two percentiles, per channel.
- ``adjust_gamma``: power-law brightening or darkening.
- ``equalize_histogram``: global histogram equalization.
- ``equalize_adaptive``: contrast-limited adaptive (tile-based, CLAHE-style)
  histogram equalization.

The equalization functions accept grayscale (H, W) and RGB (H, W, 3) images
and equalize the luminance (the largest channel) of colour images, keeping hues.
"""

from imgproc._contrast import adjust_gamma, dtype_range, stretch_contrast
from imgproc._equalize import equalize_adaptive, equalize_histogram

__all__ = [
    "adjust_gamma",
    "dtype_range",
    "equalize_adaptive",
    "equalize_histogram",
    "stretch_contrast",
]
