"""Check a table's quality, impute its gaps, check again, and report before/after.

sample table -> quality check (fails: gaps) -> fit imputer -> apply imputer
-> quality check (passes) -> HTML/Markdown report with plots.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

# Arguments `kiln run table_quality` uses unless overridden with --arg NAME=VALUE.
RUN_ARGS = {"seed": 11, "rows": 200, "missing_ratio": 0.1}

# What a usable readings table looks like (dataquality's Suite, as data).
SUITE = {
    "columns": {
        "sensor_id": {"dtype": "int", "max_null_ratio": 0.0, "unique": True, "min": 1},
        "site": {"dtype": "string", "max_null_ratio": 0.0, "allowed": ["east", "north", "south"]},
        "temperature_c": {"dtype": "number", "max_null_ratio": 0.0, "min": -40, "max": 60},
        "humidity_pct": {"dtype": "number", "max_null_ratio": 0.0, "min": 0, "max": 100},
        "battery_v": {"dtype": "number", "max_null_ratio": 0.0, "min": 2.5, "max": 4.2},
    },
}
STRATEGIES = {"site": "most_frequent", "temperature_c": "median", "humidity_pct": "mean"}


def build(load: Callable[[str], Any]) -> Any:
    from kfp import dsl

    make_sample_table = load("make_sample_table")
    check_quality = load("check_quality")
    fit_imputer = load("fit_imputer")
    apply_imputer = load("apply_imputer")
    render_quality_report = load("render_quality_report")

    class Outputs(NamedTuple):
        passed_before: bool
        passed_after: bool
        filled: int
        page: dsl.HTML
        summary: dsl.Markdown
        missing_map: dsl.Artifact

    @dsl.pipeline(name="table-quality", description="Quality check, impute, re-check, report.")
    def table_quality(seed: int = 11, rows: int = 200, missing_ratio: float = 0.1) -> Outputs:
        table = make_sample_table(seed=seed, rows=rows, missing_ratio=missing_ratio)
        before = check_quality(table=table.outputs["table"], suite=SUITE)
        before.set_display_name("quality before")
        imputer = fit_imputer(table=table.outputs["table"], strategies=STRATEGIES)
        imputed = apply_imputer(table=table.outputs["table"], imputer=imputer.outputs["imputer"])
        after = check_quality(table=imputed.outputs["imputed"], suite=SUITE)
        after.set_display_name("quality after")
        report = render_quality_report(
            before=table.outputs["table"],
            after=imputed.outputs["imputed"],
            report_before=before.outputs["report"],
            report_after=after.outputs["report"],
            column="temperature_c",
        )
        return Outputs(
            passed_before=before.outputs["Output"],
            passed_after=after.outputs["Output"],
            filled=imputed.outputs["Output"],
            page=report.outputs["page"],
            summary=report.outputs["summary"],
            missing_map=report.outputs["missing_map"],
        )

    return table_quality
