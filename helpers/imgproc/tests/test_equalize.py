from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from imgproc import dtype_range, equalize_adaptive, equalize_histogram
from imgproc._equalize import _clip_histograms

# ---------------------------------------------------------------- known cases


@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [(np.uint8, 50, 200), (np.uint16, 100, 60000), (np.int16, -5, 7), (np.float64, 0.3, 0.697)],
)
def test_two_levels_map_to_the_extremes(dtype: type, low: float, high: float) -> None:
    image: np.ndarray = np.array([[low, high, low], [high, low, high]], dtype=dtype)
    out = equalize_histogram(image)
    lo, hi = dtype_range(dtype)
    assert out.dtype == dtype
    assert np.array_equal(out == lo, image == low)
    assert np.array_equal(out == hi, image == high)


def test_ramp_stays_monotone_and_fills_the_range() -> None:
    image = np.tile(np.arange(100, 151, dtype=np.uint8), (3, 1))
    out = equalize_histogram(image)
    assert np.all(np.diff(out[0].astype(int)) > 0)
    assert out.min() == 0
    assert out.max() == 255


def test_uniform_uint8_histogram_is_the_identity() -> None:
    image = np.random.default_rng(1).permutation(np.repeat(np.arange(256), 3)).astype(np.uint8)
    image = image.reshape(24, 32)
    assert np.array_equal(equalize_histogram(image), image)


def test_output_histogram_is_flat() -> None:
    # A dark-skewed image: after equalization each output level o has about o/255 of
    # the pixels at or below it.
    image = (np.random.default_rng(2).random((64, 64)) ** 3 * 255).astype(np.uint8)
    out = equalize_histogram(image)
    levels = np.unique(out)
    below = np.searchsorted(np.sort(out.ravel()), levels, side="right") / out.size
    largest_bin = np.bincount(image.ravel()).max() / image.size
    assert np.all(np.abs(below - levels / 255) <= largest_bin + 1 / 255)


def test_float32_stays_float32_in_the_unit_interval() -> None:
    image = np.linspace(0.4, 0.45, 60, dtype=np.float32).reshape(6, 10)
    for out in (equalize_histogram(image), equalize_adaptive(image, tiles=(2, 2))):
        assert out.dtype == np.float32
        assert out.min() >= 0.0
        assert out.max() <= 1.0
    assert equalize_histogram(image).min() == 0.0
    assert equalize_histogram(image).max() == 1.0


def test_more_bins_give_finer_levels_on_uint16() -> None:
    image = np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)
    assert len(np.unique(equalize_histogram(image))) == 256
    assert len(np.unique(equalize_histogram(image, bins=4096))) == 1024


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_64_bit_integers_reach_their_max(dtype: type) -> None:
    info = np.iinfo(dtype)
    # float64 cannot hold the max exactly (it rounds up past it): the cast must not wrap.
    image: np.ndarray = np.array([[info.min, info.max], [info.max - 1, info.min]], dtype=dtype)
    for out in (equalize_histogram(image), equalize_adaptive(image, tiles=(2, 1))):
        assert out.dtype == dtype
        assert out.tolist() == [[info.min, info.max], [info.max, info.min]]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3)])
def test_constant_images_come_back_unchanged(dtype: type, shape: tuple[int, ...]) -> None:
    image: np.ndarray = np.full(shape, 0.5 if np.issubdtype(dtype, np.floating) else 3, dtype=dtype)
    for out in (equalize_histogram(image), equalize_adaptive(image, tiles=(2, 3))):
        assert out.dtype == image.dtype
        assert np.array_equal(out, image)
        assert out is not image


def test_rgb_keeps_hue_and_equalizes_the_largest_channel() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((16, 16, 3)) * 0.3 + 0.1
    out = equalize_histogram(image)
    value = image.max(axis=-1, keepdims=True)
    new_value = out.max(axis=-1, keepdims=True)
    # Every channel is scaled by the same factor: ratios between channels are kept.
    assert np.allclose(out * value, image * new_value)
    assert np.array_equal(out.max(axis=-1), equalize_histogram(image.max(axis=-1)))
    assert new_value.min() == 0.0
    assert new_value.max() == 1.0


def test_rgb_grey_and_black_pixels_stay_grey_and_black() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2] = 90  # grey
    image[3, 3] = (10, 200, 30)
    out = equalize_adaptive(image, tiles=(2, 2), clip_limit=1.0)
    assert np.all(out[:2] == out[:2, :, :1])  # grey stays grey
    assert np.all(out[2, :3] == 0)  # black stays black
    assert out[3, 3, 0] < out[3, 3, 2] < out[3, 3, 1]


