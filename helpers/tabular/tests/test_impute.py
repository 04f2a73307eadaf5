from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tabular import STRATEGIES, impute


@pytest.fixture
def frame() -> pd.DataFrame:
    frame: pd.DataFrame = pd.DataFrame(
        {
            "age": [20.0, np.nan, 30.0, 40.0, np.nan],
            "income": [1.0, 2.0, 2.0, np.nan, 10.0],
            "city": ["oslo", None, "rome", "oslo", None],
        }
    )
    return frame


def test_strategies_are_listed() -> None:
    assert STRATEGIES == ("mean", "median", "most_frequent", "constant")


def test_mean_fills_numeric_columns_and_leaves_others_alone(frame: pd.DataFrame) -> None:
    out = impute(frame)
    assert out["age"].tolist() == [20.0, 30.0, 30.0, 40.0, 30.0]
    assert out["income"].tolist() == [1.0, 2.0, 2.0, 3.75, 10.0]
    assert out["city"].isna().sum() == 2  # not numeric: untouched
    assert out["city"].dtype == frame["city"].dtype


def test_median(frame: pd.DataFrame) -> None:
    out = impute(frame, "median")
    assert out["age"].tolist() == [20.0, 30.0, 30.0, 40.0, 30.0]
    assert out["income"].tolist() == [1.0, 2.0, 2.0, 2.0, 10.0]


def test_median_of_even_count_is_the_midpoint() -> None:
    out = impute(pd.DataFrame({"x": [1.0, 2.0, 4.0, 10.0, None]}), "median")
    assert out["x"].iloc[-1] == 3.0


def test_most_frequent_applies_to_every_column(frame: pd.DataFrame) -> None:
    out = impute(frame, "most_frequent")
    assert out["income"].iloc[3] == 2.0
    assert out["city"].tolist() == ["oslo", "oslo", "rome", "oslo", "oslo"]
    assert out["city"].dtype == frame["city"].dtype


def test_most_frequent_ties_go_to_the_smallest_value() -> None:
    tied = pd.DataFrame(
        {
            "n": [3.0, 1.0, 3.0, 1.0, None, 2.0],
            "s": ["b", "a", "b", "a", None, "c"],
        }
    )
    out = impute(tied, "most_frequent")
    assert out["n"].iloc[4] == 1.0
    assert out["s"].iloc[4] == "a"


def test_most_frequent_mixed_type_ties_are_deterministic() -> None:
    mixed = pd.DataFrame({"m": pd.Series([1, "a", None], dtype=object)})
    first = impute(mixed, "most_frequent")["m"].iloc[2]
    assert first == 1  # "int" sorts before "str" by type name
    assert impute(mixed.iloc[::-1], "most_frequent")["m"].iloc[0] == first


def test_constant(frame: pd.DataFrame) -> None:
    out = impute(frame, "constant", columns=["age"], fill_value=-1)
    assert out["age"].tolist() == [20.0, -1.0, 30.0, 40.0, -1.0]
    assert out["income"].isna().sum() == 1  # not listed: untouched
    out = impute(frame, "constant", columns=["city"], fill_value="unknown")
    assert out["city"].tolist() == ["oslo", "unknown", "rome", "oslo", "unknown"]


def test_constant_needs_a_fill_value(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="fill_value"):
        impute(frame, "constant")


def test_constant_that_the_column_cannot_hold_is_a_type_error(frame: pd.DataFrame) -> None:
    with pytest.raises(TypeError, match=r"'age'.*float64.*'unknown'"):
        impute(frame, "constant", fill_value="unknown")
    with pytest.raises(TypeError, match="'city'"):
        impute(frame, "constant", columns=["city"], fill_value=0)


def test_input_frame_is_not_modified(frame: pd.DataFrame) -> None:
    before = frame.copy()
    out = impute(frame, "most_frequent")
    pd.testing.assert_frame_equal(frame, before)
    assert out is not frame


def test_non_numeric_column_with_mean_is_a_type_error(frame: pd.DataFrame) -> None:
    with pytest.raises(TypeError, match=r"'city' has dtype str; strategy 'mean'"):
        impute(frame, "mean", columns=["city"])
    with pytest.raises(TypeError, match="'flag' has dtype bool"):
        impute(pd.DataFrame({"flag": [True, False]}), "median", columns=["flag"])


def test_all_null_column_is_a_value_error_suggesting_constant() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "empty": [np.nan, np.nan]})
    for strategy in ("mean", "median", "most_frequent"):
        with pytest.raises(ValueError, match=r"'empty'.*every value is null.*'constant'"):
            impute(frame, strategy)
    out = impute(frame, "constant", columns=["empty"], fill_value=0.0)
    assert out["empty"].tolist() == [0.0, 0.0]


