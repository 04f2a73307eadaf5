from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from matplotlib.figure import Figure
from matplotlib.image import imread
from viz import before_after_png, data_uri, distribution_png, figure_png, missing_map_png

PNG = b"\x89PNG\r\n\x1a\n"


def pixels(png: bytes) -> np.ndarray:
    assert png.startswith(PNG)
    return imread(io.BytesIO(png), format="png")


def test_distribution_is_a_png_of_the_requested_size() -> None:
    png = distribution_png(np.arange(100.0), title="ramp", size=(4.0, 2.0))
    assert pixels(png).shape[:2] == (200, 400)


def test_distribution_bytes_are_deterministic_and_follow_the_data() -> None:
    values = np.random.default_rng(0).normal(size=500)
    first = distribution_png(values)
    assert distribution_png(values.copy()) == first
    assert distribution_png(values + 3.0) != first
    assert b"Software" not in first


def test_distribution_leaves_out_nulls() -> None:
    with_nan = pd.Series([1.0, 2.0, np.nan, 2.0, 3.0])
    assert distribution_png(with_nan) == distribution_png([1.0, 2.0, 2.0, 3.0])


def test_distribution_overlay_of_before_and_after() -> None:
    before = np.array([1.0, np.nan, 3.0])
    png = distribution_png({"before": before, "after": np.array([1.0, 2.0, 3.0])})
    assert png != distribution_png({"after": np.array([1.0, 2.0, 3.0])})


def test_distribution_of_nothing_still_renders() -> None:
    assert pixels(distribution_png([np.nan, np.nan])).size


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (["a", "b"], TypeError, "numeric"),
        (np.array(["x"], dtype=object), TypeError, "non-numeric"),
        ({}, ValueError, "empty"),
    ],
)
def test_distribution_rejects_bad_data(data: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        distribution_png(data)  # type: ignore[arg-type]


@pytest.mark.parametrize("bins", [0, -3, True, 2.5])
def test_distribution_rejects_bad_bins(bins: object) -> None:
    with pytest.raises(ValueError, match="bins"):
        distribution_png([1.0, 2.0], bins=bins)  # type: ignore[arg-type]


@settings(max_examples=15, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 50), elements=st.floats(-1e6, 1e6)))
def test_distribution_renders_any_finite_sample(values: np.ndarray) -> None:
    assert pixels(distribution_png(values)).ndim == 3


def test_missing_map_shows_where_values_are_missing() -> None:
    complete = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": ["x", "y", "z", "w"]})
    gappy = complete.assign(a=[1.0, None, None, 4.0])
    assert missing_map_png(gappy) != missing_map_png(complete)
    # More dark pixels where cells are missing.
    assert pixels(missing_map_png(gappy)).mean() < pixels(missing_map_png(complete)).mean()


def test_missing_map_samples_long_tables_and_handles_no_rows() -> None:
    long = pd.DataFrame({"a": np.where(np.arange(10_000) % 7 == 0, np.nan, 1.0)})
    assert pixels(missing_map_png(long, max_rows=100)).size
    assert pixels(missing_map_png(long.iloc[:0])).size


def test_missing_map_rejects_what_is_not_a_table() -> None:
    with pytest.raises(TypeError, match="DataFrame"):
        missing_map_png([[1, None]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no columns"):
        missing_map_png(pd.DataFrame(index=range(3)))


def test_before_after_shows_a_contrast_change() -> None:
    flat = np.full((16, 16), 120, dtype=np.uint8)
    ramp = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))
    png = before_after_png(flat, ramp)
    assert pixels(png).shape[:2] == (720, 800)
    assert png != before_after_png(flat, flat)
    assert before_after_png(flat, ramp, histograms=False) != png


def test_before_after_accepts_rgb_and_float_images() -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint16)
    rgb[..., 0] = 65535
    assert pixels(before_after_png(rgb, rgb.astype(np.float32) / 65535)).size


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((4, 4), dtype=bool), TypeError, "dtype bool"),
        (np.zeros((4, 4, 2)), ValueError, "shape"),
        (np.zeros((0, 4)), ValueError, "empty"),
        ([[0, 1]], TypeError, "numpy array"),
    ],
)
def test_before_after_rejects_bad_images(image: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        before_after_png(np.zeros((4, 4)), image)  # type: ignore[arg-type]


def test_before_after_needs_two_titles() -> None:
    with pytest.raises(ValueError, match="two"):
        before_after_png(np.zeros((2, 2)), np.zeros((2, 2)), titles=("only one",))


def test_figure_png_and_data_uri() -> None:
    figure = Figure(figsize=(1, 1))
    figure.add_subplot().plot([0, 1], [1, 0])
    png = figure_png(figure, dpi=50)
    assert pixels(png).shape[:2] == (50, 50)
    assert data_uri(png).startswith("data:image/png;base64,iVBOR")
    with pytest.raises(ValueError, match="PNG"):
        data_uri(b"GIF89a")
    with pytest.raises(TypeError, match="Figure"):
        figure_png("not a figure")  # type: ignore[arg-type]