def test_adaptive_raises_local_contrast() -> None:
    rng = np.random.default_rng(4)
    image = np.empty((64, 64), np.uint8)
    image[:, :32] = rng.integers(10, 30, (64, 32))  # dark, low contrast
    image[:, 32:] = rng.integers(220, 240, (64, 32))  # bright, low contrast
    global_out = equalize_histogram(image).astype(float)
    local_out = equalize_adaptive(image, tiles=(4, 4), clip_limit=0.05).astype(float)
    inside = np.s_[8:56, 4:12]  # well inside the dark half, away from its border
    assert local_out[inside].std() > 1.5 * global_out[inside].std()


def test_adaptive_has_no_seam_between_tiles() -> None:
    rng = np.random.default_rng(5)
    image = np.empty((64, 64), np.uint8)
    image[:, :32] = rng.integers(0, 101, (64, 32))
    image[:, 32:] = rng.integers(155, 256, (64, 32))
    image[30:34] = 128  # the top of the left tile, the bottom of the right one
    out = equalize_adaptive(image, tiles=(1, 2), clip_limit=1.0)
    stripe = out[31].astype(int)
    assert stripe[0] == 255
    assert stripe[-1] == 0
    # Tile centres are 32 pixels apart: the stripe ramps down in steps of about 255 / 32
    # instead of jumping at the tile border.
    assert np.all(np.diff(stripe) <= 0)
    assert np.abs(np.diff(stripe)).max() <= 255 / 32 + 1


def test_smaller_clip_limit_changes_less() -> None:
    image = (np.random.default_rng(6).random((48, 48)) ** 2 * 255).astype(np.uint8)
    changes = [
        np.abs(equalize_adaptive(image, clip_limit=c, tiles=(3, 3)).astype(int) - image).mean()
        for c in (1.0, 0.05, 0.01, 1 / 256)
    ]
    assert changes == sorted(changes, reverse=True)
    assert changes[-1] == 0  # a limit at the mean bin count flattens every histogram


def test_adaptive_512_uint8() -> None:
    image = (np.random.default_rng(7).random((512, 512)) * 255).astype(np.uint8)
    out = equalize_adaptive(image)
    assert out.shape == image.shape
    assert out.dtype == np.uint8


# ---------------------------------------------------------------- bad input

BOTH = pytest.mark.parametrize("equalize", [equalize_histogram, equalize_adaptive])


@BOTH
@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        ([[1, 2], [3, 4]], TypeError, "numpy array"),
        (np.zeros(4, np.uint8), ValueError, r"\(H, W, 3\).*shape \(4,\)"),
        (np.zeros((4, 4, 4), np.uint8), ValueError, r"RGB \(H, W, 3\).*shape \(4, 4, 4\)"),
        (np.zeros((4, 4, 1), np.uint8), ValueError, "RGB"),
        (np.zeros((2, 2, 2, 3), np.uint8), ValueError, "shape"),
        (np.zeros((4, 4), bool), TypeError, "boolean"),
        (np.zeros((4, 4), complex), TypeError, "dtype"),
        (np.zeros((4, 4), object), TypeError, "dtype"),
        (np.zeros((0, 4), np.uint8), ValueError, "non-empty"),
        (np.zeros((3, 0, 3), np.float32), ValueError, "non-empty"),
        (np.array([[0.1, np.nan]]), ValueError, "NaN"),
        (np.array([[0.1, np.inf]]), ValueError, "infinite"),
    ],
)
def test_bad_images_are_rejected(
    equalize: Any, image: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        equalize(image)


@BOTH
@pytest.mark.parametrize(
    ("bins", "error"),
    [(1, ValueError), (0, ValueError), (65537, ValueError), (2.5, TypeError), (True, TypeError)],
)
def test_bad_bins_are_rejected(equalize: Any, bins: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"bins must be an integer in \[2, 65536\]"):
        equalize(np.zeros((4, 4), np.uint8), bins=bins)


@pytest.mark.parametrize(
    ("tiles", "error", "match"),
    [
        ((0, 2), ValueError, "positive integers"),
        ((2, -1), ValueError, "positive integers"),
        ((5, 2), ValueError, r"4x6 image.*at most \(4, 6\)"),
        ((2, 7), ValueError, r"4x6 image.*at most \(4, 6\)"),
        (8, TypeError, "pair of positive integers"),
        ((2,), TypeError, "pair of positive integers"),
        ((2, 2, 2), TypeError, "pair of positive integers"),
        ((2.0, 2), TypeError, "pair of positive integers"),
        ((True, 1), TypeError, "pair of positive integers"),
    ],
)
def test_bad_tiles_are_rejected(tiles: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=f"tiles.*{match}"):
        equalize_adaptive(np.zeros((4, 6), np.uint8), tiles=tiles)


def test_huge_tile_tables_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"tiles=\(64, 64\) with bins=65536.*fewer tiles or bins"):
        equalize_adaptive(np.zeros((64, 64), np.uint16), tiles=(64, 64), bins=65536)
    out = equalize_adaptive(np.zeros((64, 64), np.uint16), tiles=(16, 32), bins=65536)
    assert out.shape == (64, 64)