def test_empty_frame_is_returned_unchanged() -> None:
    empty = pd.DataFrame({"x": pd.Series([], dtype="float64"), "s": pd.Series([], dtype="str")})
    for strategy in ("mean", "median", "most_frequent"):
        out = impute(empty, strategy)
        pd.testing.assert_frame_equal(out, empty)
        assert out is not empty


def test_empty_frame_still_validates_arguments() -> None:
    empty = pd.DataFrame({"x": pd.Series([], dtype="float64"), "s": pd.Series([], dtype="str")})
    with pytest.raises(TypeError, match="'s' has dtype str"):
        impute(empty, "mean", columns=["s"])
    with pytest.raises(KeyError, match="nope"):
        impute(empty, "mean", columns=["nope"])
    with pytest.raises(TypeError, match="cannot hold"):
        impute(empty, "constant", columns=["x"], fill_value="a")


def test_unknown_strategy_is_rejected(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"strategy must be one of \['mean', 'median'"):
        impute(frame, "average")


def test_wrong_inputs_have_clear_errors(frame: pd.DataFrame) -> None:
    with pytest.raises(TypeError, match="DataFrame, got dict"):
        impute({"a": [1]})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of column names, got str"):
        impute(frame, columns="age")
    with pytest.raises(KeyError, match=r"\['nope'\] not in the frame"):
        impute(frame, columns=["age", "nope"])
    with pytest.raises(ValueError, match="fill_value must be a finite number"):
        impute(frame, "constant", fill_value=float("nan"))
    with pytest.raises(ValueError, match="duplicated column names"):
        impute(pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]))


def test_infinite_values_make_mean_unusable() -> None:
    with pytest.raises(ValueError, match="infinite values"):
        impute(pd.DataFrame({"x": [1.0, np.inf, None]}))


def test_mean_does_not_overflow_near_the_float_limit() -> None:
    big = np.finfo(np.float64).max
    out = impute(pd.DataFrame({"x": [big, big, None]}))
    assert out["x"].iloc[2] == big
    out = impute(pd.DataFrame({"x": [big, big, None]}), "median")
    assert out["x"].iloc[2] == big


def test_nullable_integer_columns() -> None:
    frame = pd.DataFrame({"n": pd.array([1, None, 2, 6], dtype="Int64")})
    mean = impute(frame)  # 3.0 is integral: stays Int64
    assert mean["n"].dtype == "Int64"
    assert mean["n"].tolist() == [1, 3, 2, 6]
    median = impute(frame, "median")  # 2.0
    assert median["n"].dtype == "Int64"
    frame = pd.DataFrame({"n": pd.array([1, None, 2], dtype="Int64")})
    fractional = impute(frame)  # 1.5 cannot be an integer: Float64
    assert fractional["n"].dtype == "Float64"
    assert fractional["n"].tolist() == [1.0, 1.5, 2.0]


def test_numpy_int_column_without_nulls_keeps_its_dtype() -> None:
    frame = pd.DataFrame({"n": np.array([1, 2, 4], dtype=np.int64), "x": [1.0, None, 2.0]})
    out = impute(frame)
    assert out["n"].dtype == np.int64
    assert out["n"].tolist() == [1, 2, 4]


def test_other_dtypes_with_most_frequent() -> None:
    frame = pd.DataFrame(
        {
            "cat": pd.Series(["p", None, "q", "q"], dtype="category"),
            "when": pd.Series(
                ["2024-01-02", None, "2024-01-02", "2024-03-01"], dtype="datetime64[us]"
            ),
            "flag": pd.array([True, None, False, False], dtype="boolean"),
        }
    )
    out = impute(frame, "most_frequent")
    assert out["cat"].tolist() == ["p", "q", "q", "q"]
    assert out["when"].iloc[1] == pd.Timestamp("2024-01-02")
    assert out["flag"].tolist() == [True, False, False, False]
    assert out.dtypes.tolist() == frame.dtypes.tolist()


def test_constant_adds_a_category() -> None:
    frame = pd.DataFrame({"cat": pd.Series(["p", None], dtype="category")})
    out = impute(frame, "constant", fill_value="missing")
    assert out["cat"].tolist() == ["p", "missing"]
    assert "missing" in out["cat"].cat.categories


def test_timezone_aware_datetimes() -> None:
    when = pd.Series(["2024-01-01 10:00", None], dtype="datetime64[us]").dt.tz_localize(
        "Europe/Paris"
    )
    out = impute(pd.DataFrame({"when": when}), "most_frequent")
    assert out["when"].iloc[1] == when[0]
    assert str(out["when"].dtype) == str(when.dtype)
    with pytest.raises(TypeError, match="timezone-naive"):
        impute(pd.DataFrame({"when": when}), "constant", fill_value=pd.Timestamp("2024-01-01"))
