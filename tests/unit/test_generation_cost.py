"""What a release in which nothing changed does per component and per wheel: at N=500
(1004 components, 202 in packages mode, 540 wheels) a no-op release rendered the whole
catalog (0.5 s), opened every wheel's zip for its import names (0.4 s), went over every
helper for each packages-mode component and validated every component twice. Each is
now done when its inputs change, and the files are the same bytes as without the cache."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kiln._components import drift, validate, yamls
from kiln._components import packages as packages_module
from kiln._components.catalog import FILES
from kiln._components.packages import WheelFacts
from kiln._errors import ConfigError
from kiln._release.prepare import prepare
from kiln._wheels import metadata
from kiln._wheels.metadata import WheelMetadata, wheel_metadata
from kiln._wheels.wheelhouse import WheelFile
from kiln._workspace.discovery import discover
from kiln._workspace.model import Component
from tests import factory
from tests.damage import replace_file
from tests.unit.fakes import Setup, release_setup, write_fake_lock

PACKAGES_STEP = '''
PACKAGES = True


def {name}(x: int) -> float:
    """Scale x with imgproc's answer."""
    import numpy as np
    from imgproc import answer

    return float(np.float64(x * answer()))
'''


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    """The sample with two packages-mode components beside its image-mode one."""
    made = release_setup(tmp_path)
    folder = made.ws.root / "pipelines" / "components"
    for name in ("light_step", "other_step"):
        factory.write(folder / f"{name}.py", PACKAGES_STEP.format(name=name))
    made.ws = discover(made.ws.root)
    assert made.ws.packages is not None
    write_fake_lock(made.ws, made.ws.packages)
    return made


def generate(setup: Setup) -> dict[str, bytes]:
    """Every file ``generate`` writes into the committed folder, by name."""
    prepared = prepare(setup.ws, setup.services)
    yamls.generate(
        setup.ws, prepared.wheelhouses, prepared.image_refs, packages=prepared.packages,
        index_url=setup.index.url,
    )  # fmt: skip
    return {p.name: p.read_bytes() for p in sorted(setup.ws.component_dir.iterdir())}


def counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[Any]:
    calls: list[Any] = []
    real: Callable[..., Any] = getattr(module, name)

    def count(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0] if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, count)
    return calls


def cache(setup: Setup) -> Path:
    return setup.ws.state_dir / "cache" / "components"


def test_a_no_op_renders_no_catalog_and_reads_no_yaml_back_for_it(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = generate(setup)
    assert set(FILES) <= set(first)
    readme = (setup.ws.component_dir / "README.md").stat()
    rendered = counting(monkeypatch, yamls, "render_file")
    rows = counting(monkeypatch, yamls, "_catalog_entry")
    again = generate(setup)
    assert (rendered, rows) == ([], [])
    assert again == first
    after = (setup.ws.component_dir / "README.md").stat()
    assert (after.st_ino, after.st_mtime_ns) == (readme.st_ino, readme.st_mtime_ns)  # not rewritten
    # The same bytes as a catalog rendered without any cache.
    for kept in (cache(setup) / "catalog").glob("*/*.yaml"):
        kept.unlink()
    assert generate(setup) == first
    assert sorted(rendered) == sorted(FILES)
    assert len(rows) == len(setup.ws.components)


def test_a_changed_component_renders_the_catalog_again(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = generate(setup)
    source = setup.ws.root / "pipelines" / "components" / "other_step.py"
    source.write_text(source.read_text().replace("Scale x", "Scale the x"))
    setup.ws = discover(setup.ws.root)
    rendered = counting(monkeypatch, yamls, "render_file")
    changed = generate(setup)
    assert sorted(rendered) == sorted(FILES)
    assert b"Scale the x" in changed["README.md"]
    assert b"Scale the x" in changed["catalog.html"]
    assert changed["light_step.yaml"] == first["light_step.yaml"]
    # The last catalog's files only: 7 MB more on every such release at N=500.
    assert len(list((cache(setup) / "catalog").glob("*/*.yaml"))) == len(FILES)


@pytest.mark.parametrize("damage", ["truncated", "edited"])
def test_a_damaged_catalog_entry_is_rendered_again(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    first = generate(setup)
    kept = list((cache(setup) / "catalog").glob("*/*.yaml"))
    assert len(kept) == len(FILES)
    for path in kept:
        raw = path.read_bytes()
        replace_file(path, raw[:-10] if damage == "truncated" else raw.replace(b"<", b"["))
    rendered = counting(monkeypatch, yamls, "render_file")
    assert generate(setup) == first
    assert sorted(rendered) == sorted(FILES)


def test_a_no_op_opens_no_wheel(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each wheel's import packages and Requires-Dist are kept by its sha256: the next
    process (its in-memory reads forgotten) opens no zip."""
    first = generate(setup)
    metadata._read_wheel.cache_clear()  # as in the next process
    packages_module._requires_of.cache_clear()
    packages_module._TABLES.clear()
    opened = counting(monkeypatch, zipfile, "ZipFile")
    assert generate(setup) == first
    assert opened == []


def test_the_helpers_are_gone_over_once_not_once_per_packages_mode_component(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes = [c.mode for c in setup.ws.components]
    assert modes.count("packages") == 2
    names = counting(monkeypatch, yamls, "canonicalize_name")
    generate(setup)
    assert len(names) == len(setup.ws.helpers)


def _wheel(tmp_path: Path, meta: str = "Requires-Dist: numpy>=1\n") -> WheelFile:
    path = tmp_path / "acme_h-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("h/__init__.py", "")
        zf.writestr("acme_h-0.1.0.dist-info/METADATA", f"Name: acme-h\n{meta}")
    return WheelFile("acme-h", "0.1.0", path, "ab" * 32)


def test_wheel_facts_are_read_once_and_then_kept_by_the_wheel_s_sha256(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    first = WheelFacts(tmp_path / "kept")
    found = first.metadata(wheel)
    assert found == wheel_metadata(wheel.path) == WheelMetadata(("h",), ("numpy>=1",))
    assert first.metadata(wheel) is found
    assert first.read == 1
    again = WheelFacts(tmp_path / "kept")  # the next run
    assert again.metadata(wheel) == found
    assert again.import_names([wheel]) == frozenset({"h"})
    assert again.requires(wheel, "3.11", "x86_64") == ("numpy",)
    assert again.read == 0
    other = WheelFile("acme-h", "0.1.0", wheel.path, "cd" * 32)  # another sha256: read
    assert again.metadata(other) == found
    assert again.read == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:-5],
        lambda raw: raw.replace(b'"h"', b'"evil"'),
        lambda raw: b"kiln wheel metadata 1 sha256:" + b"0" * 64 + b"\n[]",
    ],
)
def test_a_damaged_kept_wheel_fact_is_read_from_the_wheel_again(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    wheel = _wheel(tmp_path)
    WheelFacts(tmp_path / "kept").metadata(wheel)
    (kept,) = (tmp_path / "kept").glob("*/*.json")
    replace_file(kept, damage(kept.read_bytes()))
    again = WheelFacts(tmp_path / "kept")
    assert again.metadata(wheel) == WheelMetadata(("h",), ("numpy>=1",))
    assert again.read == 1


def test_a_kept_fact_of_the_wrong_shape_is_not_believed(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    facts = WheelFacts(tmp_path / "kept")
    assert facts.kept is not None
    facts.kept.put(wheel.sha256, {"packages": "h", "requires": []})  # a well-formed entry
    assert WheelFacts(tmp_path / "kept").metadata(wheel).packages == ("h",)


def _components(tmp_path: Path, count: int = 3) -> list[Component]:
    folder = tmp_path / "components"
    folder.mkdir(exist_ok=True)
    made = []
    for i in range(count):
        path = folder / f"c{i}.py"
        path.write_text(f'def c{i}(x: int = 1) -> int:\n    """Step {i}."""\n    return x\n')
        made.append(Component(name=f"c{i}", path=path, image="base"))
    return made


def test_components_that_passed_are_not_validated_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI validates every component when it reads the repo, and generate again before
    it writes a YAML: 2 x 1004 modules parsed and walked per run at N=500."""
    monkeypatch.setattr(validate, "_PASSED", set())
    parsed = counting(monkeypatch, validate, "parse_module")
    components = _components(tmp_path)
    memo = tmp_path / "memo"
    validate.validate_components(components, memo=memo)
    assert len(parsed) == 3
    validate.validate_components(components, memo=memo)  # generate, in the same process
    assert len(parsed) == 3
    monkeypatch.setattr(validate, "_PASSED", set())  # the next run
    validate.validate_components(components, memo=memo)
    assert len(parsed) == 3
    validate.validate_components(components)  # no memo: this process remembers it
    assert len(parsed) == 3


def test_a_changed_module_is_validated_again_and_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validate, "_PASSED", set())
    components = _components(tmp_path)
    memo = tmp_path / "memo"
    validate.validate_components(components, memo=memo)
    bad = components[1].path
    bad.write_text(bad.read_text().replace('"""Step 1."""', '"""Step \x1b[31m1."""'))
    with pytest.raises(ConfigError, match="the docstring of c1"):
        validate.validate_components(components, memo=memo)
    monkeypatch.setattr(validate, "_PASSED", set())
    with pytest.raises(ConfigError, match="the docstring of c1"):
        validate.validate_components(components, memo=memo)


@pytest.mark.parametrize("damage", [lambda raw: raw[:-2], lambda raw: raw.replace(b"true", b"1")])
def test_a_damaged_validation_memo_is_not_believed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: Callable[[bytes], bytes]
) -> None:
    monkeypatch.setattr(validate, "_PASSED", set())
    components = _components(tmp_path)
    memo = tmp_path / "memo"
    validate.validate_components(components, memo=memo)
    (kept,) = memo.glob("*/*.json")
    replace_file(kept, damage(kept.read_bytes()))
    monkeypatch.setattr(validate, "_PASSED", set())
    parsed = counting(monkeypatch, validate, "parse_module")
    validate.validate_components(components, memo=memo)
    assert len(parsed) == 3


def test_a_no_op_hashes_no_generated_file_a_second_time(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each FileRecord's sha256 is the one the generation cache checked or wrote, and the
    pipelines' key is made of those: 1004 YAMLs were read and hashed twice more."""
    generate(setup)
    hashed = counting(monkeypatch, yamls, "sha256_file")
    digests = counting(monkeypatch, yamls, "files_digest")
    prepared = prepare(setup.ws, setup.services)
    records, pipelines = yamls.generate(
        setup.ws, prepared.wheelhouses, prepared.image_refs, packages=prepared.packages,
        index_url=setup.index.url,
    )  # fmt: skip
    assert hashed == []
    assert len(digests) == 1  # the component sources', not the YAMLs again
    assert pipelines
    for record in (*records, *pipelines):
        data = (setup.ws.root / record.path).read_bytes()
        assert record.sha256 == hashlib.sha256(data).hexdigest()


def test_drift_decodes_and_diffs_only_the_files_that_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kiln check`` compared its 1004 YAMLs line by line; equal bytes are enough."""
    committed, generated = tmp_path / "committed", tmp_path / "generated"
    for folder in (committed, generated):
        folder.mkdir()
        (folder / "same.yaml").write_bytes(b"a: 1\nb: 2\n")
    (committed / "crlf.yaml").write_bytes(b"a: 1\r\nb: 2\r\n")  # a CRLF checkout: the same
    (generated / "crlf.yaml").write_bytes(b"a: 1\nb: 2\n")
    (committed / "changed.yaml").write_bytes(b"a: 1\n")
    (generated / "changed.yaml").write_bytes(b"a: 2\n")
    decoded = counting(monkeypatch, drift, "text_of")
    (found,) = drift.compare(committed, generated, label="c")
    assert (found.name, found.state) == ("changed.yaml", "changed")
    assert "-a: 1\n+a: 2\n" in found.diff
    assert len(decoded) == 4  # changed.yaml and crlf.yaml, each side; never same.yaml
