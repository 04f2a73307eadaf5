from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from imgproc import adjust_gamma, dtype_range, stretch_contrast


def test_stretch_maps_percentiles_to_full_uint8_range() -> None:
    image = np.tile(np.arange(100, 151, dtype=np.uint8), (4, 1))
    out = stretch_contrast(image, 0, 100)
    assert out.dtype == np.uint8
    assert out.min() == 0
    assert out.max() == 255
    assert np.all(np.diff(out[0].astype(int)) >= 0)  # order preserved


def test_stretch_clips_outliers() -> None:
    image = np.full((10, 10), 100, dtype=np.uint8)
    image[0, 0] = 0
    image[0, 1] = 255
    image[1, :] = 120
    out = stretch_contrast(image, 2, 98)
    assert out[0, 0] == 0
    assert out[0, 1] == 255


def test_stretch_rgb_is_per_channel() -> None:
    rng = np.random.default_rng(0)
    image = np.stack(
        [rng.integers(10, 20, (8, 8)), rng.integers(200, 210, (8, 8)), np.full((8, 8), 7)],
        axis=-1,
    ).astype(np.uint8)
    out = stretch_contrast(image, 0, 100)
    assert out[..., 0].min() == 0
    assert out[..., 0].max() == 255
    assert out[..., 1].min() == 0
    assert out[..., 1].max() == 255
    assert np.all(out[..., 2] == 7)  # constant channel unchanged


def test_constant_image_unchanged() -> None:
    image = np.full((5, 5), 0.25)
    assert np.array_equal(stretch_contrast(image), image)


def test_float_image_range_is_unit_interval() -> None:
    image = np.linspace(0.4, 0.6, 50).reshape(5, 10)
    out = stretch_contrast(image, 0, 100)
    assert out.dtype == np.float64
    assert out.min() == pytest.approx(0.0)
    assert out.max() == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_64_bit_integers_reach_their_max(dtype: type) -> None:
    info = np.iinfo(dtype)
    image = np.array([[info.min, info.max // 2, info.max]], dtype=dtype)
    out = stretch_contrast(image, 0, 100)
    assert out.dtype == dtype
    assert out[0, 0] == info.min
    assert out[0, 2] == info.max


@pytest.mark.parametrize(("low", "high"), [(50, 50), (-1, 90), (10, 101), (90, 10)])
def test_bad_percentiles_are_rejected(low: float, high: float) -> None:
    with pytest.raises(ValueError, match="percentiles"):
        stretch_contrast(np.zeros((2, 2), np.uint8), low, high)


def test_wrong_inputs_have_clear_errors() -> None:
    with pytest.raises(TypeError, match="numpy array"):
        stretch_contrast([[1, 2]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        stretch_contrast(np.zeros(4, np.uint8))
    with pytest.raises(TypeError, match="boolean"):
        stretch_contrast(np.zeros((2, 2), bool))
    with pytest.raises(TypeError, match="dtype"):
        stretch_contrast(np.zeros((2, 2), complex))


def test_gamma_brightens_and_darkens() -> None:
    image = np.array([[0, 64, 128, 255]], dtype=np.uint8)
    bright = adjust_gamma(image, 0.5)
    dark = adjust_gamma(image, 2.0)
    assert bright[0, 0] == 0
    assert bright[0, 3] == 255
    assert bright[0, 1] > 64 > dark[0, 1]
    assert adjust_gamma(image, 1.0).tolist() == image.tolist()


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("nan"), float("inf")])
def test_gamma_must_be_positive(gamma: float) -> None:
    with pytest.raises(ValueError, match="gamma"):
        adjust_gamma(np.zeros((2, 2), np.uint8), gamma)


int_images = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int16]),
    shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=12),
)


@given(int_images, st.floats(0, 49), st.floats(51, 100))
def test_stretch_preserves_shape_dtype_and_range(
    image: np.ndarray, low: float, high: float
) -> None:
    out = stretch_contrast(image, low, high)
    lo, hi = dtype_range(image.dtype)
    assert out.shape == image.shape
    assert out.dtype == image.dtype
    assert out.min() >= lo
    assert out.max() <= hi


@given(int_images, st.floats(0.1, 10))
def test_gamma_is_monotonic(image: np.ndarray, gamma: float) -> None:
    flat = np.sort(image.ravel())
    out = adjust_gamma(flat.reshape(1, -1), gamma).ravel()
    assert np.all(np.diff(out.astype(np.int64)) >= 0)
