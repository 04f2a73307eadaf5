"""Property tests: what holds for any table."""

from __future__ import annotations

from typing import Any

import pandas as pd
from dataquality import (
    KINDS,
    ColumnRule,
    Report,
    Suite,
    check_nulls,
    column_kind,
    null_ratios,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# A decorator, not a loaded profile: a profile would leak into other helpers' tests.
small = settings(max_examples=50, deadline=None)

finite = st.floats(allow_nan=False, allow_infinity=False)
cells: dict[str, st.SearchStrategy[Any]] = {
    "float64": finite,
    "Int64": st.integers(-(2**40), 2**40),
    "str": st.text(alphabet="abcxyz", max_size=3),
    "boolean": st.booleans(),
}


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(0, 15))
    dtypes = draw(st.lists(st.sampled_from(sorted(cells)), min_size=1, max_size=4))
    data = {}
    for index, dtype in enumerate(dtypes):
        values = draw(st.lists(st.one_of(st.none(), cells[dtype]), min_size=rows, max_size=rows))
        data[f"c{index}"] = pd.Series(values, dtype=dtype)
    frame: pd.DataFrame = pd.DataFrame(data)
    return frame


@small
@given(frames())
def test_null_ratio_is_null_count_over_rows(frame: pd.DataFrame) -> None:
    ratios = null_ratios(frame)
    assert list(ratios) == list(frame.columns)
    for column, ratio in ratios.items():
        assert type(ratio) is float
        assert 0.0 <= ratio <= 1.0
        nulls = int(frame[column].isna().sum())
        assert ratio == (nulls / len(frame) if len(frame) else 0.0)
        assert check_nulls(frame, column, ratio).passed


def rule_from_observation(series: pd.Series) -> ColumnRule:
    """The tightest rule the column satisfies: its own kind, null ratio, range, values."""
    kind = column_kind(series)
    values = series.dropna()
    ratio = float(series.isna().mean()) if len(series) else 0.0
    numeric = kind in ("int", "float") and not values.empty
    return ColumnRule(
        dtype=kind if kind in KINDS else None,
        max_null_ratio=ratio,
        min=values.min() if numeric else None,
        max=values.max() if numeric else None,
        unique=bool(values.is_unique),
        allowed=tuple(values.unique().tolist()),
    )


@small
@given(frames())
def test_suite_built_from_the_frame_passes_on_it(frame: pd.DataFrame) -> None:
    suite = Suite(
        {column: rule_from_observation(frame[column]) for column in frame.columns},
        allow_extra_columns=False,
    )
    report = suite.check(frame)
    assert report.passed, report.reasons
    assert Suite.from_dict(suite.to_dict()).check(frame) == report


@small
@given(frames(), st.data())
def test_report_json_round_trip(frame: pd.DataFrame, data: st.DataObject) -> None:
    rules = {
        column: ColumnRule(
            dtype=data.draw(st.sampled_from(KINDS)),
            max_null_ratio=data.draw(st.floats(0, 1)),
            min=data.draw(st.one_of(st.none(), st.integers(-5, 5))),
            unique=data.draw(st.booleans()),
            allowed=data.draw(st.one_of(st.none(), st.just(("a", 1, True)))),
        )
        for column in frame.columns
    }
    report = Suite(rules, require_all_columns=data.draw(st.booleans())).check(frame)
    assert Report.from_json(report.to_json()) == report
    assert report.passed == all(r.passed for r in report.results)
    assert len(report.reasons) == len(report.failures)
