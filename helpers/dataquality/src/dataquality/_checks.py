"""Single checks on one column (or the table's columns), each returning a CheckResult.

Semantics shared by every check:

- ``range``, ``allowed`` and ``unique`` look at the non-null values only: nulls
  are the ``nulls`` check's business.
- A column missing from the table makes the check fail with a reason (it does
  not raise); :class:`~dataquality.Suite` reports missing columns once, in its
  ``columns`` check, and skips the column's other checks.
- On a table with 0 rows the ``nulls`` check passes with ratio 0.0 and the
  ``range``, ``allowed`` and ``unique`` checks pass vacuously.
- A ``range`` check on a column that is not int or float fails with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dataquality._values import (
    KINDS,
    OBSERVED_LIMIT,
    REASON_LIMIT,
    Column,
    column_kind,
    distinct_sorted,
    invalid_unless,
    kind_matches,
    native,
    number,
    percent,
    preview,
)

#: The names of the checks, as found in :attr:`CheckResult.check`.
CHECKS: tuple[str, ...] = ("columns", "dtype", "nulls", "range", "unique", "allowed")

_RESULT_KEYS = ("check", "column", "passed", "reason")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    ``check`` is one of :data:`CHECKS`; ``column`` is None for table-level checks
    (``columns``). ``reason`` is a sentence saying what was measured and, for a
    failure, what is wrong. ``observed`` is the JSON-native value measured (it is
    converted on construction: numpy/pandas scalars become Python ones, tuples
    lists, datetimes ISO strings):

    - ``columns``: ``{"missing": [...], "extra": [...]}``
    - ``dtype``: ``{"dtype": "float64", "kind": "float"}``
    - ``nulls``: the null ratio, e.g. ``0.15``
    - ``range``: ``{"min": 1, "max": 9}`` of the non-null values (None if none)
    - ``unique``: ``{"duplicated": 2, "values": [7]}`` (rows repeating an
      earlier value, and the distinct repeated values)
    - ``allowed``: the distinct values that are not allowed, e.g. ``["z"]``

    Lists in ``observed`` keep at most :data:`OBSERVED_LIMIT` values.
    """

    check: str
    column: str | None
    passed: bool
    reason: str
    observed: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.passed, bool | np.bool_):
            raise TypeError(f"passed must be a bool, got {type(self.passed).__name__}")
        object.__setattr__(self, "passed", bool(self.passed))
        object.__setattr__(self, "observed", native(self.observed))

    def to_dict(self) -> dict[str, Any]:
        """This result as a JSON-native dict."""
        return {
            "check": self.check,
            "column": self.column,
            "passed": self.passed,
            "reason": self.reason,
            "observed": self.observed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        """Read a dict written by :meth:`to_dict`; ValueError saying what is wrong otherwise."""
        invalid_unless(
            isinstance(data, Mapping),
            f"a check result must be a mapping, got {type(data).__name__}",
        )
        missing = [key for key in _RESULT_KEYS if key not in data]
        unknown = sorted(str(key) for key in data if key not in (*_RESULT_KEYS, "observed"))
        if missing or unknown:
            raise ValueError(
                f"invalid check result: missing keys {missing}, unknown keys {unknown}"
            )
        invalid_unless(
            data["check"] in CHECKS, f"check must be one of {list(CHECKS)}, got {data['check']!r}"
        )
        invalid_unless(
            data["column"] is None or isinstance(data["column"], str),
            f"column must be a string or None, got {data['column']!r}",
        )
        invalid_unless(
            isinstance(data["passed"], bool),
            f"passed must be true or false, got {data['passed']!r}",
        )
        invalid_unless(
            isinstance(data["reason"], str), f"reason must be a string, got {data['reason']!r}"
        )
        return cls(
            data["check"], data["column"], data["passed"], data["reason"], data.get("observed")
        )


def require_frame(frame: object) -> pd.DataFrame:
    """Return ``frame`` if it is a DataFrame with unique string column names, else raise."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    odd = [label for label in frame.columns if not isinstance(label, str)]
    if odd:
        raise TypeError(
            f"column names must be strings, got {preview(odd)}; "
            "rename them first, e.g. frame.rename(columns=str)"
        )
    if not frame.columns.is_unique:
        duplicated = distinct_sorted(pd.Series(frame.columns[frame.columns.duplicated()]))
        raise ValueError(f"column names must be unique, got duplicates {preview(duplicated)}")
    return frame


def _series(frame: object, column: object, check: str) -> Column | CheckResult:
    """The column to check, or a failed result if the table does not have it."""
    table = require_frame(frame)
    if not isinstance(column, str):
        raise TypeError(f"column must be a column name (str), got {type(column).__name__}")
    if column not in table.columns:
        return CheckResult(
            check,
            column,
            passed=False,
            reason=f"{column}: column is missing from the table "
            f"(columns: {preview(list(table.columns))})",
        )
    series: Column = table[column]
    return series


def _examples(values: Column) -> tuple[list[Any], int]:
    """Up to :data:`OBSERVED_LIMIT` distinct values, sorted, and the number of distinct values."""
    distinct = distinct_sorted(values)
    return [native(v) for v in distinct[:OBSERVED_LIMIT]], len(distinct)


def _ratio(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def _bound(value: object, name: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number or None, got {type(value).__name__} {value!r}")
    if isinstance(value, float | np.floating) and math.isnan(value):
        raise ValueError(f"{name} must be a number, got NaN")
    bound: float | int = native(value)
    return bound


def check_bounds(low: object, high: object) -> tuple[float | int | None, float | int | None]:
    """Validate range bounds: numbers or None, not NaN, ``low <= high``."""
    lo, hi = _bound(low, "min"), _bound(high, "max")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min must not exceed max, got min={lo}, max={hi}")
    return lo, hi


def check_ratio(value: object, name: str = "max_ratio") -> float:
    """Validate a null ratio bound: a number in [0, 1]."""
    return _ratio(value, name)


def check_dtype(frame: pd.DataFrame, column: str, kind: str) -> CheckResult:
    """Check that ``column`` is of ``kind`` (see :func:`column_kind` for the dtype mapping).

    ``kind`` is one of :data:`KINDS`; "number" accepts int and float columns.
    An object column without non-null values matches any kind.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    series = _series(frame, column, "dtype")
    if isinstance(series, CheckResult):
        return series
    actual = column_kind(series)
    observed = {"dtype": str(series.dtype), "kind": actual}
    if kind_matches(actual, kind):
        if actual == "empty":
            reason = f"{column}: dtype object without non-null values, accepted as {kind}"
        else:
            reason = f"{column}: dtype {series.dtype} ({actual}) matches {kind}"
        return CheckResult("dtype", column, passed=True, reason=reason, observed=observed)
    reason = f"{column}: expected {kind}, got dtype {series.dtype} ({actual})"
    if kind in ("int", "float", "number") and actual == "string":
        reason += "; convert it with pd.to_numeric"
    elif kind == "datetime" and actual == "string":
        reason += "; parse it with pd.to_datetime"
    elif kind == "int" and actual == "float":
        reason += (
            "; pandas stores an int column with nulls as float64: "
            "use the nullable Int64 dtype, or the kind 'number'"
        )
    return CheckResult("dtype", column, passed=False, reason=reason, observed=observed)


def check_nulls(frame: pd.DataFrame, column: str, max_ratio: float) -> CheckResult:
    """Check that at most ``max_ratio`` (in [0, 1]) of the values of ``column`` are null.

    Null means missing to pandas (None, NaN, NA, NaT); empty strings are values.
    A table with 0 rows has a null ratio of 0.0 and passes.
    """
    limit = check_ratio(max_ratio)
    series = _series(frame, column, "nulls")
    if isinstance(series, CheckResult):
        return series
    rows = len(series)
    nulls = int(series.isna().sum())
    ratio = nulls / rows if rows else 0.0
    passed = ratio <= limit
    if not rows:
        reason = f"{column}: the table has 0 rows, so no values are null; at most "
        return CheckResult(
            "nulls", column, passed=True, reason=reason + f"{percent(limit)} allowed", observed=0.0
        )
    digits = 1
    while not passed and percent(ratio, digits) == percent(limit, digits) and digits < 6:
        digits += 1  # never say "5.0% are null; at most 5.0% allowed" for a failure
    reason = (
        f"{column}: {nulls} of {rows} values ({percent(ratio, digits)}) are null; "
        f"at most {percent(limit, digits)} allowed"
    )
    return CheckResult("nulls", column, passed=passed, reason=reason, observed=ratio)


def _numeric(values: Column) -> Column:
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(values.dtype.categories.dtype)
    if values.dtype == np.dtype(object):
        values = pd.to_numeric(values)
    return values


def _range_words(low: float | None, high: float | None) -> tuple[str, str]:
    """How to say that a value is inside, and outside, the range."""
    if low is not None and high is not None:
        interval = f"[{number(low)}, {number(high)}]"
        return f"within {interval}", f"outside {interval}"
    if low is not None:
        return f">= {number(low)}", f"below the minimum {number(low)}"
    if high is not None:
        return f"<= {number(high)}", f"above the maximum {number(high)}"
    raise ValueError("check_range needs min, max or both")


def check_range(
    frame: pd.DataFrame,
    column: str,
    min: float | None = None,
    max: float | None = None,
) -> CheckResult:
    """Check that the non-null values of ``column`` lie in [``min``, ``max``] (inclusive).

    Give ``min``, ``max`` or both. The column must be int or float (or an object
    column of numbers); any other column fails with a reason. A column without
    non-null values (e.g. a table with 0 rows) passes vacuously.
    """
    low, high = check_bounds(min, max)
    inside, outside = _range_words(low, high)
    series = _series(frame, column, "range")
    if isinstance(series, CheckResult):
        return series
    kind = column_kind(series)
    if kind not in ("int", "float", "empty"):
        reason = (
            f"{column}: a range check needs an int or float column, "
            f"got dtype {series.dtype} ({kind})"
        )
        return CheckResult("range", column, passed=False, reason=reason)
    values = _numeric(series.dropna())
    if values.empty:
        reason = f"{column}: no non-null values, so the range check ({inside}) passes vacuously"
        observed = {"min": None, "max": None}
        return CheckResult("range", column, passed=True, reason=reason, observed=observed)
    lo, hi = native(values.min()), native(values.max())
    observed = {"min": lo, "max": hi}
    bad = np.zeros(len(values), dtype=bool)
    if low is not None:
        bad |= (values < low).to_numpy(dtype=bool)
    if high is not None:
        bad |= (values > high).to_numpy(dtype=bool)
    count = int(bad.sum())
    if not count:
        reason = f"{column}: all {len(values)} non-null values are {inside} "
        reason += f"(observed min {number(lo)}, max {number(hi)})"
        return CheckResult("range", column, passed=True, reason=reason, observed=observed)
    examples, distinct = _examples(values[bad])
    reason = (
        f"{column}: {count} of {len(values)} non-null values are {outside}, "
        f"e.g. {preview(examples, total=distinct)}; observed min {number(lo)}, max {number(hi)}"
    )
    return CheckResult("range", column, passed=False, reason=reason, observed=observed)


def check_unique(frame: pd.DataFrame, column: str) -> CheckResult:
    """Check that the non-null values of ``column`` are unique (nulls may repeat)."""
    series = _series(frame, column, "unique")
    if isinstance(series, CheckResult):
        return series
    values = series.dropna()
    try:
        repeated = values.duplicated(keep="first").to_numpy(dtype=bool)
    except TypeError:
        reason = f"{column}: values are not hashable ({series.dtype}), uniqueness is undefined"
        return CheckResult("unique", column, passed=False, reason=reason)
    count = int(repeated.sum())
    if not count:
        reason = f"{column}: all {len(values)} non-null values are unique"
        observed = {"duplicated": 0, "values": []}
        return CheckResult("unique", column, passed=True, reason=reason, observed=observed)
    examples, distinct = _examples(values[repeated])
    plural = "s" if count != 1 else ""
    reason = f"{column}: {count} duplicated value{plural}, e.g. {preview(examples, total=distinct)}"
    observed = {"duplicated": count, "values": examples}
    return CheckResult("unique", column, passed=False, reason=reason, observed=observed)


def allowed_values(values: object) -> list[Any]:
    """Validate the allowed values of an ``allowed`` check: a list, tuple or set of values."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise TypeError(
            f"allowed values must be a list, tuple or set, got {type(values).__name__} {values!r}"
        )
    return [native(value) for value in values]


def check_allowed(frame: pd.DataFrame, column: str, values: Iterable[Any]) -> CheckResult:
    """Check that every non-null value of ``column`` is one of ``values``.

    Membership is pandas ``isin`` (so 1 and 1.0 are the same value, "1" and 1 are not).
    """
    allowed = allowed_values(values)
    series = _series(frame, column, "allowed")
    if isinstance(series, CheckResult):
        return series
    present = series.dropna()
    bad = (~present.isin(allowed)).to_numpy(dtype=bool)
    if not bad.any():
        reason = f"{column}: all {len(present)} non-null values are allowed ({preview(allowed)})"
        return CheckResult("allowed", column, passed=True, reason=reason, observed=[])
    examples, distinct = _examples(present[bad])
    reason = (
        f"{column}: values not allowed: {preview(examples, total=distinct)} "
        f"(allowed: {preview(allowed)})"
    )
    return CheckResult("allowed", column, passed=False, reason=reason, observed=examples)


def check_columns(
    frame: pd.DataFrame,
    expected: Sequence[str],
    *,
    require_all: bool = True,
    allow_extra: bool = True,
) -> CheckResult:
    """Table-level check of the column names against ``expected``.

    With ``require_all``, every expected column must be present; without
    ``allow_extra``, no other column may be.
    """
    table = require_frame(frame)
    if isinstance(expected, str) or not isinstance(expected, Sequence):
        raise TypeError(f"expected must be a list of column names, got {type(expected).__name__}")
    names = list(dict.fromkeys(expected))
    wanted = set(names)
    missing = [c for c in names if c not in table.columns] if require_all else []
    extra = [] if allow_extra else [c for c in table.columns if c not in wanted]
    observed = {"missing": missing, "extra": extra}
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing columns: {preview(missing, limit=REASON_LIMIT * 2)}")
        if extra:
            problems.append(
                f"unexpected columns: {preview(extra, limit=REASON_LIMIT * 2)} "
                "(extra columns are not allowed)"
            )
        reason = "table: " + "; ".join(problems)
        return CheckResult("columns", None, passed=False, reason=reason, observed=observed)
    facts = []
    if require_all:
        facts.append(f"all {len(names)} expected columns are present")
    if not allow_extra:
        facts.append("no unexpected columns")
    reason = "table: " + ("; ".join(facts) or "nothing to check")
    return CheckResult("columns", None, passed=True, reason=reason, observed=observed)
