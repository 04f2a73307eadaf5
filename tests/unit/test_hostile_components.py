"""Component names and docstrings are checked against what KFP and YAML accept before
any YAML is written (issue 18, defect 8): KFP's own compiler is the reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kiln._components.catalog import Entry, read_yaml, render_html, render_markdown
from kiln._components.generate import generate_component
from kiln._components.validate import validate_components
from kiln._components.yamls import generate
from kiln._errors import ConfigError
from kiln._workspace.discovery import discover
from kiln._workspace.model import Component
from tests import factory
from tests.unit.test_hostile_corpus import example

IMAGE_REF = "127.0.0.1:5765/acme/base@sha256:" + "ab" * 32


def _component(tmp_path: Path, name: str, source: str) -> Component:
    path = factory.write(tmp_path / "src" / f"{name[:50]}.py", source)
    return Component(name=name, path=path, image="base")


@pytest.mark.parametrize("length", [128, 129])
def test_the_name_limit_is_kfps(tmp_path: Path, length: int) -> None:
    name = "f" * length
    comp = _component(tmp_path, name, f"def {name}(x: int) -> int:\n    return x\n")
    if length == 128:
        validate_components([comp])
        generate_component(comp, IMAGE_REF, tmp_path / "out")  # KFP takes it too
        return
    with pytest.raises(ConfigError) as err:
        validate_components([comp])
    assert f"{comp.path}:1: component {name!r} cannot be compiled" in str(err.value)
    assert "rename the function (e.g. 'ffffffffffffffffffffffffffffffffffffffff')" in str(err.value)
    with pytest.raises(ValueError, match="Invalid pipeline name"):  # KFP's traceback, later
        generate_component(comp, IMAGE_REF, tmp_path / "out")


def test_a_docstring_yaml_refuses_is_refused_and_kfp_would_write_it(tmp_path: Path) -> None:
    source = 'def shout(x: int) -> int:\n    """Loud.\n\n    \x1b[31mred\x1b[0m"""\n    return x\n'
    comp = _component(tmp_path, "shout", source)
    with pytest.raises(ConfigError) as err:
        validate_components([comp])
    assert str(err.value).startswith(
        f"{comp.path}:4: the docstring of shout 'Loud.\\n\\n    \\x1b[31mred\\x1b[0m' holds "
        "'\\x1b', which KFP copies unescaped"
    )
    # What kiln used to commit: a YAML no reader accepts.
    written = generate_component(comp, IMAGE_REF, tmp_path / "out")
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(written.read_text())


def test_yaml_syntax_in_a_docstring_or_a_one_line_default_stays_text(tmp_path: Path) -> None:
    # Not refused: KFP comments every docstring line and quotes values in the YAML.
    source = (
        "def inject(a: str = 'x: {{$.inputs.parameters}} ---', b: int = 1) -> int:\n"
        '    """Looks like YAML.\n\n    ---\n    evil: {{x}}\n    - item: [1]\n    """\n'
        "    return b\n"
    )
    comp = _component(tmp_path, "inject", source)
    validate_components([comp])
    written = generate_component(comp, IMAGE_REF, tmp_path / "out")
    (doc,) = yaml.safe_load_all(written.read_text())
    assert doc["root"]["inputDefinitions"]["parameters"]["a"]["defaultValue"] == (
        "x: {{$.inputs.parameters}} ---"
    )
    description, _, _ = read_yaml(written)
    assert description.startswith("Looks like YAML.")
    assert description.endswith("---\nevil: {{x}}\n- item: [1]")


def test_nothing_is_written_when_any_component_is_invalid(tmp_path: Path) -> None:
    root = example(tmp_path)
    factory.write(
        root / "pipelines" / "components" / "zz_last.py",
        f'IMAGE = "base"\n\n\ndef {"z" * 300}(x: int) -> int:\n    return x\n',
    )
    ws = discover(root)
    before = {p.name: p.read_bytes() for p in ws.component_dir.iterdir()}
    with pytest.raises(ConfigError, match="cannot be compiled"):
        generate(ws, {}, {}, packages=None, index_url="http://127.0.0.1:1")
    assert {p.name: p.read_bytes() for p in ws.component_dir.iterdir()} == before
    assert not (ws.state_dir / "cache" / "components").exists()


# Markdown and HTML injection through a docstring: not refused, shown as text.
PAYLOADS = {
    "script-tag": "<script>alert(1)</script>",
    "javascript-link": "[click me](javascript:alert(1))",
    "image-with-onerror": '<img src=x onerror="alert(1)">',
    "tracking-image": "![x](https://evil.invalid/pixel.png)",
    "comment-closer": "--> <b>bold</b> <!--",
}


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_markup_in_a_docstring_is_text_in_both_catalogs(tmp_path: Path, payload: str) -> None:
    text = PAYLOADS[payload]
    comp = _component(
        tmp_path, "shown", f'def shown(x: int) -> int:\n    """{text}"""\n    return x\n'
    )
    validate_components([comp])
    description, inputs, outputs = read_yaml(generate_component(comp, IMAGE_REF, tmp_path / "o"))
    assert description == text
    entry = Entry(
        name="shown", source="pipelines/components/shown.py", yaml="generated/shown.yaml",
        description=description, inputs=inputs, outputs=outputs, mode="image",
        pins=(IMAGE_REF,), helpers=(), snippet="",
    )  # fmt: skip
    markdown = render_markdown([entry], title="t", generated_by="g")
    page = render_html([entry], title="t", generated_by="g")
    for rendered in (markdown, page):
        assert "<script" not in rendered
        assert "<img" not in rendered
        assert "<b>" not in rendered
        assert 'href="javascript' not in rendered
    assert not re.search(r"(?<!\\)\]\((?!#component-)", markdown)  # no link but kiln's own
    assert markdown.count("<!--") == markdown.count("-->") == 1  # only kiln's own comment


@pytest.mark.parametrize("brk", ["\\n", "\\r", "\\u2028", "\\x85"])
def test_a_line_break_in_a_default_is_refused_and_kfp_would_inject_it(
    tmp_path: Path, brk: str
) -> None:
    source = f'def inject(x: int, y: str = "a{brk}evil: 1") -> int:\n    return x\n'
    comp = _component(tmp_path, "inject", source)
    with pytest.raises(ConfigError, match=r":1: a default of inject 'a.*evil: 1' holds"):
        validate_components([comp])
    # What kiln used to commit: a YAML with a top-level key of the attacker's choosing.
    doc = yaml.safe_load(generate_component(comp, IMAGE_REF, tmp_path / "out").read_text())
    assert doc["evil"] == "1']"  # the rest of the comment line, now a value


@pytest.mark.parametrize("brk", ["\\r", "\\u2028", "\\x85"])
def test_any_line_break_in_a_docstring_is_commented_by_kfp_and_accepted(
    tmp_path: Path, brk: str
) -> None:
    source = f'def lines(x: int) -> int:\n    """One{brk}evil: 1"""\n    return x\n'
    comp = _component(tmp_path, "lines", source)
    validate_components([comp])
    doc = yaml.safe_load(generate_component(comp, IMAGE_REF, tmp_path / "out").read_text())
    assert "evil" not in doc
