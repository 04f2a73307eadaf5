from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tabular import JSON_FORMAT, JSON_VERSION, Imputer, NotFittedError


@pytest.fixture
def train() -> pd.DataFrame:
    frame: pd.DataFrame = pd.DataFrame(
        {
            "age": [20.0, np.nan, 30.0, 40.0],
            "n": pd.array([1, 2, 2, None], dtype="Int64"),
            "city": ["oslo", None, "rome", "oslo"],
            "note": [None, "x", None, None],
            "when": pd.Series(
                ["2024-01-01", "2024-01-01", None, "2024-02-01"], dtype="datetime64[us]"
            ),
        }
    )
    return frame


@pytest.fixture
def serving() -> pd.DataFrame:
    frame: pd.DataFrame = pd.DataFrame(
        {
            "age": [np.nan, 99.0],
            "n": pd.array([None, 7], dtype="Int64"),
            "city": [None, "paris"],
            "note": [None, "y"],
            "when": pd.Series([None, "2030-01-01"], dtype="datetime64[us]"),
            "extra": [None, 1.0],
        }
    )
    return frame


def make_imputer() -> Imputer:
    return Imputer(
        "most_frequent",
        strategies={"age": "mean", "n": "median"},
        fill_values={"note": "none"},
    )


def test_fit_learns_json_native_statistics(train: pd.DataFrame) -> None:
    imputer = make_imputer().fit(train)
    assert imputer.statistics == {
        "age": 30.0,
        "n": 2.0,
        "city": "oslo",
        "note": "none",
        "when": "2024-01-01T00:00:00",
    }
    assert imputer.column_strategies == {
        "age": "mean",
        "n": "median",
        "city": "most_frequent",
        "note": "constant",
        "when": "most_frequent",
    }
    for value in imputer.statistics.values():
        assert type(value) in (int, float, str, bool)


def test_mean_and_median_statistics_are_python_floats() -> None:
    frame = pd.DataFrame({"i": np.array([1, 2, 3]), "f": [1.5, None, 2.5]})
    stats = Imputer("mean").fit(frame).statistics
    assert stats == {"i": 2.0, "f": 2.0}
    assert all(type(v) is float for v in stats.values())
    modes = Imputer("most_frequent").fit(frame).statistics
    assert type(modes["i"]) is int
    assert type(modes["f"]) is float


def test_fit_on_one_frame_transform_another(train: pd.DataFrame, serving: pd.DataFrame) -> None:
    imputer = make_imputer().fit(train)
    out = imputer.transform(serving)
    assert out["age"].tolist() == [30.0, 99.0]
    assert out["n"].tolist() == [2, 7]
    assert out["city"].tolist() == ["oslo", "paris"]
    assert out["note"].tolist() == ["none", "y"]
    assert out["when"].tolist() == [pd.Timestamp("2024-01-01"), pd.Timestamp("2030-01-01")]
    assert out["extra"].isna().sum() == 1  # not fitted: untouched
    assert list(out.columns) == list(serving.columns)
    assert serving["age"].isna().sum() == 1  # input untouched


def test_fit_transform_equals_fit_then_transform(train: pd.DataFrame) -> None:
    a = make_imputer().fit_transform(train)
    b = make_imputer().fit(train).transform(train)
    pd.testing.assert_frame_equal(a, b)
    assert not a[["age", "n", "city", "note", "when"]].isna().any().any()


def test_default_strategy_columns_restrict_only_the_default(train: pd.DataFrame) -> None:
    imputer = Imputer("mean", columns=["age"], strategies={"city": "most_frequent"}).fit(train)
    assert imputer.column_strategies == {"age": "mean", "city": "most_frequent"}


def test_not_fitted() -> None:
    imputer = Imputer()
    assert not imputer.is_fitted
    with pytest.raises(NotFittedError, match="not fitted"):
        imputer.transform(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(NotFittedError):
        _ = imputer.statistics
    with pytest.raises(NotFittedError):
        imputer.to_json()


def test_transform_names_missing_fitted_columns(train: pd.DataFrame) -> None:
    imputer = make_imputer().fit(train)
    with pytest.raises(KeyError, match=r"fitted columns \['city', 'when'\] not in the frame"):
        imputer.transform(train.drop(columns=["city", "when"]))


def test_transform_rejects_a_value_the_column_cannot_hold(train: pd.DataFrame) -> None:
    imputer = Imputer("most_frequent", columns=["city"]).fit(train)
    with pytest.raises(TypeError, match="'city' has dtype float64"):
        imputer.transform(pd.DataFrame({"city": [1.0, None]}))


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match=r"strategies\['a'\] must be one of"):
        Imputer(strategies={"a": "mode"})
    with pytest.raises(ValueError, match=r"strategies\['a'\] is 'constant' but .* no fill value"):
        Imputer(strategies={"a": "constant"})
    with pytest.raises(ValueError, match=r"'a' has a fill value but strategies\['a'\] is 'mean'"):
        Imputer(strategies={"a": "mean"}, fill_values={"a": 0})
    with pytest.raises(ValueError, match=r"fill_values\['a'\] is missing"):
        Imputer(fill_values={"a": None})
    with pytest.raises(TypeError, match=r"fill_values\['a'\] must be a bool, int"):
        Imputer(fill_values={"a": [1]})
    with pytest.raises(TypeError, match="keys must be column names"):
        Imputer(strategies={1: "mean"})  # type: ignore[dict-item]
    # strategy "constant" with a per-column value only is fine when fill_value covers the rest
    assert Imputer("constant", fill_value=0).fill_value == 0


