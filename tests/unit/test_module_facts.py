"""A component module's facts (its public functions and their imports, IMAGE, PACKAGES)
are kept by the sha256 of its bytes: a module unchanged since the last run is not
parsed again, a changed one is, and a damaged record file is no record."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from kiln._errors import ConfigError
from kiln._util import toml
from kiln._util.kept import KeptRecords
from kiln._workspace import sources
from kiln._workspace.discovery import discover
from kiln._workspace.sources import FACTS_KIND, read_components
from tests import factory
from tests.unit.cli import run

KEPT = Path(".kiln/cache/discovery/modules.json")


def _repo(root: Path) -> Path:
    factory.sample(root)
    factory.helper(root, "tabular")
    factory.image(root, "extra", helpers=("tabular",))
    for i in range(5):
        factory.write(
            root / "pipelines" / "components" / f"mod{i}.py",
            f"""
            IMAGE = "base"
            PACKAGES = ["light{i}"]


            def heavy{i}(x: int) -> int:
                import imgproc
                from os import path

                return x


            def light{i}(x: int) -> int:
                import tabular.io

                return x
            """,
        )
    return root


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    parsed: list[Path] = []
    real = sources._parsed_facts

    def counting(path: Path, data: bytes) -> sources.ModuleFacts:
        parsed.append(path)
        return real(path, data)

    monkeypatch.setattr(sources, "_parsed_facts", counting)
    return parsed


def test_an_unchanged_module_is_not_parsed_again(tmp_path: Path, parses: list[Path]) -> None:
    root = _repo(tmp_path)
    first = discover(root, keep=True)
    assert len(parses) == 6
    assert (root / KEPT).is_file()
    assert first.components[1].helpers == ("imgproc",)
    assert first.components[2].mode == "packages"
    parses.clear()
    assert discover(root, keep=True) == first
    assert parses == []
    changed = root / "pipelines" / "components" / "mod3.py"
    changed.write_text(changed.read_text().replace("import imgproc", "import json"))
    again = discover(root, keep=True)
    assert parses == [changed]  # that module alone
    assert next(c for c in again.components if c.name == "heavy3").helpers == ()
    assert discover(root, keep=True) == again
    assert parses == [changed]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-10],  # truncated
        lambda b: b.replace(b'"imgproc"', b'"tabular"'),  # edited, its sha256 line kept
        lambda b: b"",
    ],
)
def test_a_damaged_record_file_is_parsed_again(tmp_path: Path, parses: list[Path], damage) -> None:  # type: ignore[no-untyped-def]
    root = _repo(tmp_path)
    first = discover(root, keep=True)
    (root / KEPT).write_bytes(damage((root / KEPT).read_bytes()))
    parses.clear()
    assert discover(root, keep=True) == first
    assert len(parses) == 6


def test_a_record_of_another_shape_is_not_believed(tmp_path: Path, parses: list[Path]) -> None:
    root = _repo(tmp_path)
    first = discover(root, keep=True)
    kept = KeptRecords(root / KEPT, FACTS_KIND)
    mod0 = root / "pipelines" / "components" / "mod0.py"
    kept.put(mod0.read_bytes(), {"functions": [[1, ["imgproc"]]], "image": "base"})  # JSON
    for path in (root / "pipelines" / "components").glob("*.py"):
        if path != mod0:
            kept.get(path.read_bytes())
    kept.save()
    parses.clear()
    assert discover(root, keep=True) == first
    assert [p.name for p in parses] == ["mod0.py"]


_BAD = {
    "no image": "def f(x: int) -> int:\n    return x\n",
    "image not literal": "IMAGE = NAME\n\ndef f(x: int) -> int:\n    return x\n",
    "image a number": "IMAGE = 3\n\ndef f(x: int) -> int:\n    return x\n",
    "image unknown": 'IMAGE = "nope"\n\ndef f(x: int) -> int:\n    return x\n',
    "packages unknown": 'PACKAGES = ["g", "h"]\n\ndef f(x: int) -> int:\n    return x\n',
    "packages a number": "PACKAGES = 1\n\ndef f(x: int) -> int:\n    return x\n",
    "future": "from __future__ import annotations\n\ndef f(x: int) -> int:\n    return x\n",
    "no function": 'IMAGE = "base"\n\ndef _f(x: int) -> int:\n    return x\n',
    "helper not in image": 'IMAGE = "extra"\n\ndef f(x: int) -> int:\n    import imgproc\n',
}


@pytest.mark.parametrize("text", _BAD.values(), ids=_BAD.keys())
def test_kept_facts_give_the_errors_the_parsed_module_gives(
    tmp_path: Path, parses: list[Path], text: str
) -> None:
    root = _repo(tmp_path)
    ws = discover(root, keep=True)
    module = root / "pipelines" / "components" / "bad.py"
    module.write_text(text)
    with pytest.raises(ConfigError) as parsed:
        read_components(root, ws.images, ws.helpers)
    kept = KeptRecords(tmp_path / "kept.json", FACTS_KIND)
    kept.put(module.read_bytes(), sources.module_facts(module, KeptRecords(None, "")).to_json())
    kept.save()
    parses.clear()
    with pytest.raises(ConfigError) as from_kept:
        read_components(
            root, ws.images, ws.helpers, KeptRecords(tmp_path / "kept.json", FACTS_KIND)
        )
    assert str(from_kept.value) == str(parsed.value)
    assert module not in parses


def test_without_keep_nothing_is_written(tmp_path: Path, parses: list[Path]) -> None:
    root = _repo(tmp_path)
    discover(root)
    discover(root)
    assert len(parses) == 12
    assert not (root / ".kiln").exists()


def test_a_syntax_error_is_never_kept(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    discover(root, keep=True)
    before = (root / KEPT).read_bytes()
    (root / "pipelines" / "components" / "bad.py").write_text("def f(:\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"bad\.py:1: syntax error"):
            discover(root, keep=True)
    assert (root / KEPT).read_bytes() == before


@pytest.mark.parametrize(
    "data",
    [
        b'IMAGE = "base"\r\n\r\ndef f(x):\r\n    return x\r\n',
        b"A = 1\rB = 2\r",
        b"\xef\xbb\xbfA = 1\n",
    ],
)
def test_bytes_parse_as_read_text_reads_them(tmp_path: Path, data: bytes) -> None:
    module = factory.write(tmp_path / "m.py", "")
    module.write_bytes(data)
    try:
        expected = ast.dump(ast.parse(module.read_text(encoding="utf-8"), filename=str(module)))
    except SyntaxError as exc:
        expected = f"{module}:{exc.lineno}: syntax error: {exc.msg}; fix it"
    try:
        got = ast.dump(sources.parse_source(module, data))
    except ConfigError as exc:
        got = str(exc)
    assert got == expected


def test_a_command_keeps_the_facts_and_its_next_run_parses_nothing(
    tmp_path: Path, parses: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = _repo(tmp_path)
    argv = ("bump", "imgproc", "patch", "--dry-run", "--repo", str(root))
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert (root / KEPT).is_file()
    parses.clear()
    assert run(capsys, *argv)[0] == 0
    assert parses == []


def test_a_helper_s_pyproject_unchanged_since_the_last_run_is_not_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _repo(tmp_path)
    parsed: list[Path] = []
    real = toml.parse_toml

    def counting(path: Path, data: bytes) -> dict[str, Any]:
        if path.parent.parent.name == "helpers":
            parsed.append(path)
        return real(path, data)

    monkeypatch.setattr(toml, "parse_toml", counting)
    first = discover(root, keep=True)
    assert len(parsed) == 2
    parsed.clear()
    assert discover(root, keep=True) == first
    assert parsed == []
    pyproject = root / "helpers" / "tabular" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"0.1.0"', '"0.2.0"'))
    assert discover(root, keep=True).helper("tabular").version == "0.2.0"
    assert parsed == [pyproject]
    kept = root / ".kiln/cache/discovery/helpers.json"
    kept.write_bytes(kept.read_bytes().replace(b"0.2.0", b"0.3.0"))  # its sha256 line kept
    parsed.clear()
    assert discover(root, keep=True).helper("tabular").version == "0.2.0"
    assert len(parsed) == 2