@pytest.mark.parametrize(
    ("clip_limit", "error"),
    [
        (0, ValueError),
        (-0.1, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("0.1", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_clip_limits_are_rejected(clip_limit: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"clip_limit must be a fraction .* in \(0, 1\]"):
        equalize_adaptive(np.zeros((4, 4), np.uint8), tiles=(2, 2), clip_limit=clip_limit)


def test_numpy_integers_are_accepted_as_arguments() -> None:
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    expected = equalize_adaptive(image, tiles=(2, 2), bins=64)
    out = equalize_adaptive(image, tiles=(np.int64(2), np.int32(2)), bins=np.int64(64))
    assert np.array_equal(out, expected)


# ---------------------------------------------------------------- properties

FAST = settings(max_examples=60, deadline=None)

DTYPES = [np.uint8, np.uint16, np.int16, np.int64, np.uint64, np.float32, np.float64]


@st.composite
def images(draw: st.DrawFn, colour: bool | None = None, min_side: int = 1) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if colour is None:
        colour = draw(st.booleans())
    h = draw(st.integers(min_side, 12))
    w = draw(st.integers(min_side, 12))
    shape = (h, w, 3) if colour else (h, w)
    if np.issubdtype(dtype, np.floating):
        elements = st.floats(0, 1, width=32 if dtype == np.float32 else 64)
    else:
        info = np.iinfo(dtype)  # type: ignore[type-var]  # an integer dtype here
        # Few distinct values make repeats (and constant images) common.
        values = {info.min, info.max, info.max - 1, 0, 1, 7, 100, 255}
        elements = st.sampled_from(sorted(v for v in values if info.min <= v <= info.max))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def adaptive_args(draw: st.DrawFn, image: np.ndarray) -> dict[str, Any]:
    return {
        "tiles": (draw(st.integers(1, image.shape[0])), draw(st.integers(1, image.shape[1]))),
        "clip_limit": draw(st.floats(0.001, 1.0)),
        "bins": draw(st.sampled_from([2, 16, 256, 1000])),
    }


def _check_shape_dtype_range(image: np.ndarray, out: np.ndarray) -> None:
    lo, hi = dtype_range(image.dtype)
    assert out.shape == image.shape
    assert out.dtype == image.dtype
    assert out.min() >= lo
    assert out.max() <= hi


@FAST
@given(images(), st.sampled_from([2, 16, 256, 1000]))
def test_histogram_keeps_shape_dtype_and_range(image: np.ndarray, bins: int) -> None:
    _check_shape_dtype_range(image, equalize_histogram(image, bins=bins))


@FAST
@given(st.data())
def test_adaptive_keeps_shape_dtype_and_range(data: st.DataObject) -> None:
    image = data.draw(images())
    out = equalize_adaptive(image, **data.draw(adaptive_args(image)))
    _check_shape_dtype_range(image, out)


@FAST
@given(images(colour=False), st.sampled_from([2, 16, 256, 1000]))
def test_histogram_never_reorders_intensities(image: np.ndarray, bins: int) -> None:
    values = image.ravel()
    out = equalize_histogram(image, bins=bins).ravel()
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(out[order].astype(np.float64)) >= 0)
    # Equal inputs give equal outputs: the output is a function of the input value.
    _, first, group = np.unique(values, return_index=True, return_inverse=True)
    assert np.array_equal(out, out[first][group])


@FAST
@given(images(colour=True))
def test_rgb_keeps_channel_order_and_equalizes_the_largest_channel(image: np.ndarray) -> None:
    out = equalize_histogram(image)
    order = np.argsort(image, axis=-1, kind="stable")
    assert np.all(np.diff(np.take_along_axis(out, order, axis=-1).astype(float), axis=-1) >= 0)
    assert np.array_equal(out.max(axis=-1), equalize_histogram(image.max(axis=-1)))


@FAST
@given(st.sampled_from(DTYPES), st.booleans(), st.integers(1, 9), st.integers(1, 9), st.data())
def test_constant_images_are_unchanged(
    dtype: type, colour: bool, h: int, w: int, data: st.DataObject
) -> None:
    if np.issubdtype(dtype, np.floating):
        value: float = data.draw(st.floats(0.0, 1.0))
    else:
        info = np.iinfo(dtype)
        value = data.draw(st.integers(info.min, info.max))
    image: np.ndarray = np.full((h, w, 3) if colour else (h, w), value, dtype=dtype)
    assert np.array_equal(equalize_histogram(image), image)
    assert np.array_equal(equalize_adaptive(image, **data.draw(adaptive_args(image))), image)


@FAST
@given(images(), st.sampled_from([2, 16, 256, 1000]))
def test_one_unclipped_tile_is_global_equalization(image: np.ndarray, bins: int) -> None:
    out = equalize_adaptive(image, tiles=(1, 1), clip_limit=1.0, bins=bins)
    assert np.array_equal(out, equalize_histogram(image, bins=bins))


@FAST
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=16)))
def test_clip_limit_at_mean_bin_count_is_the_identity(image: np.ndarray) -> None:
    tiles = (min(3, image.shape[0]), min(3, image.shape[1]))
    assert np.array_equal(equalize_adaptive(image, tiles=tiles, clip_limit=1 / 256), image)


