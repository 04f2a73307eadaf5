"""JSON-native fill values and dtype-aware filling of missing values."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.api.extensions import ExtensionDtype

#: A fill value as stored in :attr:`Imputer.statistics` and in its JSON form.
#: Datetimes are stored as ISO 8601 strings and parsed back when a datetime
#: column is filled.
Scalar: TypeAlias = bool | int | float | str

#: A column, and the dtype of one.
Column: TypeAlias = "pd.Series[Any]"
Dtype: TypeAlias = "np.dtype[Any] | ExtensionDtype"
_Cast: TypeAlias = Callable[[Column], Column]


def to_scalar(value: object, what: str) -> Scalar:
    """Convert ``value`` to a JSON-native :data:`Scalar`, or raise naming ``what``.

    Accepts Python and numpy bools, integers, finite floats and strings, and
    datetimes (``datetime``, ``pd.Timestamp``, ``np.datetime64``; returned as an
    ISO 8601 string). Missing values (None, NaN, NA, NaT) and non-finite floats
    raise ValueError; anything else raises TypeError.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        raise ValueError(f"{what} is missing ({value!r}); give a real value")
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{what} must be a finite number, got {number}")
        return number
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dt.datetime | np.datetime64):
        stamp: pd.Timestamp = pd.Timestamp(value)
        if pd.isna(stamp):
            raise ValueError(f"{what} is missing (NaT); give a real value")
        return stamp.isoformat()
    raise TypeError(
        f"{what} must be a bool, int, float, str or datetime, got {type(value).__name__} {value!r}"
    )


def _is_number(value: Scalar) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timestamp_for(dtype: Dtype, value: Scalar, column: str) -> pd.Timestamp:
    if not isinstance(value, str):
        raise TypeError(
            f"column {column!r} has dtype {dtype}; it cannot be filled with "
            f"{type(value).__name__} {value!r} (give a datetime or an ISO 8601 string)"
        )
    try:
        stamp: pd.Timestamp = pd.Timestamp(value)
    except ValueError as exc:
        raise TypeError(
            f"column {column!r} has dtype {dtype}; fill value {value!r} is not a datetime"
        ) from exc
    column_tz = getattr(dtype, "tz", None)
    if (column_tz is None) != (stamp.tz is None):
        raise TypeError(
            f"column {column!r} has dtype {dtype}; fill value {value!r} is "
            f"{'timezone-naive' if stamp.tz is None else 'timezone-aware'}, the column is not"
        )
    return stamp if column_tz is None else pd.Timestamp(stamp.tz_convert(column_tz))


def _accepts(dtype: Dtype, value: Scalar) -> bool | None:
    """Whether a bool, float, string or object column can hold ``value``; None for other dtypes."""
    if ptypes.is_bool_dtype(dtype):
        return isinstance(value, bool)
    if ptypes.is_float_dtype(dtype):
        return _is_number(value)
    if isinstance(dtype, pd.StringDtype):
        return isinstance(value, str)
    if dtype == np.dtype(object):
        return True
    return None


def _add_category(value: Scalar) -> _Cast:
    def cast(series: Column) -> Column:
        return series.cat.add_categories([value])

    return cast


def _to_float(series: Column) -> Column:
    return series.astype("Float64")


def plan_fill(
    dtype: Dtype, value: Scalar, column: str
) -> tuple[Scalar | pd.Timestamp, _Cast | None]:
    """Decide how to fill a column of ``dtype`` with ``value`` without a silent upcast.

    Returns the value to pass to ``fillna`` and an optional cast to apply to the
    column first. Raises TypeError when the column cannot hold the value (e.g. a
    string into a float column): pandas would otherwise turn it into an object
    column, which is almost always a mistake in a feature pipeline.
    """
    if isinstance(dtype, pd.CategoricalDtype):
        return value, None if value in dtype.categories else _add_category(value)
    if ptypes.is_datetime64_any_dtype(dtype):
        return _timestamp_for(dtype, value, column), None
    if ptypes.is_integer_dtype(dtype) and _is_number(value):
        # Only the nullable Int* dtypes hold missing values; numpy ints never need a fill.
        if isinstance(value, int) or float(value).is_integer():
            return int(value), None
        return value, _to_float
    accepts = _accepts(dtype, value)
    if accepts is None:
        raise TypeError(f"column {column!r} has dtype {dtype}, which tabular cannot fill")
    if not accepts or ptypes.is_integer_dtype(dtype):
        raise TypeError(
            f"column {column!r} has dtype {dtype}; it cannot hold the fill value "
            f"{value!r} ({type(value).__name__}). Choose a fill value of the column's "
            "type, or leave the column out of `columns`"
        )
    return value, None


def fill(series: Column, value: Scalar, column: str) -> Column:
    """Return ``series`` with its missing values replaced by ``value`` (see :func:`plan_fill`)."""
    if not series.isna().any():
        return series
    fill_value, cast = plan_fill(series.dtype, value, column)
    if cast is not None:
        series = cast(series)
    return series.fillna(fill_value)
