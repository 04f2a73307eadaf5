"""Histogram equalization: global, and tile-based adaptive (CLAHE-style).

Both functions work on one intensity per pixel, the *luminance*:

- a grayscale (H, W) image is its own luminance;
- an RGB (H, W, 3) image uses the largest of its three channels (the V of HSV). Each
  pixel's channels are then scaled by one common factor so that their maximum becomes
  the equalized luminance. Hue and saturation are kept, the channel order inside a
  pixel is kept, and no channel can leave the dtype's range.

Intensities are binned over the dtype's range (see :func:`imgproc.dtype_range`) into
``bins`` equal-width bins, and every pixel of a bin gets the same output level: the
output has at most ``bins`` distinct luminance levels. For uint8 the default 256 bins
are exactly the 256 grey levels; pass more bins (up to 65536) for finer output on
uint16 or float images.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import NDArray

from imgproc._contrast import _to_dtype, dtype_range

_MAX_BINS = 65536
# A per-tile mapping whose cumulative histogram rises by less than this fraction of the
# tile's pixels after its first occupied bin is flat: it has no contrast to spread.
_FLAT = 1e-9
# equalize_adaptive keeps a few float64 arrays of tiles x bins entries: cap their size
# (2**25 entries = 256 MiB each) with a clear error instead of running out of memory.
_MAX_TABLE = 2**25


def _check_input(image: object) -> NDArray[np.generic]:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(
            f"expected a grayscale (H, W) or RGB (H, W, 3) image, got shape {image.shape}"
        )
    dtype_range(image.dtype)
    if image.size == 0:
        raise ValueError(f"expected a non-empty image, got shape {image.shape}")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values; equalization needs finite ones")
    return image


def _check_bins(bins: object) -> int:
    message = f"bins must be an integer in [2, {_MAX_BINS}], got {bins!r}"
    if isinstance(bins, (bool, np.bool_)) or not isinstance(bins, numbers.Integral):
        raise TypeError(message)
    if not 2 <= int(bins) <= _MAX_BINS:
        raise ValueError(message)
    return int(bins)


def _check_tiles(tiles: object, shape: tuple[int, ...]) -> tuple[int, int]:
    message = f"tiles must be a pair of positive integers (rows, columns), got {tiles!r}"
    if (
        not isinstance(tiles, (tuple, list))
        or len(tiles) != 2
        or any(
            isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral) for t in tiles
        )
    ):
        raise TypeError(message)
    rows, cols = int(tiles[0]), int(tiles[1])
    if rows < 1 or cols < 1:
        raise ValueError(message)
    height, width = shape[0], shape[1]
    if rows > height or cols > width:
        raise ValueError(
            f"tiles={tiles!r} does not fit a {height}x{width} image: every tile needs at least "
            f"one pixel, so use at most ({height}, {width}) tiles"
        )
    return rows, cols


def _check_clip_limit(clip_limit: object) -> float:
    message = f"clip_limit must be a fraction of a tile's pixels in (0, 1], got {clip_limit!r}"
    if isinstance(clip_limit, (bool, np.bool_)) or not isinstance(clip_limit, numbers.Real):
        raise TypeError(message)
    value = float(clip_limit)
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise ValueError(message)
    return value


def _luminance(image: NDArray[np.generic]) -> NDArray[np.float64]:
    """Grayscale intensities, or the largest channel of each RGB pixel, as float64."""
    data = image.astype(np.float64)
    return data if data.ndim == 2 else data.max(axis=-1)


def _bin_index(
    lum: NDArray[np.float64], dtype: np.dtype[np.generic], bins: int
) -> NDArray[np.intp]:
    """Equal-width bin of each intensity over the dtype's range; out-of-range values clamp."""
    lo, hi = dtype_range(dtype)
    # Integer images have hi - lo + 1 levels: with 256 bins, uint8 gets one bin per level.
    levels = hi - lo + 1 if np.issubdtype(dtype, np.integer) else hi - lo
    index = np.floor((lum - lo) * (bins / levels))
    return np.clip(index, 0, bins - 1).astype(np.intp)