def test_learned_strategy_on_an_empty_frame_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"'x' has no values .* 0 rows"):
        Imputer().fit(pd.DataFrame({"x": pd.Series([], dtype="float64")}))
    # nothing to learn for constants: fitting on 0 rows works
    imputer = Imputer("constant", fill_value=0.0).fit(pd.DataFrame({"x": []}))
    assert imputer.transform(pd.DataFrame({"x": [None, 1.0]}))["x"].tolist() == [0.0, 1.0]


def test_all_null_column_error_names_the_column() -> None:
    frame = pd.DataFrame({"ok": [1.0], "gone": [np.nan]})
    with pytest.raises(ValueError, match=r"'gone'.*strategies=\{'gone': 'constant'\}"):
        Imputer().fit(frame)


def test_json_round_trip_transforms_identically(train: pd.DataFrame, serving: pd.DataFrame) -> None:
    imputer = make_imputer().fit(train)
    text = imputer.to_json()
    loaded = Imputer.from_json(text)
    assert loaded.statistics == imputer.statistics
    assert loaded.column_strategies == imputer.column_strategies
    assert loaded.to_json() == text
    pd.testing.assert_frame_equal(loaded.transform(serving), imputer.transform(serving))
    pd.testing.assert_frame_equal(loaded.transform(train), imputer.transform(train))


def test_json_is_stable_and_versioned(train: pd.DataFrame) -> None:
    text = make_imputer().fit(train).to_json()
    payload = json.loads(text)
    assert payload["format"] == JSON_FORMAT
    assert payload["version"] == JSON_VERSION
    assert text == json.dumps(payload, sort_keys=True)
    assert make_imputer().fit(train).to_json() == text  # deterministic


def test_json_round_trip_of_a_restricted_constant_imputer() -> None:
    imputer = Imputer("constant", columns=["a"], fill_value=-1).fit(
        pd.DataFrame({"a": [1.0, None], "b": [None, 2.0]})
    )
    loaded = Imputer.from_json(imputer.to_json())
    assert loaded.columns == ["a"]
    assert loaded.fill_value == -1
    refit = loaded.fit(pd.DataFrame({"a": [None], "b": [None]}))
    assert refit.column_strategies == {"a": "constant"}


def good_payload() -> dict[str, object]:
    imputer = Imputer("mean").fit(pd.DataFrame({"a": [1.0, None, 3.0]}))
    loaded = json.loads(imputer.to_json())
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "unsupported Imputer JSON version 2"),
        ({"format": "other"}, "format must be 'acme-tabular/imputer'"),
        ({"surprise": 1}, r"unknown keys \['surprise'\]"),
        ({"strategy": "mode"}, "strategy must be one of"),
        ({"fitted": []}, "'fitted' must be an object"),
        ({"fitted": {"a": {"strategy": "mean"}}}, r"fitted\['a'\] must be an object with keys"),
        ({"fitted": {"a": {"strategy": "avg", "value": 1}}}, r"fitted\['a'\]\['strategy'\]"),
        ({"fitted": {"a": {"strategy": "mean", "value": None}}}, r"fitted\['a'\] is missing"),
        ({"fitted": {"a": {"strategy": "mean", "value": [1]}}}, r"fitted\['a'\] must be a bool"),
        ({"columns": "a"}, "list of column names"),
    ],
)
def test_from_json_validates(change: dict[str, object], message: str) -> None:
    payload = good_payload() | change
    with pytest.raises(ValueError, match=message):
        Imputer.from_json(json.dumps(payload))


def test_from_json_missing_keys_and_garbage() -> None:
    payload = good_payload()
    del payload["fitted"]
    with pytest.raises(ValueError, match=r"missing keys \['fitted'\]"):
        Imputer.from_json(json.dumps(payload))
    with pytest.raises(ValueError, match="not an Imputer JSON payload"):
        Imputer.from_json("{not json")
    with pytest.raises(ValueError, match="is an object, got list"):
        Imputer.from_json("[]")


def test_repr_says_whether_fitted() -> None:
    assert "not fitted" in repr(Imputer())
