"""The report of a data-quality run, and its JSON form."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from dataquality._checks import CheckResult
from dataquality._values import invalid_unless

#: The version of the dict/JSON form written by :meth:`Report.to_dict`.
REPORT_VERSION = 1

_REPORT_KEYS = ("version", "passed", "rows", "columns", "null_ratios", "results")


def _ratios(ratios: object, columns: list[str]) -> dict[str, float]:
    invalid_unless(isinstance(ratios, Mapping), f"null_ratios must be a mapping, got {ratios!r}")
    ratios = cast("Mapping[Any, Any]", ratios)  # checked just above
    invalid_unless(
        set(ratios) == set(columns),
        "null_ratios must have one entry per column: "
        f"missing {sorted(set(columns) - set(ratios))}, "
        f"unknown {sorted(str(c) for c in set(ratios) - set(columns))}",
    )
    for column, ratio in ratios.items():
        invalid_unless(
            isinstance(ratio, int | float) and not isinstance(ratio, bool) and 0 <= ratio <= 1,
            f"null_ratios[{column!r}] must be in [0, 1], got {ratio!r}",
        )
    return {str(column): float(ratio) for column, ratio in ratios.items()}


@dataclass(frozen=True)
class Report:
    """What a :class:`~dataquality.Suite` found in a table.

    ``rows`` and ``columns`` describe the table; ``null_ratios`` maps every column
    to its fraction of nulls (0.0 for every column of a table with 0 rows);
    ``results`` holds one :class:`CheckResult` per check, in the order they ran.
    The table passes when every result passed (a report without results passes).
    """

    rows: int
    columns: tuple[str, ...]
    null_ratios: Mapping[str, float]
    results: tuple[CheckResult, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(
            self, "null_ratios", {str(k): float(v) for k, v in self.null_ratios.items()}
        )
        object.__setattr__(self, "results", tuple(self.results))

    @property
    def passed(self) -> bool:
        """True iff every result passed (True when there are no results)."""
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """The results that failed, in order."""
        return tuple(result for result in self.results if not result.passed)

    @property
    def reasons(self) -> list[str]:
        """The reasons of the failed results, in order."""
        return [result.reason for result in self.failures]

    def to_dict(self) -> dict[str, Any]:
        """This report as a JSON-native dict, with ``passed`` and the format ``version``."""
        return {
            "version": REPORT_VERSION,
            "passed": self.passed,
            "rows": self.rows,
            "columns": list(self.columns),
            "null_ratios": dict(self.null_ratios),
            "results": [result.to_dict() for result in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Read a dict written by :meth:`to_dict`.

        Raises ValueError saying what is wrong: another version, missing or unknown
        keys, values of the wrong type, null ratios that do not match the columns,
        or a ``passed`` that contradicts the results.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a report must be a mapping, got {type(data).__name__}")
        missing = [key for key in _REPORT_KEYS if key not in data]
        unknown = sorted(str(key) for key in data if key not in _REPORT_KEYS)
        if missing or unknown:
            raise ValueError(f"invalid report: missing keys {missing}, unknown keys {unknown}")
        if data["version"] != REPORT_VERSION:
            raise ValueError(
                f"unsupported report version {data['version']!r}; "
                f"this acme-dataquality reads version {REPORT_VERSION}"
            )
        rows, columns = data["rows"], data["columns"]
        invalid_unless(
            isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0,
            f"rows must be a non-negative integer, got {rows!r}",
        )
        invalid_unless(
            isinstance(columns, list) and all(isinstance(c, str) for c in columns),
            f"columns must be a list of strings, got {columns!r}",
        )
        ratios = _ratios(data["null_ratios"], columns)
        invalid_unless(
            isinstance(data["results"], list), f"results must be a list, got {data['results']!r}"
        )
        results = []
        for index, entry in enumerate(data["results"]):
            try:
                results.append(CheckResult.from_dict(entry))
            except ValueError as exc:
                raise ValueError(f"results[{index}]: {exc}") from exc
        report = cls(rows, tuple(columns), ratios, tuple(results))
        if data["passed"] is not report.passed:
            raise ValueError(f"passed is {data['passed']!r} but the results say {report.passed!r}")
        return report

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON: sorted keys, indent=2 (stable for diffs and artifacts)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Report:
        """Read JSON written by :meth:`to_json`; ValueError saying what is wrong otherwise."""
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a report JSON document: {exc}") from exc
        invalid_unless(
            isinstance(data, dict),
            f"a report JSON document is an object, got {type(data).__name__}",
        )
        return cls.from_dict(data)
