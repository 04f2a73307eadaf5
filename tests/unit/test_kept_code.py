"""What kiln works out from bytes and keeps (``kiln._util.kept``) names the code that
worked it out: a kiln whose code changed without a new version (a checkout, an editable
install) is not handed its previous code's records."""

from __future__ import annotations

from pathlib import Path

import yaml

from kiln._components import catalog, parsed
from kiln._components.packages import WHEEL_FORMAT
from kiln._util import toml
from kiln._util.kept import KeptRecords, code_digest
from kiln._wheels import metadata
from kiln._workspace import sources
from kiln._workspace.discovery import TOML_KIND, discover
from kiln._workspace.sources import FACTS_KIND, read_components
from tests import factory


def test_the_code_digest_is_the_files_bytes(tmp_path: Path) -> None:
    a, b, c = (tmp_path / name for name in ("a.py", "b.py", "c.py"))
    a.write_text("X = 1\n")
    b.write_text("X = 1\n")
    c.write_text("X = 2\n")
    assert code_digest(str(a)) == code_digest(str(b))
    assert code_digest(str(a)) != code_digest(str(c))
    assert code_digest(str(a), str(c)) != code_digest(str(c), str(a))


def test_each_kind_names_the_code_that_works_its_records_out() -> None:
    assert code_digest(sources.__file__) in FACTS_KIND
    assert code_digest(toml.__file__) in TOML_KIND
    assert code_digest(metadata.__file__).encode() in WHEEL_FORMAT
    assert code_digest(catalog.__file__).encode() in parsed.FORMAT
    assert f"pyyaml {yaml.__version__}".encode() in parsed.FORMAT


def test_facts_kept_by_other_code_are_not_used(tmp_path: Path) -> None:
    root = factory.sample(tmp_path / "repo")
    ws = discover(root)
    module = next((root / "pipelines" / "components").glob("*.py"))
    truth = sources.module_facts(module, KeptRecords(None, FACTS_KIND)).to_json()
    # Another kiln's code kept other facts for these very bytes (none here, say).
    other = FACTS_KIND.replace(code_digest(sources.__file__), "0" * 64)
    assert other != FACTS_KIND
    stale = KeptRecords(tmp_path / "kept.json", other)
    stale.put(module.read_bytes(), {**truth, "functions": []})
    stale.save()

    found = read_components(
        root, ws.images, ws.helpers, KeptRecords(tmp_path / "kept.json", FACTS_KIND)
    )

    assert {c.name for c in found} == {c.name for c in ws.components}
    assert any(c.path == module for c in found)
