"""Component names and docstrings are checked against what KFP and YAML accept before
any YAML is written (issue 18, defect 8): KFP's own compiler is the reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kiln._components.catalog import read_yaml
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
