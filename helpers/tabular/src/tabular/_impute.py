"""Imputation of missing values: the one-shot :func:`impute` and the fitted :class:`Imputer`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from tabular._learn import LEARNED, check_learnable, check_strategy, is_averageable, learn
from tabular._values import Scalar, fill, plan_fill, to_scalar

#: Identifies the JSON written by :meth:`Imputer.to_json`.
JSON_FORMAT = "acme-tabular/imputer"
#: The version of that JSON; :meth:`Imputer.from_json` reads only this version.
JSON_VERSION = 1

_JSON_KEYS = frozenset(
    (
        "format",
        "version",
        "strategy",
        "columns",
        "fill_value",
        "strategies",
        "fill_values",
        "fitted",
    )
)


class NotFittedError(RuntimeError):
    """An :class:`Imputer` was used before :meth:`Imputer.fit` (or :meth:`Imputer.from_json`)."""


def _check_frame(frame: object) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    if not frame.columns.is_unique:
        duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise ValueError(f"the frame has duplicated column names: {duplicated}")
    return frame


def _check_present(frame: pd.DataFrame, names: Sequence[str], what: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise KeyError(
            f"{what} {missing} not in the frame; its columns are {[str(c) for c in frame.columns]}"
        )


def _column_names(columns: object) -> list[str] | None:
    if columns is None:
        return None
    if isinstance(columns, str) or not isinstance(columns, Sequence | pd.Index):
        raise TypeError(
            f"columns must be a list of column names, got {type(columns).__name__} {columns!r}"
        )
    names = list(dict.fromkeys(columns))  # drop repeats, keep order
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"column names must be strings, got {type(name).__name__} {name!r}")
    return names


class Imputer:
    """Learn per-column fill values on one frame and apply them to others.

    ``strategy`` is the default strategy. It applies to the columns listed in
    ``columns`` or, when ``columns`` is None, to every column it can handle:
    the int and float columns for "mean" and "median" (bool, string, datetime
    and other columns are left alone), every column for "most_frequent" and
    "constant". ``strategies`` overrides the strategy of single columns, and a
    column named in ``fill_values`` is filled with that constant (its strategy
    is "constant"); these columns are always imputed, whatever ``columns`` says.
    ``fill_value`` is the constant of the default "constant" strategy.

    Strategies:

    - "mean", "median": of the non-null values, as a float. Int and float
      columns only (TypeError naming the column and its dtype otherwise).
    - "most_frequent": the most common non-null value, any dtype. Ties go to the
      smallest tied value (the first in sorted order; categoricals sort by their
      category order, mixed-type object columns by type name then ``str``).
    - "constant": the given fill value.

    A learned strategy on a column without non-null values (all null, or a frame
    with 0 rows) raises ValueError: there is nothing to learn from, use
    "constant" for that column. Learned values and fill values must be finite.

    Dtypes: non-null values are never changed and columns keep their dtype,
    with one exception: a nullable integer column (``Int64`` and friends) filled
    with a non-integral value (e.g. a mean of 2.5) becomes ``Float64``; filled
    with an integral value (e.g. a median of 3.0) it stays integer. Note that a
    numpy ``int64`` column cannot hold nulls (pandas stores an int column with
    nulls as ``float64``), so it stays float after filling. Categorical columns
    gain the fill value as a category if needed. A fill value the column cannot
    hold (a string into a float column, a number into a string column) raises
    TypeError rather than silently turning the column into ``object``.
    """

    def __init__(
        self,
        strategy: str = "mean",
        *,
        strategies: Mapping[str, str] | None = None,
        fill_values: Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
        fill_value: Any = None,
    ) -> None:
        self.strategy = check_strategy(strategy)
        self.columns = _column_names(columns)
        self.fill_value: Scalar | None = None
        if fill_value is not None:
            self.fill_value = to_scalar(fill_value, "fill_value")
        elif self.strategy == "constant":
            raise ValueError("strategy 'constant' needs a fill_value")
        self.strategies: dict[str, str] = {}
        for name, column_strategy in dict(strategies or {}).items():
            self.strategies[self._key(name, "strategies")] = check_strategy(
                column_strategy, f"strategies[{name!r}]"
            )
        self.fill_values: dict[str, Scalar] = {}
        for name, value in dict(fill_values or {}).items():
            self.fill_values[self._key(name, "fill_values")] = to_scalar(
                value, f"fill_values[{name!r}]"
            )
            if self.strategies.get(name, "constant") != "constant":
                raise ValueError(
                    f"column {name!r} has a fill value but strategies[{name!r}] is "
                    f"{self.strategies[name]!r}; a fill value is only used by 'constant'"
                )
        for name, column_strategy in self.strategies.items():
            if column_strategy == "constant" and self._constant_for(name) is None:
                raise ValueError(
                    f"strategies[{name!r}] is 'constant' but the column has no fill value: "
                    f"pass fill_values={{{name!r}: ...}} or fill_value=..."
                )
        self._fitted: dict[str, tuple[str, Scalar]] | None = None

    @staticmethod
    def _key(name: object, where: str) -> str:
        if not isinstance(name, str):
            raise TypeError(
                f"{where} keys must be column names (str), got {type(name).__name__} {name!r}"
            )
        return name

    def _constant_for(self, column: str) -> Scalar | None:
        return self.fill_values.get(column, self.fill_value)

    def _strategy_for(self, column: str) -> str:
        if column in self.fill_values:
            return "constant"
        return self.strategies.get(column, self.strategy)

    def _plan(self, frame: pd.DataFrame) -> list[tuple[str, str]]:
        """The (column, strategy) pairs to impute in ``frame``, validated against its dtypes."""
        if self.columns is not None:
            _check_present(frame, self.columns, "columns")
            targets = list(self.columns)
        elif self.strategy in ("mean", "median"):
            targets = [c for c in frame.columns if is_averageable(frame[c].dtype)]
        else:
            targets = list(frame.columns)
        named = [*self.strategies, *(c for c in self.fill_values if c not in self.strategies)]
        _check_present(frame, named, "columns named in strategies/fill_values")
        targets += [c for c in named if c not in targets]
        plan = []
        for column in targets:
            if not isinstance(column, str):
                raise TypeError(
                    f"column names must be strings to be imputed, got {type(column).__name__} "
                    f"{column!r}; rename them, e.g. frame.rename(columns=str)"
                )
            strategy = self._strategy_for(column)
            check_learnable(frame[column], strategy, column)
            plan.append((column, strategy))
        return plan

    def fit(self, frame: pd.DataFrame) -> Imputer:
        """Learn the fill value of every imputed column of ``frame``; return ``self``.

        Raises TypeError for a strategy the column's dtype does not support and
        ValueError for a learned strategy on a column without non-null values.
        """
        frame = _check_frame(frame)
        fitted: dict[str, tuple[str, Scalar]] = {}
        for column, strategy in self._plan(frame):
            if strategy in LEARNED:
                value = learn(frame[column], strategy, column)
            else:
                constant = self._constant_for(column)
                if constant is None:  # __init__ rules this out; keeps the type precise
                    raise ValueError(f"column {column!r} uses 'constant' without a fill value")
                value = constant
            plan_fill(frame[column].dtype, value, column)  # can the column hold it?
            fitted[column] = (strategy, value)
        self._fitted = fitted
        return self

    def _require_fitted(self) -> dict[str, tuple[str, Scalar]]:
        if self._fitted is None:
            raise NotFittedError(
                "this Imputer is not fitted yet: call fit(frame) or load one with from_json"
            )
        return self._fitted

    @property
    def is_fitted(self) -> bool:
        """True once :meth:`fit` has run (or the imputer came from :meth:`from_json`)."""
        return self._fitted is not None

    @property
    def statistics(self) -> dict[str, Scalar]:
        """Column -> fill value learned by :meth:`fit` (JSON-native: bool, int, float, str).

        Datetime fill values are ISO 8601 strings. Raises NotFittedError before fit.
        """
        return {column: value for column, (_, value) in self._require_fitted().items()}

    @property
    def column_strategies(self) -> dict[str, str]:
        """Column -> strategy used for it by the last :meth:`fit`."""
        return {column: strategy for column, (strategy, _) in self._require_fitted().items()}

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return a copy of ``frame`` with the fitted columns' missing values filled.

        Other columns are left as they are. Raises NotFittedError before fit and
        KeyError naming the fitted columns missing from ``frame``.
        """
        fitted = self._require_fitted()
        frame = _check_frame(frame)
        _check_present(frame, list(fitted), "fitted columns")
        result: pd.DataFrame = frame.copy()
        for column, (_, value) in fitted.items():
            result[column] = fill(result[column], value, column)
        return result

    def fit_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """:meth:`fit` on ``frame``, then :meth:`transform` it."""
        return self.fit(frame).transform(frame)

    def to_json(self) -> str:
        """The configuration and learned values as JSON (sorted keys, with a format version).

        :meth:`from_json` turns it back into an imputer that transforms identically.
        """
        fitted = self._require_fitted()
        payload = {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "strategy": self.strategy,
            "columns": self.columns,
            "fill_value": self.fill_value,
            "strategies": self.strategies,
            "fill_values": self.fill_values,
            "fitted": {c: {"strategy": s, "value": v} for c, (s, v) in fitted.items()},
        }
        return json.dumps(payload, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Imputer:
        """Load a fitted imputer written by :meth:`to_json`.

        Raises ValueError saying what is wrong for text that is not such a
        payload: invalid JSON, another format or version, missing or unknown keys,
        or invalid values.
        """
        try:
            payload = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an Imputer JSON payload: {exc}") from exc
        if not isinstance(payload, dict):
            raise ValueError(  # noqa: TRY004  # a malformed payload is a ValueError, as documented
                f"an Imputer JSON payload is an object, got {type(payload).__name__}"
            )
        missing = sorted(_JSON_KEYS - payload.keys())
        unknown = sorted(payload.keys() - _JSON_KEYS)
        if missing or unknown:
            raise ValueError(
                f"invalid Imputer JSON payload: missing keys {missing}, unknown keys {unknown}"
            )
        if payload["format"] != JSON_FORMAT:
            raise ValueError(f"format must be {JSON_FORMAT!r}, got {payload['format']!r}")
        if payload["version"] != JSON_VERSION:
            raise ValueError(
                f"unsupported Imputer JSON version {payload['version']!r}; "
                f"this acme-tabular reads version {JSON_VERSION}"
            )
        for key in ("strategies", "fill_values", "fitted"):
            if not isinstance(payload[key], dict):
                raise ValueError(  # noqa: TRY004  # a malformed payload is a ValueError
                    f"{key!r} must be an object, got {payload[key]!r}"
                )
        try:
            imputer = cls(
                payload["strategy"],
                strategies=payload["strategies"],
                fill_values=payload["fill_values"],
                columns=payload["columns"],
                fill_value=payload["fill_value"],
            )
            fitted: dict[str, tuple[str, Scalar]] = {}
            for column, entry in payload["fitted"].items():
                if not isinstance(entry, dict) or entry.keys() != {"strategy", "value"}:
                    raise ValueError(
                        f"fitted[{column!r}] must be an object with keys 'strategy' and "
                        f"'value', got {entry!r}"
                    )
                strategy = check_strategy(entry["strategy"], f"fitted[{column!r}]['strategy']")
                fitted[column] = (strategy, to_scalar(entry["value"], f"fitted[{column!r}]"))
        except TypeError as exc:
            raise ValueError(f"invalid Imputer JSON payload: {exc}") from exc
        imputer._fitted = fitted
        return imputer

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return (
            f"Imputer({self.strategy!r}, strategies={self.strategies!r}, "
            f"fill_values={self.fill_values!r}, columns={self.columns!r}, "
            f"fill_value={self.fill_value!r}) <{state}>"
        )


def impute(
    frame: pd.DataFrame,
    strategy: str = "mean",
    *,
    columns: Sequence[str] | None = None,
    fill_value: Any = None,
) -> pd.DataFrame:
    """Return a copy of ``frame`` with missing values filled by ``strategy``.

    ``strategy`` is "mean", "median", "most_frequent" or "constant" (which needs
    ``fill_value``). ``columns`` limits the imputed columns; when it is None,
    "mean" and "median" apply to the int and float columns only and leave the
    others alone, "most_frequent" and "constant" apply to every column. Asking for
    "mean"/"median" on a non-numeric column raises TypeError naming it and its
    dtype. See :class:`Imputer` for tie-breaking and dtype behaviour.

    An all-null column has nothing to learn from: a learned strategy raises
    ValueError for it (use "constant"). A frame with 0 rows has nothing to fill:
    once the arguments are validated, it is returned unchanged (as a copy).
    """
    frame = _check_frame(frame)
    imputer = Imputer(strategy, columns=columns, fill_value=fill_value)
    if len(frame) == 0:
        for column, column_strategy in imputer._plan(frame):  # validates columns and dtypes
            if column_strategy == "constant" and imputer.fill_value is not None:
                plan_fill(frame[column].dtype, imputer.fill_value, column)
        copy: pd.DataFrame = frame.copy()
        return copy
    return imputer.fit_transform(frame)
