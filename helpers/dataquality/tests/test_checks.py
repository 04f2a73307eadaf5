from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from dataquality import (
    CheckResult,
    check_allowed,
    check_columns,
    check_dtype,
    check_nulls,
    check_range,
    check_unique,
    column_kind,
    null_ratios,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    table: pd.DataFrame = pd.DataFrame(
        {
            "age": [np.nan] * 3 + [float(a) for a in range(20, 37)],
            "segment": ["a", "b", "c", "z"] * 5,
            "id": [7, 7, 7, *range(100, 117)],
            "score": pd.array([1, None, 3, *range(4, 21)], dtype="Int64"),
        }
    )
    return table


def assert_json_native(result: CheckResult) -> None:
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()


# ---------------------------------------------------------------- nulls


def test_nulls_fail_with_the_contract_reason(frame: pd.DataFrame) -> None:
    result = check_nulls(frame, "age", 0.0)
    assert result == CheckResult(
        "nulls",
        "age",
        passed=False,
        reason="age: 3 of 20 values (15.0%) are null; at most 0.0% allowed",
        observed=0.15,
    )


def test_nulls_pass(frame: pd.DataFrame) -> None:
    result = check_nulls(frame, "age", 0.15)
    assert result.passed
    assert result.reason == "age: 3 of 20 values (15.0%) are null; at most 15.0% allowed"
    assert check_nulls(frame, "segment", 0.0).observed == 0.0


def test_nulls_reason_never_shows_equal_percentages_for_a_failure() -> None:
    table = pd.DataFrame({"x": [None] + [1.0] * 1999})  # 0.05% null
    result = check_nulls(table, "x", 0.0004)
    assert not result.passed
    assert "(0.05%)" in result.reason
    assert "at most 0.04% allowed" in result.reason


def test_nulls_count_every_kind_of_missing_value() -> None:
    table = pd.DataFrame(
        {
            "f": [1.0, np.nan, None],
            "s": pd.Series(["a", None, ""], dtype="str"),
            "n": pd.array([1, None, 2], dtype="Int64"),
            "t": pd.Series(["2024-01-01", None, None], dtype="datetime64[us]"),
        }
    )
    assert null_ratios(table) == {"f": 2 / 3, "s": 1 / 3, "n": 1 / 3, "t": 2 / 3}


def test_nulls_on_an_empty_table_pass_with_ratio_zero() -> None:
    empty = pd.DataFrame({"x": pd.Series([], dtype="float64")})
    result = check_nulls(empty, "x", 0.0)
    assert result.passed
    assert result.observed == 0.0
    assert "0 rows" in result.reason
    assert null_ratios(empty) == {"x": 0.0}


def test_nulls_on_an_all_null_column() -> None:
    table = pd.DataFrame({"x": [None, None]})
    assert check_nulls(table, "x", 1.0).passed
    result = check_nulls(table, "x", 0.5)
    assert not result.passed
    assert result.reason == "x: 2 of 2 values (100.0%) are null; at most 50.0% allowed"


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_nulls_bound_must_be_a_ratio(frame: pd.DataFrame, bad: float) -> None:
    with pytest.raises(ValueError, match=r"max_ratio must be in \[0, 1\]"):
        check_nulls(frame, "age", bad)


# ---------------------------------------------------------------- allowed


def test_allowed_fail_with_the_contract_reason(frame: pd.DataFrame) -> None:
    result = check_allowed(frame, "segment", ["a", "b", "c"])
    assert not result.passed
    assert result.reason == "segment: values not allowed: ['z'] (allowed: ['a', 'b', 'c'])"
    assert result.observed == ["z"]


def test_allowed_pass_and_ignores_nulls() -> None:
    table = pd.DataFrame({"s": ["a", None, "b"]})
    result = check_allowed(table, "s", ("a", "b"))
    assert result.passed
    assert result.observed == []
    assert result.reason == "s: all 2 non-null values are allowed (['a', 'b'])"


def test_allowed_caps_long_lists_in_reasons() -> None:
    table = pd.DataFrame({"n": list(range(30))})
    result = check_allowed(table, "n", [0])
    assert result.reason == ("n: values not allowed: [1, 2, 3, 4, 5] and 24 more (allowed: [0])")
    assert result.observed == list(range(1, 21))  # observed keeps at most 20


def test_allowed_values_are_json_native_and_sorted() -> None:
    table = pd.DataFrame({"n": np.array([9, 3, 9, 1], dtype=np.int32)})
    result = check_allowed(table, "n", {1})
    assert result.observed == [3, 9]
    assert all(type(v) is int for v in result.observed)
    assert_json_native(result)


def test_allowed_rejects_a_string_of_values(frame: pd.DataFrame) -> None:
    with pytest.raises(TypeError, match="allowed values must be a list, tuple or set, got str"):
        check_allowed(frame, "segment", "abc")


# ---------------------------------------------------------------- unique


def test_unique_fail_with_the_contract_reason(frame: pd.DataFrame) -> None:
    result = check_unique(frame, "id")
    assert not result.passed
    assert result.reason == "id: 2 duplicated values, e.g. [7]"
    assert result.observed == {"duplicated": 2, "values": [7]}


def test_unique_pass_ignores_repeated_nulls() -> None:
    table = pd.DataFrame({"k": [1.0, None, None, 2.0]})
    result = check_unique(table, "k")
    assert result.passed
    assert result.reason == "k: all 2 non-null values are unique"


def test_unique_singular_reason() -> None:
    result = check_unique(pd.DataFrame({"k": ["x", "y", "x"]}), "k")
    assert result.reason == "k: 1 duplicated value, e.g. ['x']"


# ---------------------------------------------------------------- range


def test_range_pass(frame: pd.DataFrame) -> None:
    result = check_range(frame, "age", 0, 120)
    assert result.passed
    assert result.observed == {"min": 20.0, "max": 36.0}
    assert result.reason == (
        "age: all 17 non-null values are within [0, 120] (observed min 20.0, max 36.0)"
    )


def test_range_fail_lists_offending_values(frame: pd.DataFrame) -> None:
    result = check_range(frame, "score", 0, 10)
    assert not result.passed
    assert result.reason == (
        "score: 10 of 19 non-null values are outside [0, 10], e.g. [11, 12, 13, 14, 15] "
        "and 5 more; observed min 1, max 20"
    )
    assert result.observed == {"min": 1, "max": 20}
    assert all(type(v) is int for v in result.observed.values())


def test_range_with_one_bound(frame: pd.DataFrame) -> None:
    low = check_range(frame, "age", min=30)
    assert not low.passed
    assert "10 of 17 non-null values are below the minimum 30" in low.reason
    high = check_range(frame, "age", max=30.5)
    assert not high.passed
    assert "above the maximum 30.5" in high.reason
    assert check_range(frame, "age", max=36).passed  # bounds are inclusive
    assert check_range(frame, "age", min=20).reason.startswith("age: all 17 non-null values are >=")


def test_range_on_non_numeric_column_fails_with_a_reason(frame: pd.DataFrame) -> None:
    result = check_range(frame, "segment", 0, 1)
    assert not result.passed
    assert result.reason == (
        "segment: a range check needs an int or float column, got dtype str (string)"
    )


def test_range_on_empty_and_all_null_columns_passes_vacuously() -> None:
    for table in (
        pd.DataFrame({"x": pd.Series([], dtype="float64")}),
        pd.DataFrame({"x": [np.nan, np.nan]}),
        pd.DataFrame({"x": [None, None]}),  # object, no values
    ):
        result = check_range(table, "x", 0, 1)
        assert result.passed
        assert result.observed == {"min": None, "max": None}
        assert "vacuously" in result.reason


def test_range_on_object_numbers_and_numeric_categoricals() -> None:
    table = pd.DataFrame(
        {
            "o": pd.Series([1, 2.5, None], dtype=object),
            "c": pd.Series([1, 5, 5], dtype="category"),
        }
    )
    assert check_range(table, "o", 0, 3).passed
    assert not check_range(table, "c", 0, 3).passed


def test_range_bounds_are_validated(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="min, max or both"):
        check_range(frame, "age")
    with pytest.raises(ValueError, match="min must not exceed max"):
        check_range(frame, "age", 5, 1)
    with pytest.raises(TypeError, match="min must be a number"):
        check_range(frame, "age", "0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        check_range(frame, "age", max=float("nan"))


# ---------------------------------------------------------------- dtype


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (pd.Series([1, 2]), "int"),
        (pd.Series([1, None], dtype="Int64"), "int"),
        (pd.Series([1, 2], dtype="uint8"), "int"),
        (pd.Series([1.0, None]), "float"),
        (pd.Series([1.0, None], dtype="Float64"), "float"),
        (pd.Series([True, False]), "bool"),
        (pd.Series([True, None], dtype="boolean"), "bool"),
        (pd.Series(["a", None]), "string"),
        (pd.Series(["a", None], dtype="string"), "string"),
        (pd.Series(["a", None], dtype=object), "string"),
        (pd.Series([True, None], dtype=object), "bool"),
        (pd.Series([1, 2.5], dtype=object), "float"),
        (pd.Series(["a", "b"], dtype="category"), "string"),
        (pd.Series(["2024-01-01"], dtype="datetime64[ns]"), "datetime"),
        (pd.Series(["2024-01-01"], dtype="datetime64[ns]").dt.tz_localize("UTC"), "datetime"),
        (pd.Series([1, "a"], dtype=object), "other"),
        (pd.Series([pd.Timedelta(1)]), "other"),
        (pd.Series([None, None], dtype=object), "empty"),
    ],
)
def test_column_kind(values: pd.Series, kind: str) -> None:
    assert column_kind(values) == kind


