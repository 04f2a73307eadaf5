"""The committed component YAMLs of a workspace, pinned, with their catalog, and the
pipelines compiled from them.

Image mode pins each component to its image's ``repository@digest``; packages mode to
the hash-checked files its pod installs from the index. The YAMLs and compiled
pipelines come from the generation cache when their inputs are unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from kiln import __version__
from kiln._components.catalog import FILES, Entry, catalog_head, read_yaml, render_file
from kiln._components.generate import (
    Check,
    YamlCache,
    compile_pipeline,
    files_digest,
    generate_component,
    header,
    inputs_key,
    pins_exactly,
    runs_only,
)
from kiln._components.packages import (
    WheelFacts,
    check_imports,
    closure,
    install_items,
    pip_options,
)
from kiln._components.parsed import ParsedYamls
from kiln._components.validate import memo_folder, validate_components
from kiln._report import Reporter
from kiln._util.files import sha256_file, write_atomic
from kiln._wheels.wheelhouse import Wheelhouse
from kiln._workspace.model import Component, Pipeline, Workspace
from kiln._workspace.platforms import wheel_arch


@dataclass(frozen=True)
class PackagesInputs:
    """Packages mode: the plain Python base its pods start from (reference as pinned) and
    the wheelhouse of its lock, whose files the pods install by URL and sha256; for more
    than one platform, every platform's (OCI platform, wheelhouse), the first's being
    ``wheelhouse``."""

    base: str
    wheelhouse: Wheelhouse
    wheelhouses: tuple[tuple[str, Wheelhouse], ...] = ()

    def by_machine(self, platforms: tuple[str, ...]) -> dict[str, Wheelhouse]:
        """Each platform's wheelhouse by its ``platform_machine`` ("x86_64", "aarch64");
        ``platforms``: packages mode's, whose first is ``wheelhouse``'s."""
        houses = dict(self.wheelhouses) or {platforms[0]: self.wheelhouse}
        return {wheel_arch(p): house for p, house in houses.items()}


@dataclass(frozen=True)
class FileRecord:
    """A generated file (component YAML, compiled pipeline), relative to the repo."""

    name: str
    path: str
    sha256: str
    image: str | None = None  # the image a component runs on

    def to_json(self) -> dict[str, str]:
        row = {"name": self.name, "path": self.path, "sha256": self.sha256}
        return {**row, "image": self.image} if self.image is not None else row


def generate(
    workspace: Workspace,
    houses: Mapping[str, Wheelhouse],
    image_refs: Mapping[str, str],
    *,
    packages: PackagesInputs | None,
    index_url: str,
    report: Reporter | None = None,
    out: Path | None = None,
) -> tuple[tuple[FileRecord, ...], tuple[FileRecord, ...]]:
    """Write the pinned component YAMLs (the committed tree, ``workspace.component_dir``,
    or ``out``; a YAML of a component that no longer exists is removed) and compile the
    pipelines (under dist/, or beside ``out``). ``houses``: each image's wheelhouse,
    ``image_refs`` its ``repository@digest``; ``packages``: packages mode's base and
    wheelhouse; ``index_url``: the private index packages-mode pods install from."""
    # Every one, before any YAML is written (the CLI did when it read the workspace: then
    # this one is remembered).
    validate_components(workspace.components, memo=memo_folder(workspace.state_dir))
    pipelines_out = workspace.dist_dir / "pipelines" if out is None else out.parent / "pipelines"
    out = out or workspace.component_dir
    modes = [c.mode for c in workspace.components]
    (report or Reporter.null()).stage(
        "components",
        f"components: {modes.count('image')} pinned to image digests, "
        f"{modes.count('packages')} to hash-checked packages",
    )
    records = []
    note = (report or Reporter.null()).step
    cache = YamlCache(workspace.state_dir / "cache" / "components", note=note)
    # Each YAML is read back for its cache check (and its catalog row, when the catalog
    # is made again): parsed on its first run only, then read from JSON kept by its sha256.
    parse = ParsedYamls(workspace.state_dir / "cache" / "components" / "parsed")
    # Every component module's bytes: one may import another (a generated YAML holds its
    # function's source, read by KFP from the loaded module).
    sources = files_digest((workspace.root / "pipelines" / "components").glob("*.py"))
    # Every wheel's import packages and Requires-Dist, read from its zip on its first run.
    facts = WheelFacts(workspace.state_dir / "cache" / "components" / "wheels")

    def generated(c: Component, image: str, source: str, **options: Any) -> Path:
        key = inputs_key(
            kind="component", sources=sources, name=c.name, image=image, source=source,
            packages=options,
        )  # fmt: skip
        return cache.get(
            key, out / f"{c.name}.yaml",
            lambda: generate_component(c, image, out, packages=options or None, source=source),
            pins_exactly(
                image, starts=header(c, source), installs=options.get("packages_to_install", ()),
                parse=parse,
            ),
        )  # fmt: skip

    provided: dict[str, frozenset[str]] = {}  # image -> what its wheels install: once each
    baked: dict[str, tuple[str, ...]] = {}  # image -> its helpers, as its catalog rows say
    helper_dists = {str(canonicalize_name(h.distribution)) for h in workspace.helpers}
    rows: list[_Row] = []
    for c in workspace.components:
        source = str(c.path.relative_to(workspace.root))
        if c.image is not None:
            house = houses[c.image]
            if c.image not in provided:
                provided[c.image] = facts.import_names((*house.third_party, *house.helpers))
                baked[c.image] = tuple(f"{w.distribution}=={w.version}" for w in house.helpers)
            check_imports(c, provided[c.image], where=f"image {c.image}")
            path = generated(c, image_refs[c.image], source)
            pins: tuple[str, ...] = (image_refs[c.image],)
            inside = baked[c.image]
        else:
            if packages is None or workspace.packages is None:
                raise ValueError("packages mode's wheelhouse was not prepared")
            python = workspace.packages.python
            closures = {
                machine: closure(workspace, c, house, python, machine=machine, facts=facts)
                for machine, house in packages.by_machine(workspace.packages.platforms).items()
            }
            for installed in closures.values():
                check_imports(c, facts.import_names(installed), where="its packages")
            options = {
                "packages_to_install": install_items(closures, index_url=index_url),
                **pip_options(index_url),
            }
            path = generated(c, packages.base, source, **options)
            # Every platform's pins are the lock's: one version per name.
            versions = {i.name: i.version for found in closures.values() for i in found}
            pins = (f"base {packages.base}", *(f"{n}=={versions[n]}" for n in sorted(versions)))
            inside = tuple(f"{n}=={versions[n]}" for n in sorted(versions) if n in helper_dists)
        record = file_record(
            c.name, path, workspace.root, image=c.image, sha256=cache.sha256.get(path)
        )
        records.append(record)
        rows.append(_Row(c, path, record.sha256, pins, inside))
    written = {Path(r.path).name for r in records}
    for stale in out.glob("*.yaml"):
        if stale.name not in written:
            stale.unlink()  # its component is gone
    _write_catalog(workspace, rows, out, note=note, parse=parse)
    images = {*image_refs.values(), *([packages.base] if packages is not None else [])}
    pipelines = _compile_pipelines(
        workspace, records, images=images, out=out, pipelines_out=pipelines_out, cache=cache,
        parse=parse,
    )  # fmt: skip
    return tuple(records), pipelines


def _compile_pipelines(
    workspace: Workspace,
    records: list[FileRecord],
    *,
    images: set[str],
    out: Path,
    pipelines_out: Path,
    cache: YamlCache,
    parse: ParsedYamls,
) -> tuple[FileRecord, ...]:
    """Compile each pipeline on the YAMLs in ``out`` (``records``: every one, the others
    were removed), from the generation cache when nothing it reads changed."""
    # What a pipeline's load(name) reads, by each YAML's name and its bytes' sha256
    # (hashed as it was written or checked: not read again).
    read = sorted((Path(r.path).name, r.sha256) for r in records)
    yamls = hashlib.sha256(json.dumps(read).encode()).hexdigest()

    def compiled(p: Pipeline) -> FileRecord:
        key = inputs_key(kind="pipeline", source=p.path.read_bytes().hex(), yamls=yamls)
        path = cache.get(
            key, pipelines_out / f"{p.name}.yaml",
            lambda: compile_pipeline(p, out, pipelines_out),
            runs_only(images, parse),
        )  # fmt: skip
        return file_record(p.name, path, workspace.root, sha256=cache.sha256.get(path))

    return tuple(compiled(p) for p in workspace.pipelines)


@dataclass(frozen=True)
class _Row:
    """What a component's catalog entry is made from (its YAML by the bytes' sha256)."""

    component: Component
    path: Path  # its YAML as written
    sha256: str  # of its YAML's bytes
    pins: tuple[str, ...]
    helpers: tuple[str, ...]


def _write_catalog(
    workspace: Workspace,
    rows: list[_Row],
    out: Path,
    *,
    note: Callable[[str], None],
    parse: ParsedYamls,
) -> None:
    """Write the catalog beside the YAMLs, each file from the generation cache when made
    from the same rows: rendering it was 0.5 s of a no-op release at N=500 (1004 entries,
    90000 pins), and reading its rows back from the YAMLs 0.15 s more. Only the last
    catalog is kept (7 MB at N=500, one more on every release that changes a row)."""
    folder = workspace.state_dir / "cache" / "components" / "catalog"
    cache = YamlCache(folder, note=note)
    title = f"{workspace.org} components"
    generated_by = (
        f"Generated by kiln {__version__} from pipelines/components/: do not edit; "
        "run `kiln components --local`."
    )
    # Everything an entry is made of (``_catalog_entry``): its YAML by its bytes' sha256.
    made_of = [
        (
            r.component.name, r.component.path.relative_to(workspace.root).as_posix(),
            r.component.mode, r.path.name, r.sha256, r.pins, r.helpers,
        )
        for r in rows
    ]  # fmt: skip
    rows_digest = hashlib.sha256(json.dumps(made_of).encode()).hexdigest()
    entries: list[Entry] = []

    def make(name: str) -> Path:
        if not entries:  # read back from the YAMLs once, for both files
            entries.extend(
                _catalog_entry(workspace, r.component, r.path, r.pins, r.helpers, parse=parse)
                for r in rows
            )
        data = render_file(name, entries, title=title, generated_by=generated_by)
        write_atomic(out / name, data)
        return out / name

    out.mkdir(parents=True, exist_ok=True)
    keys = set()
    for name in FILES:
        key = inputs_key(
            kind="catalog", file=name, title=title, generated_by=generated_by,
            source=workspace.source, component_dir=_committed(workspace), rows=rows_digest,
        )  # fmt: skip
        head = catalog_head(name, title=title, generated_by=generated_by)
        cache.get(key, out / name, functools.partial(make, name), _starting(head))
        keys.add(key)
    for stale in folder.glob("*/*.yaml"):
        if stale.stem not in keys:
            with contextlib.suppress(OSError):  # another kiln's, removed already
                stale.unlink()


def _starting(head: bytes) -> Check:
    return lambda data: None if data.startswith(head) else "another header"


def _committed(workspace: Workspace) -> str:
    """The committed component folder, relative to the repository (as entries name it)."""
    return workspace.component_dir.relative_to(workspace.root).as_posix()


def _catalog_entry(
    workspace: Workspace,
    component: Component,
    path: Path,
    pins: tuple[str, ...],
    helpers: tuple[str, ...],
    *,
    parse: ParsedYamls,
) -> Entry:
    """The catalog's row of ``component``: its interface read back from its YAML."""
    description, inputs, outputs = read_yaml(path, parse)
    # Where it is committed (also when ``path`` is a scratch copy for --check).
    rel = (workspace.component_dir / path.name).relative_to(workspace.root).as_posix()
    where, how = f'"{rel}"', "load_component_from_file"  # in a clone of this repository
    if workspace.source and workspace.source.startswith("https://github.com/"):
        raw = workspace.source.replace("https://github.com/", "https://raw.githubusercontent.com/")
        where, how = f'"{raw}/vX.Y.Z/{rel}"  # vX.Y.Z: the release tag', "load_component_from_url"
    snippet = f"from kfp import components\n\n{component.name} = components.{how}(\n    {where}\n)"
    return Entry(
        name=component.name,
        source=component.path.relative_to(workspace.root).as_posix(),
        yaml=rel,
        description=description,
        inputs=inputs,
        outputs=outputs,
        mode=component.mode,
        pins=pins,
        helpers=helpers,
        snippet=snippet,
    )


def file_record(
    name: str, path: Path, root: Path, image: str | None = None, *, sha256: str | None = None
) -> FileRecord:
    """``path``'s record; ``sha256``: its bytes' when known (else they are hashed)."""
    rel = str(path.relative_to(root))
    return FileRecord(name=name, path=rel, sha256=sha256 or sha256_file(path), image=image)
