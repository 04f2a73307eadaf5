"""Learning one fill value per column: mean, median and most frequent value."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from pandas.api import types as ptypes

from tabular._values import Column, Dtype, Scalar, to_scalar

#: The imputation strategies, in the order they are documented.
STRATEGIES: tuple[str, ...] = ("mean", "median", "most_frequent", "constant")
#: The strategies that learn their value from the data.
LEARNED: frozenset[str] = frozenset({"mean", "median", "most_frequent"})
_NUMERIC_ONLY = frozenset({"mean", "median"})


def check_strategy(strategy: object, where: str = "strategy") -> str:
    """Return ``strategy`` if it names a known strategy, else raise ValueError."""
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"{where} must be one of {list(STRATEGIES)}, got {strategy!r}")
    return strategy


def is_averageable(dtype: Dtype) -> bool:
    """True for the dtypes mean and median apply to: int and float, not bool or complex."""
    return (
        ptypes.is_numeric_dtype(dtype)
        and not ptypes.is_bool_dtype(dtype)
        and not ptypes.is_complex_dtype(dtype)
    )


def check_learnable(series: Column, strategy: str, column: str) -> None:
    """Raise TypeError if ``strategy`` cannot apply to the column's dtype."""
    if strategy in _NUMERIC_ONLY and not is_averageable(series.dtype):
        raise TypeError(
            f"column {column!r} has dtype {series.dtype}; strategy {strategy!r} needs an "
            "int or float column. Use 'most_frequent' or 'constant' for it"
        )


def _finite_values(values: NDArray[np.float64], strategy: str, column: str) -> None:
    if not np.isfinite(values).all():
        raise ValueError(
            f"column {column!r} holds infinite values, so its {strategy} is not a usable "
            "fill value; replace them first or use 'most_frequent' or 'constant'"
        )


def _mean(values: NDArray[np.float64], column: str) -> float:
    _finite_values(values, "mean", column)
    with np.errstate(over="ignore"):
        mean = float(values.mean())
    if not math.isfinite(mean):  # the sum overflowed: average the values scaled into [-1, 1]
        scale = float(np.abs(values).max())
        mean = float((values / scale).mean()) * scale
    # Rounding can put the mean of equal values an ulp outside them; keep it in range.
    return min(max(mean, float(values.min())), float(values.max()))


def _median(values: NDArray[np.float64], column: str) -> float:
    _finite_values(values, "median", column)
    ordered = np.sort(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    # Halve before adding: (a + b) / 2 overflows for values near the float limit.
    return float(ordered[middle - 1] / 2 + ordered[middle] / 2)


def _most_frequent(observed: Column) -> object:
    counts = observed.value_counts(sort=False)
    tied = counts.index[counts.to_numpy() == counts.max()]
    try:
        return tied.sort_values()[0]
    except TypeError:  # values of mixed types (object column) do not compare
        return sorted(tied, key=lambda value: (type(value).__name__, str(value)))[0]


def learn(series: Column, strategy: str, column: str) -> Scalar:
    """Learn the fill value of a learned ``strategy`` from the non-null values of ``series``."""
    check_learnable(series, strategy, column)
    observed = series.dropna()
    if observed.empty:
        what = "the frame has 0 rows" if series.empty else "every value is null"
        raise ValueError(
            f"column {column!r} has no values to learn a {strategy} from ({what}); "
            f"use strategy 'constant' with a fill value for it, e.g. "
            f"strategies={{{column!r}: 'constant'}}, fill_values={{{column!r}: ...}}"
        )
    if strategy == "most_frequent":
        return to_scalar(_most_frequent(observed), f"the most frequent value of {column!r}")
    values = observed.to_numpy(dtype=np.float64)
    return _mean(values, column) if strategy == "mean" else _median(values, column)
