"""Visualizations for pipeline outputs, rendered to PNG bytes and to HTML/Markdown.

PNGs are byte-deterministic for the same data and matplotlib version (no
timestamps, no software stamp), so a re-run of a step produces the same
artifact. HTML snippets are self-contained (images inlined as data URIs) so
KFP's UI can show them from an ``HTML`` or ``Markdown`` output artifact.

Nothing here touches matplotlib's global ``pyplot`` state: each figure is
built and rendered on its own Agg canvas, which is safe in headless pods.
"""

from viz._plots import before_after_png, distribution_png, missing_map_png
from viz._png import data_uri, figure_png
from viz._report import html_page, images_html, report_html, report_markdown

__all__ = [
    "before_after_png",
    "data_uri",
    "distribution_png",
    "figure_png",
    "html_page",
    "images_html",
    "missing_map_png",
    "report_html",
    "report_markdown",
]