def test_dtype_pass_and_fail(frame: pd.DataFrame) -> None:
    passed = check_dtype(frame, "id", "int")
    assert passed.passed
    assert passed.reason == "id: dtype int64 (int) matches int"
    assert passed.observed == {"dtype": "int64", "kind": "int"}
    assert check_dtype(frame, "score", "number").passed
    assert check_dtype(frame, "age", "number").passed
    failed = check_dtype(frame, "segment", "float")
    assert not failed.passed
    assert failed.reason == (
        "segment: expected float, got dtype str (string); convert it with pd.to_numeric"
    )


def test_dtype_hint_for_ints_stored_as_float(frame: pd.DataFrame) -> None:
    result = check_dtype(frame, "age", "int")
    assert not result.passed
    assert "nullable Int64" in result.reason


def test_dtype_of_an_all_null_object_column_matches_anything() -> None:
    table = pd.DataFrame({"x": [None, None]})
    result = check_dtype(table, "x", "datetime")
    assert result.passed
    assert "without non-null values" in result.reason


def test_dtype_kind_is_validated(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"kind must be one of \['int', 'float', 'number'"):
        check_dtype(frame, "age", "float64")


# ---------------------------------------------------------------- columns


def test_columns_check() -> None:
    table = pd.DataFrame({"a": [1], "b": [2]})
    assert check_columns(table, ["a"]).passed
    missing = check_columns(table, ["a", "c"])
    assert not missing.passed
    assert missing.column is None
    assert missing.reason == "table: missing columns: ['c']"
    assert missing.observed == {"missing": ["c"], "extra": []}
    extra = check_columns(table, ["a"], allow_extra=False)
    assert extra.reason == "table: unexpected columns: ['b'] (extra columns are not allowed)"
    assert check_columns(table, ["a", "c"], require_all=False).passed
    ok = check_columns(table, ["a", "b"], allow_extra=False)
    assert ok.reason == "table: all 2 expected columns are present; no unexpected columns"