def _mappings(hist: NDArray[np.float64]) -> NDArray[np.float64]:
    """Output level in [0, 1] for each bin of each histogram in ``hist`` (..., bins).

    The first occupied bin maps to 0 and the last bin to 1, with the cumulative
    histogram in between. A histogram with a single occupied bin has nothing to
    spread: it gets the identity mapping ``k / (bins - 1)``.
    """
    cdf = np.cumsum(hist, axis=-1)
    first = np.argmax(hist > 0, axis=-1)[..., np.newaxis]
    cdf_min = np.take_along_axis(cdf, first, axis=-1)
    total = cdf[..., -1:]
    span = total - cdf_min
    flat = span <= total * _FLAT
    mapping = np.clip((cdf - cdf_min) / np.where(flat, 1.0, span), 0.0, 1.0)
    identity = np.linspace(0.0, 1.0, hist.shape[-1])
    return np.where(flat, identity, mapping)


def _clip_histograms(hist: NDArray[np.float64], clip_limit: float) -> NDArray[np.float64]:
    """Clip each histogram of ``hist`` (..., bins) and spread the excess over all bins.

    The limit is ``clip_limit`` times the histogram's pixel count (at least the mean bin
    count, below which the result is simply flat). The excess is spread by adding one
    constant ``c`` to every bin and clipping again, with ``c`` chosen so that no pixel is
    lost: ``min(hist + c, limit)`` sums to the pixel count. That is the fixed point of
    "redistribute, re-clip, repeat", solved exactly instead of iterated.
    """
    bins = hist.shape[-1]
    count = hist.sum(axis=-1, keepdims=True)
    limit = np.maximum(clip_limit * count, count / bins)
    # With d = limit - hist, min(hist + c, limit) = hist + min(c, d): find c >= 0 with
    # sum(min(c, d)) == 0. Over sorted d, the sum is linear in c between consecutive d's.
    room = np.sort(limit - hist, axis=-1)
    below = np.cumsum(room, axis=-1) - room  # sum of the j smallest, for j = 0..bins-1
    remaining = bins - np.arange(bins)
    enough = below + remaining * room >= 0
    enough[..., -1] = True  # the total room is >= 0; guards against round-off
    j = np.argmax(enough, axis=-1)[..., np.newaxis]
    c = -np.take_along_axis(below, j, axis=-1) / (bins - j)
    clipped: NDArray[np.float64] = np.minimum(hist + np.maximum(c, 0.0), limit)
    return clipped


