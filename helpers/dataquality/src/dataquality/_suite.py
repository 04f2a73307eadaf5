"""Column rules, the suite that runs them, and the functions around it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

from dataquality._checks import (
    CheckResult,
    allowed_values,
    check_allowed,
    check_bounds,
    check_columns,
    check_dtype,
    check_nulls,
    check_range,
    check_ratio,
    check_unique,
    require_frame,
)
from dataquality._report import Report
from dataquality._values import KINDS, invalid_unless

_SUITE_KEYS = ("columns", "require_all_columns", "allow_extra_columns")


@dataclass(frozen=True)
class ColumnRule:
    """What one column must satisfy; each field that is set adds one check.

    - ``dtype``: the column's kind, one of "int", "float", "number" (int or
      float), "bool", "string", "datetime" (see :func:`column_kind`).
    - ``max_null_ratio``: at most this fraction (in [0, 1]) of the values are null.
    - ``min``, ``max``: the non-null values lie in [min, max] (either may be None).
    - ``unique``: the non-null values are unique.
    - ``allowed``: every non-null value is one of these (stored as a tuple of
      JSON-native values; a list is accepted).
    """

    dtype: str | None = None
    max_null_ratio: float | None = None
    min: float | None = None
    max: float | None = None
    unique: bool = False
    allowed: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in KINDS:
            raise ValueError(f"dtype must be one of {list(KINDS)}, got {self.dtype!r}")
        if self.max_null_ratio is not None:
            object.__setattr__(
                self, "max_null_ratio", check_ratio(self.max_null_ratio, "max_null_ratio")
            )
        low, high = check_bounds(self.min, self.max)
        object.__setattr__(self, "min", low)
        object.__setattr__(self, "max", high)
        if not isinstance(self.unique, bool):
            raise TypeError(f"unique must be true or false, got {self.unique!r}")
        if self.allowed is not None:
            object.__setattr__(self, "allowed", tuple(allowed_values(self.allowed)))

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from their defaults, JSON-native."""
        data: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value != field.default:
                data[field.name] = list(value) if field.name == "allowed" else value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], column: str = "?") -> ColumnRule:
        """Build a rule from its dict form; ValueError naming ``column`` and the problem."""
        invalid_unless(
            isinstance(data, Mapping),
            f"the rule for column {column!r} must be a mapping, got {type(data).__name__}",
        )
        accepted = sorted(field.name for field in fields(cls))
        for key in data:
            if key not in accepted:
                raise ValueError(
                    f"unknown key {key!r} in the rule for column {column!r}; "
                    f"accepted keys: {accepted}"
                )
        invalid_unless(
            isinstance(data.get("allowed", ()), list | tuple),
            f"column {column!r}: allowed must be a list, got {data.get('allowed')!r}",
        )
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"column {column!r}: {exc}") from exc


@dataclass(frozen=True)
class Suite:
    """Rules for the columns of a table, run by :meth:`check`.

    ``require_all_columns``: a rule's column missing from the table fails the
    ``columns`` check (otherwise the rule is skipped). ``allow_extra_columns``:
    when False, columns without a rule fail the ``columns`` check. The
    ``columns`` check runs when either setting asks for something.
    """

    columns: Mapping[str, ColumnRule]
    require_all_columns: bool = True
    allow_extra_columns: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.columns, Mapping):
            raise TypeError(
                f"columns must map column names to ColumnRule, got {type(self.columns).__name__}"
            )
        for name, rule in self.columns.items():
            if not isinstance(name, str) or not isinstance(rule, ColumnRule):
                raise TypeError(
                    f"columns must map column names (str) to ColumnRule, "
                    f"got {name!r}: {type(rule).__name__}"
                )
        for flag in ("require_all_columns", "allow_extra_columns"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        object.__setattr__(self, "columns", dict(self.columns))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Suite:
        """Build a suite from its dict form (e.g. loaded from YAML or JSON).

        For example ``{"columns": {"age": {"dtype": "float", "max_null_ratio": 0.0,
        "min": 0, "max": 120}}, "allow_extra_columns": False}``. Unknown keys and
        invalid values raise ValueError naming the key and the accepted ones.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a suite must be a mapping, got {type(data).__name__}")
        for key in data:
            if key not in _SUITE_KEYS:
                raise ValueError(
                    f"unknown key {key!r} in the suite; accepted keys: {sorted(_SUITE_KEYS)}"
                )
        if "columns" not in data:
            raise ValueError("a suite needs a 'columns' mapping of column name -> rule")
        columns = data["columns"]
        invalid_unless(
            isinstance(columns, Mapping),
            f"columns must be a mapping of column name -> rule, got {columns!r}",
        )
        for flag in ("require_all_columns", "allow_extra_columns"):
            invalid_unless(
                isinstance(data.get(flag, True), bool),
                f"{flag} must be true or false, got {data.get(flag)!r}",
            )
        for name in columns:
            invalid_unless(isinstance(name, str), f"column names must be strings, got {name!r}")
        rules = {name: ColumnRule.from_dict(rule, name) for name, rule in columns.items()}
        return cls(
            rules,
            require_all_columns=data.get("require_all_columns", True),
            allow_extra_columns=data.get("allow_extra_columns", True),
        )

    def to_dict(self) -> dict[str, Any]:
        """The dict form read by :meth:`from_dict` (JSON-native)."""
        return {
            "columns": {name: rule.to_dict() for name, rule in self.columns.items()},
            "require_all_columns": self.require_all_columns,
            "allow_extra_columns": self.allow_extra_columns,
        }

    def check(self, frame: pd.DataFrame) -> Report:
        """Run every rule on ``frame`` and report.

        Results come in a fixed order: the table-level ``columns`` check, then per
        rule (in the suite's order) dtype, nulls, range, unique, allowed. A rule
        whose column is missing is skipped (the ``columns`` check reports it).
        """
        table = require_frame(frame)
        results: list[CheckResult] = []
        if self.require_all_columns or not self.allow_extra_columns:
            results.append(
                check_columns(
                    table,
                    list(self.columns),
                    require_all=self.require_all_columns,
                    allow_extra=self.allow_extra_columns,
                )
            )
        for name, rule in self.columns.items():
            if name not in table.columns:
                continue
            if rule.dtype is not None:
                results.append(check_dtype(table, name, rule.dtype))
            if rule.max_null_ratio is not None:
                results.append(check_nulls(table, name, rule.max_null_ratio))
            if rule.min is not None or rule.max is not None:
                results.append(check_range(table, name, rule.min, rule.max))
            if rule.unique:
                results.append(check_unique(table, name))
            if rule.allowed is not None:
                results.append(check_allowed(table, name, rule.allowed))
        return Report(
            rows=len(table),
            columns=tuple(table.columns),
            null_ratios=null_ratios(table),
            results=tuple(results),
        )


def null_ratios(frame: pd.DataFrame) -> dict[str, float]:
    """Every column -> its fraction of null values (0.0 for a table with 0 rows)."""
    table = require_frame(frame)
    rows = len(table)
    if not rows:
        return dict.fromkeys(table.columns, 0.0)
    counts = table.isna().sum()
    return {str(name): int(count) / rows for name, count in counts.items()}


def check(frame: pd.DataFrame, suite: Suite | Mapping[str, Any]) -> Report:
    """Run ``suite`` (a :class:`Suite` or its dict form) on ``frame``."""
    table = require_frame(frame)
    if isinstance(suite, Suite):
        return suite.check(table)
    if isinstance(suite, Mapping):
        return Suite.from_dict(suite).check(table)
    raise TypeError(f"suite must be a Suite or its dict form, got {type(suite).__name__}")