# ---------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize(
    "run",
    [
        lambda f: check_dtype(f, "nope", "int"),
        lambda f: check_nulls(f, "nope", 0.1),
        lambda f: check_range(f, "nope", 0, 1),
        lambda f: check_unique(f, "nope"),
        lambda f: check_allowed(f, "nope", [1]),
    ],
)
def test_missing_column_is_a_failed_result(frame: pd.DataFrame, run: object) -> None:
    assert callable(run)
    result = run(frame)
    assert isinstance(result, CheckResult)
    assert not result.passed
    assert result.reason.startswith("nope: column is missing from the table (columns: ['age'")


def test_wrong_input_types() -> None:
    with pytest.raises(TypeError, match="expected a pandas DataFrame, got dict"):
        check_nulls({"a": [1]}, "a", 0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got Series"):
        null_ratios(pd.Series([1]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="column names must be strings"):
        null_ratios(pd.DataFrame([[1, 2]]))
    with pytest.raises(ValueError, match="unique"):
        null_ratios(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(TypeError, match="column must be a column name"):
        check_unique(pd.DataFrame({"a": [1]}), 0)  # type: ignore[arg-type]


def test_results_are_json_native(frame: pd.DataFrame) -> None:
    table = frame.assign(when=pd.Series(["2024-01-01"] * 20, dtype="datetime64[us]"))
    for result in (
        check_dtype(table, "when", "datetime"),
        check_nulls(table, "score", 0.0),
        check_range(table, "score", 0, 5),
        check_unique(table, "when"),
        check_allowed(table, "when", []),
    ):
        assert_json_native(result)
    assert check_unique(table, "when").observed["values"] == ["2024-01-01T00:00:00"]


def test_checks_do_not_modify_the_frame(frame: pd.DataFrame) -> None:
    before = frame.copy()
    check_range(frame, "age", 0, 1)
    check_unique(frame, "id")
    check_allowed(frame, "segment", ["a"])
    pd.testing.assert_frame_equal(frame, before)
