"""The component catalog: interfaces read back from YAMLs KFP really wrote, both
renderings listing every component with its pins, escaped, sorted and byte-stable."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from kiln._components import catalog
from kiln._components.catalog import Entry, read_yaml, render_html, render_markdown, write_catalog
from kiln._errors import ConfigError
from tests import catalog_sample as sample
from tests.catalog_sample import GENERATED_BY, TITLE


@pytest.fixture(scope="module")
def entries(tmp_path_factory: pytest.TempPathFactory) -> list[Entry]:
    return sample.entries(tmp_path_factory.mktemp("components"))


def _by_name(entries: list[Entry]) -> dict[str, Entry]:
    return {entry.name: entry for entry in entries}


def test_read_yaml_gives_the_docstring_and_the_interface_in_the_yamls_order(
    entries: list[Entry],
) -> None:
    entry = _by_name(entries)["summarize_table"]
    # KFP records the docstring's description (not its Args section) in the header.
    assert entry.description == (
        'Summarize a table <script>alert("x")</script> & write an HTML report.\n'
        "Rows whose nulls exceed `threshold` | are counted."
    )
    assert entry.inputs == (
        ("table", "system.Dataset"),
        ("column", "str"),
        ("max_rows", "int"),
        ("options", "dict"),
        ("strict", "bool"),
        ("threshold", "float"),
    )
    assert entry.outputs == (("report", "system.HTML"), ("Output", "int"))


def test_read_yaml_without_docstring_or_outputs(entries: list[Entry]) -> None:
    audit, enhance = _by_name(entries)["audit_images"], _by_name(entries)["enhance_contrast"]
    assert audit.description == ""
    assert audit.inputs == (("images", "system.Artifact"), ("tags", "list"))
    assert audit.outputs == ()
    assert enhance.outputs == (("Output", "str"),)


def test_read_yaml_names_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=r"missing\.yaml.*kiln components --local"):
        read_yaml(missing)
    other = tmp_path / "other.yaml"
    other.write_text("just: a mapping\n")
    with pytest.raises(ConfigError, match=r"other\.yaml: root is not a mapping.*regenerate"):
        read_yaml(other)
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "root:\n  inputDefinitions:\n    parameters:\n      x: {parameterType: ODD}\n"
    )
    with pytest.raises(ConfigError, match=r"broken\.yaml: .*x has an unknown parameterType"):
        read_yaml(broken)


def test_a_mode_other_than_image_or_packages_is_refused(entries: list[Entry]) -> None:
    with pytest.raises(ValueError, match="pin mode"):
        dataclasses.replace(entries[0], mode="docker")


def test_markdown_lists_every_component_with_pins_helpers_and_snippet(
    entries: list[Entry],
) -> None:
    text = render_markdown(entries, title=TITLE, generated_by=GENERATED_BY)
    assert text.splitlines()[0] == f"<!-- {GENERATED_BY} -->"
    for entry in entries:
        section = text.split(f"## `{entry.name}`", 1)[1].split("\n## ", 1)[0]
        for pin in (*entry.pins, *entry.helpers):
            assert f"- `{pin}`" in section
        for name, type_ in (*entry.inputs, *entry.outputs):
            assert f"| `{name}` | `{type_}` |" in section
        assert f"| pin mode | `{entry.mode}` |" in section
        assert f"| source | `{entry.source}` |" in section
        assert f"```python\n{entry.snippet}```" in section
    assert "**Packages installed at start**" in text  # audit_images pins packages
    assert "_No description: the function has no docstring._" in text


def test_markdown_shows_markup_in_a_docstring_as_text(entries: list[Entry]) -> None:
    text = render_markdown(entries, title=TITLE, generated_by=GENERATED_BY)
    assert "<script>" not in text
    assert '&lt;script&gt;alert("x")&lt;/script&gt; &amp; write' in text
    assert r"exceed \`threshold\` \| are counted" in text


def test_html_has_one_section_per_component_with_its_pins_and_interface(
    entries: list[Entry],
) -> None:
    page = render_html(entries, title=TITLE, generated_by=GENERATED_BY)
    parser = sample.CatalogDom()
    parser.feed(page)
    assert page.startswith(f"<!DOCTYPE html>\n<!-- {GENERATED_BY} -->\n")
    assert f'<p class="generated">{GENERATED_BY}</p>' in page
    for entry in entries:
        text = parser.text[f"component-{entry.name}"]
        for shown in (entry.mode, entry.source, entry.yaml, *entry.pins, *entry.helpers):
            assert shown in text
        for name, type_ in (*entry.inputs, *entry.outputs):
            assert f"{name}{type_}" in text  # two cells of one row
        assert entry.snippet.strip() in text
        assert entry.description in text
    # Self-contained: no script, no external stylesheet, image or font.
    assert "script" not in parser.tags
    assert not re.search(r"(src|href)=\"(?!#)", page)
    assert "url(" not in page


def test_html_escapes_markup_in_a_docstring_and_in_the_generated_by_comment(
    entries: list[Entry],
) -> None:
    page = render_html(entries, title="<b>T</b>", generated_by="a --> b <!-- c")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; write" in page
    assert "<title>&lt;b&gt;T&lt;/b&gt;</title>" in page
    comment = page.splitlines()[1]
    assert comment.startswith("<!-- ")
    assert comment.endswith(" -->")
    assert "-->" not in comment[4:-3]
    assert "<!--" not in comment[4:]


def test_entries_are_sorted_by_name_and_the_bytes_do_not_depend_on_their_order(
    entries: list[Entry], tmp_path: Path
) -> None:
    names = sorted(entry.name for entry in entries)
    assert [entry.name for entry in entries] != names  # the sample is not already sorted
    first = write_catalog(entries, tmp_path / "a", title=TITLE, generated_by=GENERATED_BY)
    second = write_catalog(entries[::-1], tmp_path / "b", title=TITLE, generated_by=GENERATED_BY)
    assert [p.name for p in first] == ["README.md", "catalog.html"]
    for one, other in zip(first, second, strict=True):
        assert one.read_bytes() == other.read_bytes()
        text = one.read_text(encoding="utf-8")
        assert "\r" not in text
        positions = [text.index(f"component-{name}") for name in names]
        assert positions == sorted(positions)
    page = first[1].read_text(encoding="utf-8")
    sections = re.findall(r'<section class="component" id="component-(\w+)">', page)
    assert sections == names


def test_a_component_listed_twice_is_refused(entries: list[Entry]) -> None:
    with pytest.raises(ValueError, match=r"repeated: \['audit_images'\]"):
        render_html([*entries, entries[1]], title=TITLE, generated_by=GENERATED_BY)


class _CountingPattern:
    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern, self.scanned = pattern, 0

    def findall(self, text: str) -> list[str]:
        self.scanned += 1
        return self.pattern.findall(text)


def test_only_texts_holding_a_backtick_are_scanned_for_backtick_runs(
    entries: list[Entry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At N=500 the README shows 90000 pins, none with a backtick: scanning each for runs
    of backticks was 0.6 s of a profiled `kiln check`."""
    before = render_markdown(entries, title=TITLE, generated_by=GENERATED_BY)
    counting = _CountingPattern(catalog._BACKTICKS)
    monkeypatch.setattr(catalog, "_BACKTICKS", counting)
    assert render_markdown(entries, title=TITLE, generated_by=GENERATED_BY) == before
    with_backticks = [
        e for e in entries for t in (e.name, e.snippet, *e.pins, *e.helpers) if "`" in t
    ]
    assert counting.scanned == len(with_backticks)
    entry = dataclasses.replace(entries[0], pins=("a ``b`` c",))
    assert "- ```a ``b`` c```" in render_markdown([entry], title=TITLE, generated_by="x")
