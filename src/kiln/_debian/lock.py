"""``images/os.lock``: the OS layer's Debian packages, each by name, version and sha256.

Written by `kiln lock`, committed, read by every build. Per package: name, version,
architecture, source package, archive and pool path (where to fetch it: a hint, the
sha256 is its identity), size and sha256. It also lists the relations left out on
purpose, and the layer the packages give (diff_id, digest, size): a build that
gives other bytes stops, so the same lock gives the same layer on every machine. An
image's ``os-packages`` are locked under ``[extras.<image>]``, with a layer of their own.
``[os]`` and ``[extras]`` hold the first architecture of ``[tool.kiln.os]``; each other
one has its closures under ``[arch.<architecture>]`` (its ``extras`` beneath it), so a
lock of one architecture reads as it always did.

The file is TOML written in a fixed order by ``render``: the same lock, the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln._debian.archive import Candidate
from kiln._debian.resolve import Closure, Omitted
from kiln._errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

OS_LOCK = Path("images") / "os.lock"
FORMAT = 1


@dataclass(frozen=True)
class DebPin:
    name: str
    version: str
    architecture: str
    source: str
    archive: str  # which archive's mirrors serve it: "debian" or "debian-security"
    path: str  # its pool path there
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def purl(self) -> str:
        """``pkg:deb/debian/<name>@<version>?arch=<arch>`` (the purl spec's deb type)."""
        version = self.version.replace(":", "%3A").replace("+", "%2B")
        return f"pkg:deb/debian/{self.name}@{version}?arch={self.architecture}"

    @classmethod
    def of(cls, candidate: Candidate) -> DebPin:
        return cls(
            candidate.name, candidate.version, candidate.architecture, candidate.source,
            candidate.archive, candidate.path, candidate.size, candidate.sha256,
        )  # fmt: skip


@dataclass(frozen=True)
class LayerPin:
    """The layer a set of packages gives: what every build must give again."""

    diff_id: str
    digest: str
    size: int


@dataclass(frozen=True)
class PackageSet:
    """A closure as locked: its packages, the relations left out, and its layer."""

    packages: tuple[DebPin, ...]
    omitted: tuple[Omitted, ...]
    layer: LayerPin | None  # None until the layer was built (never in a written lock)
    roots: tuple[str, ...] = ()  # an extras set's os-packages

    @classmethod
    def of(cls, closure: Closure, roots: tuple[str, ...] = ()) -> PackageSet:
        return cls(tuple(DebPin.of(c) for c in closure.packages), closure.omitted, None, roots)

    def versions(self) -> dict[str, str]:
        return {p.name: p.version for p in self.packages}


@dataclass(frozen=True)
class ArchSets:
    """The closures of one more architecture: its OS set, and each image's extras."""

    os: PackageSet
    extras: Mapping[str, PackageSet] = field(default_factory=dict)


@dataclass(frozen=True)
class OsLock:
    path: Path
    inputs: str
    writer: str  # the version of kiln's OS layer writer that made ``layer``
    suite: str
    release: str  # the suite's version ("12.8"): /etc/debian_version, os-release
    architecture: str
    python: str  # "3.11"
    os: PackageSet
    extras: Mapping[str, PackageSet] = field(default_factory=dict)
    more: Mapping[str, ArchSets] = field(default_factory=dict)  # the other architectures

    @property
    def architectures(self) -> tuple[str, ...]:
        return (self.architecture, *self.more)

    def of(self, architecture: str) -> OsLock:
        """The lock as it reads for ``architecture``: its closures in ``os`` and
        ``extras`` (and no other)."""
        if architecture == self.architecture:
            return dataclasses.replace(self, more={})
        if architecture not in self.more:
            raise ConfigError(
                f"{self.path}: locks {', '.join(self.architectures)}, not {architecture}; add "
                f"it to [tool.kiln.os] architectures and run `kiln lock`"
            )
        sets = self.more[architecture]
        return dataclasses.replace(
            self, architecture=architecture, os=sets.os, extras=sets.extras, more={}
        )

    def packages(self) -> list[DebPin]:
        """Every package the lock pins, of every architecture and image."""
        return [
            p
            for arch in self.architectures
            for s in (self.of(arch).os, *self.of(arch).extras.values())
            for p in s.packages
        ]

    @property
    def name(self) -> str:
        """What it is, for people: ``debian bookworm 12.8 (images/os.lock)``."""
        return f"debian {self.suite} {self.release} (images/{self.path.name})"


def _q(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _package_lines(table: str, pins: tuple[DebPin, ...]) -> list[str]:
    lines: list[str] = []
    for pin in pins:
        lines += [
            "",
            f"[[{table}]]",
            f"name = {_q(pin.name)}",
            f"version = {_q(pin.version)}",
            f"architecture = {_q(pin.architecture)}",
            f"source = {_q(pin.source)}",
            f"archive = {_q(pin.archive)}",
            f"path = {_q(pin.path)}",
            f"size = {pin.size}",
            f"sha256 = {_q(pin.sha256)}",
        ]
    return lines


def _set_lines(table: str, packages: PackageSet) -> list[str]:
    if packages.layer is None:
        raise ValueError(f"{table}: its layer was never built")
    lines = [
        "",
        f"[{table}.layer]",
        f"diff-id = {_q(packages.layer.diff_id)}",
        f"digest = {_q(packages.layer.digest)}",
        f"size = {packages.layer.size}",
    ]
    if packages.omitted:
        lines += ["", "# Left out on purpose: only maintainer scripts need these relations."]
    for omitted in packages.omitted:
        lines += [
            f"[[{table}.omitted]]",
            f"package = {_q(omitted.package)}",
            f"field = {_q(omitted.field)}",
            f"relation = {_q(omitted.relation)}",
        ]
    return lines + _package_lines(f"{table}.package", packages.packages)


def render(lock: OsLock) -> str:
    """The lock's bytes: a function of its fields only."""
    lines = [
        "# Written by `kiln lock`: do not edit. Change [tool.kiln.os] in pyproject.toml (or an",
        "# image's os-packages), then run `kiln lock` again; `kiln lock --upgrade-os` moves",
        "# every package to the newest version the suites offer.",
        "# The OS layer of every image: these Debian packages, unpacked without maintainer",
        "# scripts, and what kiln writes in their place; every build checks the layer's digest.",
        "",
        "[os]",
        f"format = {FORMAT}",
        f"inputs = {_q(lock.inputs)}",
        f"writer = {_q(lock.writer)}",
        f"suite = {_q(lock.suite)}",
        f"release = {_q(lock.release)}",
        f"architecture = {_q(lock.architecture)}",
        f"python = {_q(lock.python)}",
        *_set_lines("os", lock.os),
    ]
    lines += _extras_lines("extras", lock.extras)
    for arch, sets in lock.more.items():
        lines += [
            "",
            f"# The OS layer for {arch}: the same roots, its own packages.",
            f"[arch.{arch}]",
        ]
        lines += _set_lines(f"arch.{arch}", sets.os)
        lines += _extras_lines(f"arch.{arch}.extras", sets.extras)
    return "\n".join(lines) + "\n"


def _extras_lines(where: str, extras: Mapping[str, PackageSet]) -> list[str]:
    lines: list[str] = []
    for image in sorted(extras):
        extra = extras[image]
        table = f"{where}.{_q(image)}"  # quoted: an image's folder name may hold a dot
        lines += ["", f"[{table}]", f"roots = {_q(list(extra.roots))}"]
        lines += _set_lines(table, extra)
    return lines


def _fix(path: Path) -> str:
    return f"restore it (`git checkout -- {path.name}`) or write it again with `kiln lock`"


def _str(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value


def _int(doc: Mapping[str, Any], key: str, where: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}: {key} must be a size in bytes")
    return value


def _set(doc: Any, where: str) -> PackageSet:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where} must be a table")
    layer_doc = doc.get("layer")
    if not isinstance(layer_doc, dict):
        raise ConfigError(f"{where}.layer is missing")
    layer = LayerPin(
        _str(layer_doc, "diff-id", f"{where}.layer"),
        _str(layer_doc, "digest", f"{where}.layer"),
        _int(layer_doc, "size", f"{where}.layer"),
    )
    packages = []
    for i, row in enumerate(doc.get("package", [])):
        at = f"{where}.package[{i}]"
        if not isinstance(row, dict):
            raise ConfigError(f"{at} must be a table")
        sha256 = _str(row, "sha256", at)
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ConfigError(f"{at}: sha256 {sha256!r} is not 64 hex digits")
        packages.append(
            DebPin(
                name=_str(row, "name", at),
                version=_str(row, "version", at),
                architecture=_str(row, "architecture", at),
                source=_str(row, "source", at),
                archive=_str(row, "archive", at),
                path=_str(row, "path", at),
                size=_int(row, "size", at),
                sha256=sha256,
            )
        )
    if not packages:
        raise ConfigError(f"{where} lists no package")
    names = [p.name for p in packages]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ConfigError(f"{where}: {', '.join(doubled)} locked more than once")
    rows = doc.get("omitted", [])
    if not isinstance(rows, list):
        raise ConfigError(f"{where}.omitted must be a list of tables")
    omitted = []
    for i, row in enumerate(rows):
        at = f"{where}.omitted[{i}]"
        if not isinstance(row, dict):
            raise ConfigError(f"{at} must be a table")
        omitted.append(
            Omitted(_str(row, "package", at), _str(row, "field", at), _str(row, "relation", at))
        )
    roots = doc.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise ConfigError(f"{where}: roots must be a list of package names")
    return PackageSet(tuple(packages), tuple(omitted), layer, tuple(roots))


def _os_table(path: Path, doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The lock's [os] table, in a format this kiln reads."""
    os_doc = doc["os"]
    if not isinstance(os_doc, dict):
        raise ConfigError(f"{path}: [os] must be a table")
    if os_doc.get("format") != FORMAT:
        raise ConfigError(
            f"{path}: lock format {os_doc.get('format')!r}, this kiln reads {FORMAT}: "
            "upgrade kiln, or write the lock again with this one (`kiln lock`)"
        )
    return os_doc


def _extras(path: Path, doc: Mapping[str, Any], where: str = "extras") -> dict[str, PackageSet]:
    extras = doc.get("extras", {})
    if not isinstance(extras, dict):
        raise ConfigError(f"{path}: [{where}] must be a table of images")
    return {k: _set(v, f"{path} [{where}.{k}]") for k, v in sorted(extras.items())}


def _more(path: Path, doc: Mapping[str, Any], first: str) -> dict[str, ArchSets]:
    """``[arch.<architecture>]``: the other architectures' closures, in the file's order."""
    tables = doc.get("arch", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: [arch] must be a table of architectures")
    found = {}
    for arch, table in tables.items():
        if arch == first:
            raise ConfigError(f"{path}: [arch.{arch}] repeats the architecture of [os]")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [arch.{arch}] must be a table")
        found[arch] = ArchSets(
            _set(table, f"{path} [arch.{arch}]"), _extras(path, table, f"arch.{arch}.extras")
        )
    return found


def parse_os_lock(path: Path, text: str) -> OsLock:
    try:
        doc = tomllib.loads(text)
        os_doc = _os_table(path, doc)
        where = f"{path} [os]"
        architecture = _str(os_doc, "architecture", where)
        return OsLock(
            path=path,
            inputs=_str(os_doc, "inputs", where),
            writer=_str(os_doc, "writer", where),
            suite=_str(os_doc, "suite", where),
            release=_str(os_doc, "release", where),
            architecture=architecture,
            python=_str(os_doc, "python", where),
            os=_set(os_doc, where),
            extras=_extras(path, doc),
            more=_more(path, doc, architecture),
        )
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); {_fix(path)}") from None
    except KeyError as exc:
        raise ConfigError(f"{path}: no [{exc.args[0]}] table; {_fix(path)}") from None
    except ConfigError as exc:
        if _fix(path) in str(exc):
            raise
        raise ConfigError(f"{exc}; {_fix(path)}") from None


def read_os_lock(root: Path) -> OsLock:
    """The workspace's committed OS lock (``images/os.lock``)."""
    path = root / OS_LOCK
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: missing; images on kiln's OS base are built from it: run `kiln lock` "
            "and commit the file"
        ) from None
    return parse_os_lock(path, text)
