"""Point-wise contrast operations."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_FLOAT_RANGE = (0.0, 1.0)


def dtype_range(dtype: np.dtype[np.generic] | type) -> tuple[float, float]:
    """The value range an image of ``dtype`` is expected to use.

    Integer images use the full range of their type; float images use [0, 1].
    """
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.bool_):
        raise TypeError("boolean images have no contrast to adjust; convert to uint8 first")
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)  # type: ignore[type-var]  # dt is known to be an integer dtype here
        return float(info.min), float(info.max)
    if np.issubdtype(dt, np.floating):
        return _FLOAT_RANGE
    raise TypeError(f"unsupported image dtype {dt}: use an integer or float array")


def _check_image(image: NDArray[np.generic]) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ValueError(
            f"expected a grayscale (H, W) or colour (H, W, C) image, got shape {image.shape}"
        )
    dtype_range(image.dtype)


def _to_dtype(values: NDArray[np.float64], dtype: np.dtype[np.generic]) -> NDArray[np.generic]:
    lo, hi = dtype_range(dtype)
    clipped = np.clip(values, lo, hi)
    if np.issubdtype(dtype, np.integer):
        clipped = np.rint(clipped)
        if hi > np.iinfo(dtype).max:  # type: ignore[type-var]  # an integer dtype here
            # 64-bit integers: float(max) rounds up to 2**63 or 2**64, which does not
            # cast back. Cast the top separately.
            top = clipped >= hi
            result = np.where(top, lo, clipped).astype(dtype)
            result[top] = np.iinfo(dtype).max  # type: ignore[type-var]
            return result
    return clipped.astype(dtype)


def stretch_contrast(
    image: NDArray[np.generic],
    low_percentile: float = 2.0,
    high_percentile: float = 98.0,
) -> NDArray[np.generic]:
    """Linearly stretch intensities so the given percentiles map to the dtype's range.

    Values below ``low_percentile`` / above ``high_percentile`` are clipped. Colour
    images are stretched per channel. A constant image (or channel) is returned
    unchanged: it has no contrast to stretch.
    """
    _check_image(image)
    if not 0.0 <= low_percentile < high_percentile <= 100.0:
        raise ValueError(
            "percentiles must satisfy 0 <= low < high <= 100, "
            f"got low={low_percentile}, high={high_percentile}"
        )
    out_lo, out_hi = dtype_range(image.dtype)
    data = image.astype(np.float64)
    channels = data[..., np.newaxis] if data.ndim == 2 else data
    result = np.empty_like(channels)
    for c in range(channels.shape[-1]):
        plane = channels[..., c]
        lo, hi = np.percentile(plane, [low_percentile, high_percentile])
        if hi <= lo:
            result[..., c] = plane
            continue
        scaled = (plane - lo) / (hi - lo)
        result[..., c] = out_lo + np.clip(scaled, 0.0, 1.0) * (out_hi - out_lo)
    if image.ndim == 2:
        result = result[..., 0]
    return _to_dtype(result, image.dtype)


def adjust_gamma(image: NDArray[np.generic], gamma: float) -> NDArray[np.generic]:
    """Apply ``out = in ** gamma`` on intensities normalised to [0, 1].

    ``gamma < 1`` brightens dark regions, ``gamma > 1`` darkens them.
    """
    _check_image(image)
    if not np.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma must be a positive finite number, got {gamma}")
    lo, hi = dtype_range(image.dtype)
    norm = (image.astype(np.float64) - lo) / (hi - lo)
    return _to_dtype(lo + np.clip(norm, 0.0, 1.0) ** gamma * (hi - lo), image.dtype)