def _axis_tiles(
    length: int, count: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Split ``length`` pixels into ``count`` near-equal tiles.

    Returns, for each pixel position: its tile, the two tiles whose centres bracket it,
    and the weight of the second one (0 before the first centre and after the last).
    """
    edges = np.arange(count + 1) * length // count
    tile = np.repeat(np.arange(count), np.diff(edges))
    centres = (edges[:-1] + edges[1:] - 1) / 2.0
    pos = np.arange(length, dtype=np.float64)
    first = np.clip(np.searchsorted(centres, pos, side="right") - 1, 0, count - 1)
    second = np.minimum(first + 1, count - 1)
    gap = centres[second] - centres[first]
    offset = pos - centres[first]
    weight = np.divide(offset, gap, out=np.zeros(length), where=gap > 0)
    return tile, first, second, np.clip(weight, 0.0, 1.0)


def _unchanged(image: NDArray[np.generic]) -> NDArray[np.generic]:
    """A copy of an image that has nothing to equalize (all pixels in one bin)."""
    return np.array(image, copy=True)


def _recombine(
    image: NDArray[np.generic], lum: NDArray[np.float64], level: NDArray[np.float64]
) -> NDArray[np.generic]:
    """Build the output image whose luminance is ``level`` (in [0, 1])."""
    lo, hi = dtype_range(image.dtype)
    new = level * (hi - lo)
    if image.ndim == 2:
        return _to_dtype(lo + new, image.dtype)
    offsets = image.astype(np.float64) - lo
    old = (lum - lo)[..., np.newaxis]
    # Each channel keeps its fraction of the pixel's largest channel; the largest one
    # gets exactly the new luminance (x / x == 1.0). Pixels with every channel at the
    # bottom of the range have no hue: they become grey at the new luminance.
    ratio = np.divide(offsets, old, out=np.ones_like(offsets), where=old > 0)
    return _to_dtype(lo + new[..., np.newaxis] * ratio, image.dtype)


def equalize_histogram(image: NDArray[np.generic], *, bins: int = 256) -> NDArray[np.generic]:
    """Spread intensities so that their histogram becomes as flat as possible.

    Each of ``bins`` equal-width bins over the dtype's range maps to its cumulative
    share of the pixels: the lowest occupied bin goes to the bottom of the range, the
    highest to the top. The mapping never reorders two intensities. uint8 images with
    all 256 levels equally frequent come back unchanged.

    Colour (H, W, 3) images are equalized on their luminance, the largest channel of
    each pixel, and every pixel's channels are scaled by one factor, so hues are kept.
    Float images are expected in [0, 1]; values outside it count as 0 or 1. An image
    whose pixels all fall into one bin (e.g. a constant image) is returned unchanged.

    Raises ``TypeError`` for non-arrays and bool/complex/object dtypes, ``ValueError``
    for other shapes, empty images, NaN/infinite values and ``bins`` outside [2, 65536].
    """
    image = _check_input(image)
    nbins = _check_bins(bins)
    lum = _luminance(image)
    index = _bin_index(lum, image.dtype, nbins)
    if index.min() == index.max():
        return _unchanged(image)
    hist = np.bincount(index.ravel(), minlength=nbins).astype(np.float64)
    return _recombine(image, lum, np.take(_mappings(hist), index))


def equalize_adaptive(
    image: NDArray[np.generic],
    *,
    tiles: tuple[int, int] = (8, 8),
    clip_limit: float = 0.01,
    bins: int = 256,
) -> NDArray[np.generic]:
    """Contrast-limited adaptive histogram equalization (CLAHE-style).

    The image is split into a ``tiles = (rows, columns)`` grid of near-equal tiles.
    Each tile gets its own equalization mapping (as in :func:`equalize_histogram`) from
    its histogram, after clipping every bin at ``clip_limit`` times the tile's pixel
    count and spreading the clipped excess evenly over all bins. A pixel's output is
    the bilinear blend of the mappings of the (up to) four tiles whose centres surround
    it, so the result varies smoothly across tile borders, without block seams.

    ``clip_limit`` is the largest fraction of a tile's pixels one bin may hold, in
    (0, 1]: 1 disables clipping (plain per-tile equalization, strongest contrast);
    smaller values limit how much a tile's contrast is stretched. In multiples of the
    mean bin count that is ``clip_limit * bins`` (the default 0.01 with 256 bins is
    2.56). At or below ``1 / bins`` every histogram becomes flat and every mapping
    linear, ``k / (bins - 1)``: uint8 images with 256 bins come back unchanged.

    Colour images, dtypes, ranges, binning and constant images are handled as in
    :func:`equalize_histogram`. Besides its errors, raises ``TypeError`` / ``ValueError``
    for ``tiles`` that is not a pair of positive integers or has more rows/columns than
    the image, for ``tiles[0] * tiles[1] * bins`` above 2**25 (the per-tile mapping tables
    would take gigabytes), and for ``clip_limit`` that is not a number in (0, 1].
    """
    image = _check_input(image)
    nbins = _check_bins(bins)
    rows, cols = _check_tiles(tiles, image.shape)
    if rows * cols * nbins > _MAX_TABLE:
        raise ValueError(
            f"tiles={tiles!r} with bins={nbins} needs {rows * cols * nbins} histogram entries, "
            f"more than {_MAX_TABLE}: use fewer tiles or bins"
        )
    limit = _check_clip_limit(clip_limit)
    lum = _luminance(image)
    index = _bin_index(lum, image.dtype, nbins)
    if index.min() == index.max():
        return _unchanged(image)

    height, width = index.shape
    row_tile, row_a, row_b, row_w = _axis_tiles(height, rows)
    col_tile, col_a, col_b, col_w = _axis_tiles(width, cols)
    tile_id = row_tile[:, np.newaxis] * cols + col_tile[np.newaxis, :]
    hist = np.bincount((tile_id * nbins + index).ravel(), minlength=rows * cols * nbins)
    clipped = _clip_histograms(hist.reshape(rows * cols, nbins).astype(np.float64), limit)
    table = _mappings(clipped).ravel()

    def lookup(tile_rows: NDArray[np.intp], tile_cols: NDArray[np.intp]) -> NDArray[np.float64]:
        tile = tile_rows[:, np.newaxis] * cols + tile_cols[np.newaxis, :]
        return np.take(table, tile * nbins + index)

    wy = row_w[:, np.newaxis]
    wx = col_w[np.newaxis, :]
    top = (1.0 - wx) * lookup(row_a, col_a) + wx * lookup(row_a, col_b)
    bottom = (1.0 - wx) * lookup(row_b, col_a) + wx * lookup(row_b, col_b)
    level = np.clip((1.0 - wy) * top + wy * bottom, 0.0, 1.0)
    return _recombine(image, lum, level)