@FAST
@given(st.data())
def test_adaptive_is_smooth_across_tiles(data: st.DataObject) -> None:
    # Neighbours with equal input differ at most by the change of the blend weights,
    # 1 / (distance between tile centres) per pixel, times the range (+1 for rounding).
    # A stripe of one value across the image makes sure such pairs span tile borders.
    image = data.draw(hnp.arrays(np.uint8, st.tuples(st.integers(6, 24), st.integers(6, 24))))
    rows = data.draw(st.integers(1, image.shape[0] // 2))
    cols = data.draw(st.integers(1, image.shape[1] // 2))
    value = data.draw(st.integers(0, 255))
    image[data.draw(st.integers(0, image.shape[0] - 1)), :] = value
    image[:, data.draw(st.integers(0, image.shape[1] - 1))] = value
    clip_limit = data.draw(st.floats(0.001, 1.0))
    out = equalize_adaptive(image, tiles=(rows, cols), clip_limit=clip_limit).astype(int)
    for axis, count in ((0, rows), (1, cols)):
        same = np.diff(image.astype(int), axis=axis) == 0
        jumps = np.abs(np.diff(out, axis=axis))[same]
        gap = image.shape[axis] // count
        bound = 255 / gap + 1 if count > 1 else 0
        assert np.all(jumps <= bound + 1e-9)


@FAST
@given(
    hnp.arrays(
        np.float64, st.tuples(st.integers(1, 4), st.integers(2, 40)), elements=st.integers(0, 50)
    ),
    st.floats(0.0, 1.0, exclude_min=True),
)
def test_clipping_keeps_pixels_and_respects_the_limit(hist: np.ndarray, clip_limit: float) -> None:
    hist[:, 0] += 1  # every tile has at least one pixel
    count = hist.sum(axis=-1, keepdims=True)
    limit = np.maximum(clip_limit * count, count / hist.shape[-1])
    out = _clip_histograms(hist, clip_limit)
    assert np.allclose(out.sum(axis=-1, keepdims=True), count)
    assert np.all(out <= limit * (1 + 1e-12))
    assert np.all(out >= np.minimum(hist, limit) - 1e-9)
    # Bins that were over the limit sit at it; all others got the same share c.
    over = hist >= limit
    assert np.allclose(out[over], np.broadcast_to(limit, hist.shape)[over])
    for row_h, row_out, row_limit in zip(hist, out, limit[:, 0], strict=True):
        under = row_out < row_limit * (1 - 1e-9)
        added = (row_out - row_h)[under]
        assert np.allclose(added, added[0] if added.size else 0)
