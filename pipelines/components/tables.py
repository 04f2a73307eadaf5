"""Table steps on the `analytics` image: sample data, quality checks, imputation, report.

Each step reads and writes CSV/JSON artifacts, so a fitted imputer or a quality
report can be inspected, cached and reused by a later step or pipeline.
"""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

IMAGE = "analytics"
# The sample-data step installs numpy and pandas at pod start (packages mode); the
# others run on the analytics image, pinned by digest.
PACKAGES = ["make_sample_table"]


def make_sample_table(seed: int, rows: int, missing_ratio: float, table: Output[Dataset]) -> None:
    """A sensor-readings CSV with gaps in three columns (deterministic for a seed)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sensor_id": np.arange(1, rows + 1),
            "site": rng.choice(["north", "south", "east"], size=rows),
            "temperature_c": rng.normal(21.0, 3.0, rows).round(2),
            "humidity_pct": rng.uniform(30.0, 70.0, rows).round(1),
            "battery_v": rng.normal(3.6, 0.05, rows).round(3),
        }
    )
    for column in ("site", "temperature_c", "humidity_pct"):
        frame[column] = frame[column].mask(rng.random(rows) < missing_ratio)
    frame.to_csv(table.path, index=False)
    table.metadata["rows"] = rows


def check_quality(table: Input[Dataset], suite: dict, report: Output[Artifact]) -> bool:
    """Run a dataquality suite on the table; write the JSON report, return the verdict."""
    from pathlib import Path

    import pandas as pd
    from dataquality import check

    result = check(pd.read_csv(table.path), suite)
    Path(report.path).write_text(result.to_json(), encoding="utf-8")
    report.metadata["passed"] = result.passed
    report.metadata["failures"] = len(result.failures)
    for reason in result.reasons:
        print(f"quality check failed: {reason}")
    return result.passed


def fit_imputer(table: Input[Dataset], strategies: dict, imputer: Output[Artifact]) -> None:
    """Learn per-column fill values (strategies: column -> mean|median|most_frequent)."""
    from pathlib import Path

    import pandas as pd
    from tabular import Imputer

    # Only the named columns: the others are not this step's to touch.
    fitted = Imputer(strategies=strategies, columns=[]).fit(pd.read_csv(table.path))
    Path(imputer.path).write_text(fitted.to_json(), encoding="utf-8")
    imputer.metadata["statistics"] = fitted.statistics


def apply_imputer(table: Input[Dataset], imputer: Input[Artifact], imputed: Output[Dataset]) -> int:
    """Fill gaps with a fitted imputer; return how many cells were filled."""
    from pathlib import Path

    import pandas as pd
    from tabular import Imputer

    frame = pd.read_csv(table.path)
    fitted = Imputer.from_json(Path(imputer.path).read_text(encoding="utf-8"))
    out = fitted.transform(frame)
    out.to_csv(imputed.path, index=False)
    return int(frame.isna().sum().sum() - out.isna().sum().sum())


def render_quality_report(
    before: Input[Dataset],
    after: Input[Dataset],
    report_before: Input[Artifact],
    report_after: Input[Artifact],
    column: str,
    page: Output[HTML],
    summary: Output[Markdown],
    missing_map: Output[Artifact],
) -> None:
    """Before/after quality reports as HTML and Markdown, plus the missing-value map (PNG)."""
    from pathlib import Path

    import pandas as pd
    from dataquality import Report
    from viz import distribution_png, html_page, missing_map_png, report_html, report_markdown

    frame_before, frame_after = pd.read_csv(before.path), pd.read_csv(after.path)
    first = Report.from_json(Path(report_before.path).read_text(encoding="utf-8"))
    second = Report.from_json(Path(report_after.path).read_text(encoding="utf-8"))
    gaps = missing_map_png(frame_before, title="Missing values before imputation")
    Path(missing_map.path).write_bytes(gaps)
    missing_map.metadata["format"] = "png"
    plots = {
        "missing values before imputation": gaps,
        f"{column} before and after imputation": distribution_png(
            {"before": frame_before[column], "after": frame_after[column]}, xlabel=column
        ),
    }
    sections = [
        report_html(first, title="Before imputation", images=plots, standalone=False),
        report_html(second, title="After imputation", standalone=False),
    ]
    Path(page.path).write_text(html_page(sections, title="Table quality"), encoding="utf-8")
    Path(summary.path).write_text(
        report_markdown(first, title="Before imputation")
        + "\n"
        + report_markdown(second, title="After imputation"),
        encoding="utf-8",
    )
