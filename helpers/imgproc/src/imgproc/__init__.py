"""Image preprocessing helpers shared by pipeline components.

Every function takes a grayscale (H, W) or colour (H, W, C) numpy array and
returns an array of the same shape and dtype, with values in the input dtype's
range (for floats: the range [0, 1]).
"""

from imgproc._contrast import adjust_gamma, dtype_range, stretch_contrast

__all__ = ["adjust_gamma", "dtype_range", "stretch_contrast"]
