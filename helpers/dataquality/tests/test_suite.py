from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from dataquality import ColumnRule, Suite, check


def test_from_dict_builds_rules() -> None:
    suite = Suite.from_dict(
        {
            "columns": {
                "age": {"dtype": "float", "max_null_ratio": 0.0, "min": 0, "max": 120},
                "segment": {"allowed": ["a", "b"], "unique": False},
            },
            "require_all_columns": False,
        }
    )
    assert suite.columns["age"] == ColumnRule(dtype="float", max_null_ratio=0.0, min=0, max=120)
    assert suite.columns["segment"].allowed == ("a", "b")
    assert not suite.require_all_columns
    assert suite.allow_extra_columns


def test_to_dict_round_trip() -> None:
    suite = Suite(
        {
            "id": ColumnRule(dtype="int", unique=True),
            "segment": ColumnRule(allowed=("a", "b"), max_null_ratio=0.5),
            "any": ColumnRule(),
        },
        allow_extra_columns=False,
    )
    data = suite.to_dict()
    assert data == {
        "columns": {
            "id": {"dtype": "int", "unique": True},
            "segment": {"max_null_ratio": 0.5, "allowed": ["a", "b"]},
            "any": {},
        },
        "require_all_columns": True,
        "allow_extra_columns": False,
    }
    assert Suite.from_dict(data) == suite


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"columns": {}, "strict": True},
            (
                r"unknown key 'strict' in the suite; accepted keys: "
                r"\['allow_extra_columns', 'columns', 'require_all_columns'\]"
            ),
        ),
        (
            {"columns": {"age": {"type": "int"}}},
            (
                r"unknown key 'type' in the rule for column 'age'; accepted keys: "
                r"\['allowed', 'dtype', 'max', 'max_null_ratio', 'min', 'unique'\]"
            ),
        ),
        ({}, "a suite needs a 'columns' mapping"),
        ({"columns": ["age"]}, "columns must be a mapping"),
        ({"columns": {"age": "int"}}, "the rule for column 'age' must be a mapping, got str"),
        ({"columns": {"age": {"dtype": "integer"}}}, r"column 'age': dtype must be one of \["),
        ({"columns": {"age": {"max_null_ratio": 2}}}, r"column 'age': max_null_ratio must be in"),
        ({"columns": {"age": {"min": "0"}}}, "column 'age': min must be a number"),
        ({"columns": {"age": {"min": 5, "max": 1}}}, "column 'age': min must not exceed max"),
        ({"columns": {"age": {"unique": "yes"}}}, "column 'age': unique must be true or false"),
        ({"columns": {"age": {"allowed": "abc"}}}, "column 'age': allowed must be a list"),
        ({"columns": {}, "allow_extra_columns": "no"}, "allow_extra_columns must be true or false"),
    ],
)
def test_from_dict_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Suite.from_dict(data)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="dtype must be one of"):
        ColumnRule(dtype="float64")
    with pytest.raises(TypeError, match="ColumnRule"):
        Suite({"age": {"dtype": "int"}})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="a suite must be a mapping"):
        Suite.from_dict([])  # type: ignore[arg-type]
    assert ColumnRule(allowed=["a"]).allowed == ("a",)  # type: ignore[arg-type]


def test_missing_columns() -> None:
    frame = pd.DataFrame({"a": [1]})
    rules = {"a": ColumnRule(dtype="int"), "b": ColumnRule(dtype="int", unique=True)}
    strict = Suite(rules).check(frame)
    assert not strict.passed
    assert strict.reasons == ["table: missing columns: ['b']"]
    assert [r.column for r in strict.results] == [None, "a"]  # b's rules are skipped
    lenient = Suite(rules, require_all_columns=False).check(frame)
    assert lenient.passed
    assert [r.check for r in lenient.results] == ["dtype"]  # no columns check at all


def test_extra_columns() -> None:
    frame = pd.DataFrame({"a": [1], "b": [2]})
    assert Suite({"a": ColumnRule()}).check(frame).passed
    report = Suite({"a": ColumnRule()}, allow_extra_columns=False).check(frame)
    assert report.reasons == ["table: unexpected columns: ['b'] (extra columns are not allowed)"]


def test_check_accepts_suite_or_dict() -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    suite = Suite({"a": ColumnRule(unique=True)})
    assert check(frame, suite) == check(frame, suite.to_dict())
    with pytest.raises(TypeError, match="Suite or its dict form, got list"):
        check(frame, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="DataFrame, got list"):
        check([], suite)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="DataFrame, got dict"):
        suite.check({"a": [1]})  # type: ignore[arg-type]
