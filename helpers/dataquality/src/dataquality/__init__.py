"""Data-quality checks for pandas tables, shared by pipeline components.

A :class:`Suite` holds one :class:`ColumnRule` per column (dtype kind, null ratio,
range, uniqueness, allowed values) and checks a DataFrame against them. The
result is a :class:`Report`: a pass/fail verdict, one :class:`CheckResult` per
check with a human-readable reason, and per-column null ratios, all JSON-native
so a pipeline step can write it as an artifact and a later step (or the ``viz``
helper) can read it back with :meth:`Report.from_json`.

The single checks (:func:`check_dtype`, :func:`check_nulls`, ...) are usable on
their own. They look at non-null values only (except the nulls check), never
raise for data problems (a missing column or a non-numeric range check is a
failed result with a reason), and raise TypeError/ValueError only for wrong
arguments.
"""

from dataquality._checks import (
    CHECKS,
    CheckResult,
    check_allowed,
    check_columns,
    check_dtype,
    check_nulls,
    check_range,
    check_unique,
)
from dataquality._report import REPORT_VERSION, Report
from dataquality._suite import ColumnRule, Suite, check, null_ratios
from dataquality._values import KINDS, OBSERVED_LIMIT, REASON_LIMIT, column_kind

__all__ = [
    "CHECKS",
    "KINDS",
    "OBSERVED_LIMIT",
    "REASON_LIMIT",
    "REPORT_VERSION",
    "CheckResult",
    "ColumnRule",
    "Report",
    "Suite",
    "check",
    "check_allowed",
    "check_columns",
    "check_dtype",
    "check_nulls",
    "check_range",
    "check_unique",
    "column_kind",
    "null_ratios",
]
