"""Property tests: what holds for any frame, whatever the values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from tabular import Imputer, impute

# Small examples keep this file fast; the properties do not depend on size. A
# decorator, not a loaded profile: a profile would leak into other helpers' tests.
small = settings(max_examples=60, deadline=None)

finite = st.floats(allow_nan=False, allow_infinity=False)
moderate_ints = st.integers(-(10**6), 10**6)
letters = st.sampled_from("abc")


def column(draw: st.DrawFn, elements: st.SearchStrategy[Any], size: int) -> list[Any]:
    """``size`` cells, some of them None, at least one observed."""
    cells = draw(st.lists(st.one_of(elements, st.none()), min_size=size, max_size=size))
    if all(cell is None for cell in cells):
        cells[draw(st.integers(0, size - 1))] = draw(elements)
    return cells


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    size = draw(st.integers(1, 12))
    frame: pd.DataFrame = pd.DataFrame(
        {
            "x": pd.Series(column(draw, finite, size), dtype="float64"),
            "n": pd.array(column(draw, moderate_ints, size), dtype="Int64"),
            "s": pd.Series(column(draw, letters, size), dtype="str"),
        }
    )
    return frame


def assert_fills_only_nulls(before: pd.DataFrame, after: pd.DataFrame, columns: list[str]) -> None:
    assert list(after.columns) == list(before.columns)
    assert len(after) == len(before)
    for column in columns:
        assert not after[column].isna().any(), column
    for column in before.columns:
        observed = before[column].notna()
        original = before.loc[observed, column].tolist()
        assert after.loc[observed, column].tolist() == original, column


@small
@given(frames(), st.sampled_from(["mean", "median"]))
def test_mean_and_median_fill_numeric_columns_only(frame: pd.DataFrame, strategy: str) -> None:
    out = impute(frame, strategy)
    assert_fills_only_nulls(frame, out, ["x", "n"])
    assert out["s"].isna().sum() == frame["s"].isna().sum()


@small
@given(frames())
def test_most_frequent_fills_every_column(frame: pd.DataFrame) -> None:
    out = impute(frame, "most_frequent")
    assert_fills_only_nulls(frame, out, ["x", "n", "s"])
    assert out.dtypes.tolist() == frame.dtypes.tolist()


@small
@given(frames(), st.sampled_from(["mean", "median"]))
def test_learned_center_lies_within_the_observed_range(frame: pd.DataFrame, strategy: str) -> None:
    stats = Imputer(strategy).fit(frame).statistics
    for column in ("x", "n"):
        observed = frame[column].dropna().to_numpy(dtype=np.float64)
        value = stats[column]
        assert isinstance(value, float)
        assert observed.min() <= value <= observed.max()


@small
@given(frames())
def test_most_frequent_value_is_a_most_frequent_observed_value(frame: pd.DataFrame) -> None:
    stats = Imputer("most_frequent").fit(frame).statistics
    for column in frame.columns:
        counts = frame[column].value_counts()
        assert counts[stats[column]] == counts.max()
        assert stats[column] == min(counts.index[counts == counts.max()])


@small
@given(frames(), frames())
def test_json_round_trip_transforms_identically(train: pd.DataFrame, serve: pd.DataFrame) -> None:
    imputer = Imputer("median", strategies={"s": "most_frequent"}).fit(train)
    loaded = Imputer.from_json(imputer.to_json())
    assert loaded.statistics == imputer.statistics
    pd.testing.assert_frame_equal(loaded.transform(serve), imputer.transform(serve))
    assert_fills_only_nulls(serve, loaded.transform(serve), ["x", "n", "s"])


@small
@given(st.lists(st.floats(min_value=-1e308, max_value=1e308), min_size=1, max_size=8))
def test_mean_of_extreme_values_stays_finite_and_in_range(values: list[float]) -> None:
    frame = pd.DataFrame({"x": [*values, None]})
    value = impute(frame)["x"].iloc[-1]
    assert np.isfinite(value)
    assert min(values) <= value <= max(values)
