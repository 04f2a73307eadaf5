from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest
from dataquality import CheckResult, Report
from hypothesis import given, settings
from hypothesis import strategies as st
from viz import (
    data_uri,
    distribution_png,
    html_page,
    images_html,
    report_html,
    report_markdown,
)


def make_report(*results: CheckResult) -> Report:
    return Report(
        rows=20,
        columns=("age", "segment"),
        null_ratios={"age": 0.15, "segment": 0.0},
        results=results,
    )


OK = CheckResult("nulls", "segment", True, "segment: no nulls", 0.0)
BAD = CheckResult("nulls", "age", False, "age: 3 of 20 values (15.0%) are null", 0.15)


def test_markdown_of_a_failed_report_leads_with_the_verdict_and_reasons() -> None:
    text = report_markdown(make_report(OK, BAD), title="Before imputation")
    lines = text.splitlines()
    assert lines[0] == "## Before imputation"
    assert "**FAILED: 1 of 2 checks failed (20 rows, 2 columns)**" in lines
    assert "- age: 3 of 20 values (15.0%) are null" in lines
    assert "| nulls | age | **FAIL** | age: 3 of 20 values (15.0%) are null |" in lines
    assert "| age | 15.0% |" in lines


def test_markdown_of_a_passing_report_has_no_failure_section() -> None:
    text = report_markdown(make_report(OK))
    assert "**PASSED: all 1 checks passed (20 rows, 2 columns)**" in text
    assert "Why it failed" not in text


def test_markdown_escapes_table_breaking_text_and_embeds_images() -> None:
    odd = CheckResult("allowed", "a|b", False, "values not allowed: ['x|y']", ["x|y"])
    png = distribution_png([1.0, 2.0])
    text = report_markdown(make_report(odd), images={"ages": data_uri(png)})
    assert "| allowed | a\\|b | **FAIL** | values not allowed: ['x\\|y'] |" in text
    assert f"![ages]({data_uri(png)})" in text


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.text(max_size=30)), max_size=8))
def test_markdown_has_one_table_row_per_check(checks: list[tuple[bool, str]]) -> None:
    results = [CheckResult("range", "c", ok, reason) for ok, reason in checks]
    text = report_markdown(make_report(*results))
    section = text.split("### Checks", 1)[1].split("###", 1)[0] if results else ""
    rows = [line for line in section.splitlines() if line.startswith("| range |")]
    assert len(rows) == len(results)
    assert ("PASSED" in text) == all(ok for ok, _ in checks)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_escapes_and_inlines_images() -> None:
    evil = CheckResult("columns", None, False, "<script>alert(1)</script> missing", ["x"])
    png = distribution_png(np.arange(5.0))
    page = report_html(make_report(OK, evil), images={"ages <hist>": png})
    parser = _Collector()
    parser.feed(page)
    assert "script" not in parser.tags
    assert "<script>alert(1)</script> missing" in "".join(parser.text)
    assert parser.tags.count("img") == 1
    assert data_uri(png) in page
    assert 'class="fail"' in page


def test_images_html_needs_images() -> None:
    png = distribution_png([1.0])
    page = images_html({"before": png, "after": png}, title="Contrast")
    assert page.count("<img ") == 2
    assert "<title>Contrast</title>" in page
    with pytest.raises(ValueError, match="at least one"):
        images_html({})


def test_renderers_reject_what_is_not_a_report() -> None:
    with pytest.raises(TypeError, match=r"Report\.from_json"):
        report_markdown({"passed": True})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"dataquality\.Report"):
        report_html("{}")  # type: ignore[arg-type]


def test_reports_combine_into_one_document() -> None:
    before = report_html(make_report(OK, BAD), title="Before", standalone=False)
    after = report_html(make_report(OK), title="After", standalone=False)
    assert "<!DOCTYPE" not in before
    page = html_page([before, after], title="Table quality")
    assert page.count("<!DOCTYPE html>") == 1
    assert page.count("<section>") == 2
    assert page.index("<h2>Before</h2>") < page.index("<h2>After</h2>")
    parser = _Collector()
    parser.feed(page)
    assert parser.tags.count("table") == 4  # checks + null ratios, twice


def test_a_one_section_page_states_its_title_once() -> None:
    png = distribution_png([1.0])
    for page in (
        images_html({"before": png}, title="Contrast: before / after"),
        report_html(make_report(OK), title="Contrast: before / after"),
    ):
        assert page.count("<h1>Contrast: before / after</h1>") == 1
        assert "<h2>" not in page
        assert page.count("Contrast: before / after") == 2  # <title> and <h1>
