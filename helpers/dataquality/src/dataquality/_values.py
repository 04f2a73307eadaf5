"""Helpers shared by the checks: JSON-native values, short previews, column kinds."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

Column: TypeAlias = "pd.Series[Any]"

#: The kinds a ``dtype`` rule can ask for (see :func:`column_kind` for the mapping).
KINDS: tuple[str, ...] = ("int", "float", "number", "bool", "string", "datetime")
#: How many values a reason lists before it says "and N more".
REASON_LIMIT = 5
#: How many values an ``observed`` list keeps.
OBSERVED_LIMIT = 20

# pandas.api.types.infer_dtype names -> kinds, for object columns.
_INFERRED = {
    "string": "string",
    "boolean": "bool",
    "integer": "int",
    "floating": "float",
    "mixed-integer-float": "float",
    "datetime64": "datetime",
    "datetime": "datetime",
}


def _float(value: float | np.floating[Any]) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def _iso(value: dt.date | np.datetime64) -> str | None:
    stamp = pd.Timestamp(value)
    return None if pd.isna(stamp) else stamp.isoformat()


# Checked in order: bool before int (bool is an int), str before sequences.
_SCALARS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    ((bool, np.bool_), bool),
    ((int, np.integer), int),
    ((float, np.floating), _float),
    (str, str),
    ((dt.date, np.datetime64), _iso),
)


def native(value: object) -> Any:
    """``value`` as a JSON-native Python value (None, bool, int, float, str, list, dict).

    numpy and pandas scalars become Python scalars, missing values (None, NaN,
    NA, NaT) become None, datetimes become ISO 8601 strings, sequences become
    lists and mappings dicts with string keys; anything else becomes its ``str``.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    for types, convert in _SCALARS:
        if isinstance(value, types):
            return convert(value)
    if isinstance(value, Mapping):
        return {str(k): native(v) for k, v in value.items()}
    if isinstance(value, Sequence | np.ndarray | pd.Index | pd.Series):
        return [native(v) for v in value]
    return str(value)


def invalid_unless(condition: bool, message: str) -> None:
    """Raise ValueError(message) unless ``condition``: for malformed data (dicts, JSON)."""
    if not condition:
        raise ValueError(message)


def preview(values: Sequence[Any], limit: int = REASON_LIMIT, total: int | None = None) -> str:
    """``values`` as a Python list literal, cut to ``limit`` items plus "and N more"."""
    total = len(values) if total is None else total
    shown = repr([native(v) for v in values[:limit]])
    return shown if total <= limit else f"{shown} and {total - limit} more"


def distinct_sorted(values: Column) -> list[Any]:
    """The distinct values of ``values`` sorted (order of appearance if they do not compare)."""
    unique = values.drop_duplicates()
    with contextlib.suppress(TypeError):  # mixed types in an object column do not sort
        unique = unique.sort_values()
    return unique.tolist()


def percent(ratio: float, digits: int = 1) -> str:
    """``ratio`` as a percentage: 15.0%, and two significant digits below 1% (0.05%)."""
    value = ratio * 100
    if value == 0 or value >= 1 or digits > 1:
        return f"{value:.{digits}f}%"
    return f"{value:.2g}%"


def number(value: float | int) -> str:
    """A bound or observed number as written: 0 stays 0, 0.5 stays 0.5."""
    return repr(native(value))


def _is_string_dtype(dtype: object) -> bool:
    return isinstance(dtype, pd.StringDtype)


_DTYPE_KINDS: tuple[tuple[Callable[[Any], bool], str], ...] = (
    (ptypes.is_bool_dtype, "bool"),
    (ptypes.is_integer_dtype, "int"),
    (ptypes.is_float_dtype, "float"),
    (ptypes.is_datetime64_any_dtype, "datetime"),
    (_is_string_dtype, "string"),
)


def column_kind(series: Column) -> str:
    """The kind of a column: "int", "float", "bool", "string", "datetime", "other" or "empty".

    The mapping from dtypes (kinds are families, not exact dtypes):

    - "int": numpy signed/unsigned integers and the nullable ``Int*``/``UInt*``.
    - "float": numpy floats and the nullable ``Float*``.
    - "bool": numpy ``bool`` and the nullable ``boolean``.
    - "string": the pandas string dtypes (``str``, pandas 3's default, and ``string``).
    - "datetime": ``datetime64`` with or without a time zone.
    - categoricals take the kind of their categories.
    - ``object`` columns take the kind of their non-null values when these agree
      (e.g. all ``str`` -> "string", ints and floats -> "float"), else "other";
      an ``object`` column without non-null values is "empty".
    - everything else (timedelta, period, complex, ...) is "other".

    A ``dtype`` rule "number" accepts "int" and "float". An int column with
    nulls is usually ``float64`` in pandas (kind "float") unless it uses ``Int64``.
    """
    dtype = series.dtype
    values: Any = series
    if isinstance(dtype, pd.CategoricalDtype):
        values = dtype.categories
        dtype = values.dtype
    for test, kind in _DTYPE_KINDS:
        if test(dtype):
            return kind
    if dtype == np.dtype(object):
        inferred = ptypes.infer_dtype(values, skipna=True)
        return "empty" if inferred == "empty" else _INFERRED.get(inferred, "other")
    return "other"


def kind_matches(kind: str, wanted: str) -> bool:
    """Whether a column of ``kind`` satisfies a ``dtype`` rule asking for ``wanted``."""
    if kind == "empty":
        return True
    if wanted == "number":
        return kind in ("int", "float")
    return kind == wanted
