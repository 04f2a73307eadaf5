"""Data-quality reports and image sets as Markdown / HTML for KFP's UI.

KFP shows the content of a ``Markdown`` or ``HTML`` output artifact in the run
view; both renderers here return a complete string to write to ``artifact.path``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from dataquality import Report

from viz._png import data_uri

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:.8em 0}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}"
    ".pass{color:#1a7f37}.fail{color:#cf222e;font-weight:600}"
    "figure{display:inline-block;margin:.5em}img{max-width:100%}"
)


def _check_report(report: object) -> Report:
    if not isinstance(report, Report):
        raise TypeError(
            f"expected a dataquality.Report, got {type(report).__name__}; "
            "load a saved one with Report.from_json(text)"
        )
    return report


def _verdict(report: Report) -> str:
    shape = f"{report.rows} rows, {len(report.columns)} columns"
    if report.passed:
        return f"PASSED: all {len(report.results)} checks passed ({shape})"
    return f"FAILED: {len(report.failures)} of {len(report.results)} checks failed ({shape})"


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def report_markdown(
    report: Report,
    *,
    title: str = "Data quality report",
    images: Mapping[str, str] | None = None,
) -> str:
    """The report as Markdown: verdict, failed reasons, every check, null ratios.

    ``images`` maps a caption to an image URL (e.g. ``data_uri(png)``) shown at the end.
    """
    report = _check_report(report)
    lines = [f"## {_md_cell(title)}", "", f"**{_verdict(report)}**", ""]
    if report.failures:
        lines += ["### Why it failed", ""]
        lines += [f"- {_md_cell(reason)}" for reason in report.reasons]
        lines.append("")
    if report.results:
        lines += ["### Checks", "", "| check | column | result | detail |", "|---|---|---|---|"]
        for result in report.results:
            mark = "pass" if result.passed else "**FAIL**"
            column = _md_cell(result.column) if result.column is not None else ""
            lines.append(f"| {result.check} | {column} | {mark} | {_md_cell(result.reason)} |")
        lines.append("")
    if report.null_ratios:
        lines += ["### Null ratio per column", "", "| column | null ratio |", "|---|---|"]
        lines += [f"| {_md_cell(c)} | {r:.1%} |" for c, r in report.null_ratios.items()]
        lines.append("")
    for caption, url in (images or {}).items():
        lines += [f"![{_md_cell(caption)}]({url})", ""]
    return "\n".join(lines)


def _figures(images: Mapping[str, bytes]) -> list[str]:
    return [
        f'<figure><img alt="{html.escape(caption)}" src="{data_uri(png)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, png in images.items()
    ]


def html_page(sections: Sequence[str], *, title: str) -> str:
    """One self-contained HTML document holding ``sections`` (fragments from this module)."""
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
    )
    return "\n".join([head, f"<h1>{html.escape(title)}</h1>", *sections, "</body></html>", ""])


def _section(title: str | None, body: list[str]) -> str:
    """A ``<section>``; headed by ``title`` unless the page's own ``<h1>`` already says it."""
    heading = [f"<h2>{html.escape(title)}</h2>"] if title is not None else []
    return "\n".join(["<section>", *heading, *body, "</section>"])


def report_html(
    report: Report,
    *,
    title: str = "Data quality report",
    images: Mapping[str, bytes] | None = None,
    standalone: bool = True,
) -> str:
    """A self-contained HTML page for the report; ``images`` (caption -> PNG) are inlined.

    With ``standalone=False`` it is a ``<section>`` to combine with others in
    :func:`html_page` (e.g. the same table before and after a cleaning step).
    """
    report = _check_report(report)
    css = "pass" if report.passed else "fail"
    body = [f'<p class="{css}">{html.escape(_verdict(report))}</p>']
    if report.failures:
        items = "".join(f"<li>{html.escape(reason)}</li>" for reason in report.reasons)
        body.append(f"<h3>Why it failed</h3><ul>{items}</ul>")
    if report.results:
        rows = "".join(
            f"<tr><td>{html.escape(r.check)}</td><td>{html.escape(r.column or '')}</td>"
            f'<td class="{"pass" if r.passed else "fail"}">{"pass" if r.passed else "FAIL"}</td>'
            f"<td>{html.escape(r.reason)}</td></tr>"
            for r in report.results
        )
        body.append(
            "<h3>Checks</h3><table><tr><th>check</th><th>column</th><th>result</th>"
            f"<th>detail</th></tr>{rows}</table>"
        )
    if report.null_ratios:
        rows = "".join(
            f"<tr><td>{html.escape(c)}</td><td>{r:.1%}</td></tr>"
            for c, r in report.null_ratios.items()
        )
        body.append(
            f"<h3>Null ratio per column</h3><table><tr><th>column</th><th>null ratio</th></tr>"
            f"{rows}</table>"
        )
    body += _figures(images or {})
    if standalone:  # the page's <h1> is the title: no <h2> repeating it
        return html_page([_section(None, body)], title=title)
    return _section(title, body)


def images_html(images: Mapping[str, bytes], *, title: str = "Images") -> str:
    """A self-contained HTML page showing PNGs (caption -> bytes), e.g. before/after plots."""
    if not images:
        raise ValueError("images is empty: pass at least one caption -> PNG bytes")
    return html_page([_section(None, _figures(images))], title=title)
