from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dataquality import REPORT_VERSION, CheckResult, ColumnRule, Report, Suite, check


@pytest.fixture
def frame() -> pd.DataFrame:
    table: pd.DataFrame = pd.DataFrame(
        {
            "age": [np.nan, 30.0, 150.0, 41.0],
            "segment": ["a", "b", "z", "a"],
            "id": [1, 2, 2, 3],
            "extra": [None, None, None, None],
        }
    )
    return table


SUITE = {
    "columns": {
        "age": {"dtype": "float", "max_null_ratio": 0.0, "min": 0, "max": 120},
        "segment": {"dtype": "string", "allowed": ["a", "b", "c"]},
        "id": {"dtype": "int", "unique": True},
        "missing": {"dtype": "int"},
    },
    "allow_extra_columns": False,
}


def test_report_of_a_failing_suite(frame: pd.DataFrame) -> None:
    report = check(frame, SUITE)
    assert report.rows == 4
    assert report.columns == ("age", "segment", "id", "extra")
    assert report.null_ratios == {"age": 0.25, "segment": 0.0, "id": 0.0, "extra": 1.0}
    assert [(r.check, r.column) for r in report.results] == [
        ("columns", None),
        ("dtype", "age"),
        ("nulls", "age"),
        ("range", "age"),
        ("dtype", "segment"),
        ("allowed", "segment"),
        ("dtype", "id"),
        ("unique", "id"),
    ]
    assert not report.passed
    assert report.reasons == [
        (
            "table: missing columns: ['missing']; unexpected columns: ['extra'] "
            "(extra columns are not allowed)"
        ),
        "age: 1 of 4 values (25.0%) are null; at most 0.0% allowed",
        (
            "age: 1 of 3 non-null values are outside [0, 120], e.g. [150.0]; "
            "observed min 30.0, max 150.0"
        ),
        "segment: values not allowed: ['z'] (allowed: ['a', 'b', 'c'])",
        "id: 1 duplicated value, e.g. [2]",
    ]
    assert [r.reason for r in report.failures] == report.reasons
    assert all(not r.passed for r in report.failures)


def test_passing_report_reasons_are_set_for_passed_checks(frame: pd.DataFrame) -> None:
    suite = Suite({"segment": ColumnRule(dtype="string", max_null_ratio=0.0)})
    report = suite.check(frame)
    assert report.passed
    assert report.failures == ()
    assert report.reasons == []
    assert all(r.reason for r in report.results)


def test_a_report_without_results_passes() -> None:
    report = Report(rows=0, columns=(), null_ratios={}, results=())
    assert report.passed
    assert Report.from_json(report.to_json()) == report


def test_json_round_trip_is_equal(frame: pd.DataFrame) -> None:
    report = check(frame, SUITE)
    text = report.to_json()
    assert Report.from_json(text) == report
    assert Report.from_dict(report.to_dict()) == report
    assert Report.from_json(text).to_json() == text


def test_json_is_stable_and_versioned(frame: pd.DataFrame) -> None:
    report = check(frame, SUITE)
    text = report.to_json()
    data = json.loads(text)
    assert data["version"] == REPORT_VERSION
    assert data["passed"] is False
    assert text == json.dumps(data, sort_keys=True, indent=2)
    assert check(frame, SUITE).to_json() == text


def test_report_on_an_empty_table() -> None:
    empty = pd.DataFrame(
        {"age": pd.Series([], dtype="float64"), "id": pd.Series([], dtype="int64")}
    )
    report = check(
        empty,
        {"columns": {"age": {"max_null_ratio": 0.0, "min": 0, "max": 1}, "id": {"unique": True}}},
    )
    assert report.rows == 0
    assert report.null_ratios == {"age": 0.0, "id": 0.0}
    assert report.passed
    assert Report.from_json(report.to_json()) == report


def test_report_on_an_all_null_column(frame: pd.DataFrame) -> None:
    report = check(
        frame,
        {"columns": {"extra": {"dtype": "string", "max_null_ratio": 0.5, "min": 0, "allowed": []}}},
    )
    assert report.null_ratios["extra"] == 1.0
    assert [r.passed for r in report.results] == [True, True, False, True, True]
    assert report.reasons == ["extra: 4 of 4 values (100.0%) are null; at most 50.0% allowed"]


def test_report_values_are_normalised_to_json_native() -> None:
    observed = {"min": np.int64(1), "max": (2,)}
    result = CheckResult("range", "x", np.bool_(True), "ok", observed)  # type: ignore[arg-type]
    assert result.passed is True
    assert result.observed == {"min": 1, "max": [2]}
    report = Report(rows=1, columns=["x"], null_ratios={"x": np.float64(0)}, results=[result])  # type: ignore[arg-type]
    assert report.columns == ("x",)
    assert report.results == (result,)
    assert Report.from_json(report.to_json()) == report


def good() -> dict[str, Any]:
    report = check(pd.DataFrame({"a": [1, None]}), {"columns": {"a": {"max_null_ratio": 0.0}}})
    return report.to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "unsupported report version 2"),
        ({"extra": 1}, r"unknown keys \['extra'\]"),
        ({"rows": -1}, "rows must be a non-negative integer"),
        ({"rows": True}, "rows must be a non-negative integer"),
        ({"columns": "a"}, "columns must be a list of strings"),
        ({"null_ratios": {"b": 0.0}}, r"missing \['a'\], unknown \['b'\]"),
        ({"null_ratios": {"a": 1.5}}, r"null_ratios\['a'\] must be in \[0, 1\]"),
        ({"null_ratios": [0.5]}, "null_ratios must be a mapping"),
        ({"results": {}}, "results must be a list"),
        ({"passed": True}, "passed is True but the results say False"),
    ],
)
def test_from_dict_validates(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Report.from_dict(good() | change)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"check": "size"}, r"results\[1\]: check must be one of \['columns', 'dtype'"),
        ({"passed": "no"}, r"results\[1\]: passed must be true or false"),
        ({"reason": None}, r"results\[1\]: reason must be a string"),
        ({"column": 3}, r"results\[1\]: column must be a string or None"),
        ({"why": 1}, r"results\[1\]: .*unknown keys \['why'\]"),
    ],
)
def test_from_dict_validates_results(change: dict[str, Any], message: str) -> None:
    data = good()
    data["results"][1] = data["results"][1] | change
    with pytest.raises(ValueError, match=message):
        Report.from_dict(data)


def test_from_dict_missing_keys_and_bad_json() -> None:
    data = good()
    del data["results"]
    with pytest.raises(ValueError, match=r"missing keys \['results'\]"):
        Report.from_dict(data)
    with pytest.raises(ValueError, match="not a report JSON document"):
        Report.from_json("{")
    with pytest.raises(ValueError, match="is an object, got list"):
        Report.from_json("[]")
    with pytest.raises(TypeError, match="got str"):
        Report.from_dict("{}")  # type: ignore[arg-type]
