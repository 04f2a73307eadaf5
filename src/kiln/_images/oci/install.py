"""Wheels -> a folder laid out as the image's filesystem, with pypa ``installer``.

Each wheel is installed into the base's install scheme (probed once from its
interpreter: Debian's python uses ``/usr/local/lib/python3.X/dist-packages`` and
``/usr/bin/python3``, ``python:3.X-slim`` ``site-packages`` and
``/usr/local/bin/python3``) under a staging root. The result is what pip leaves:
full ``*.dist-info`` with ``RECORD`` (listing the ``.pyc`` files too) and
``REQUESTED``, console scripts with the image's interpreter, ``.data/`` files in
their scheme. ``INSTALLER`` says ``kiln``: pip reads it only to name who installed
a distribution (``pip list -v``, ``pip show``), so the truth costs nothing and tells
a baked package from one pip added at run time. No ``direct_url.json``: the
wheels' paths on the build machine are no part of the image.

Two wheels writing one file is an error naming both (folders, such as namespace
packages', are shared freely). Bytecode is compiled with ``checked-hash``
invalidation (deterministic, and valid in a read-only container) by the image's own
interpreter (``interpreter``) with a fixed hash seed: its bytes differ between patch
releases of one Python, so no other interpreter would do.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import posixpath
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.records import Hash, RecordEntry
from installer.scripts import Script
from installer.sources import WheelFile
from installer.utils import Scheme
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from kiln._errors import ConfigError
from kiln._images.oci.interpreter import Interpreter
from kiln._images.oci.layer_files import LayerFiles
from kiln._images.oci.pyc_memo import PYCS, PycKey, PycMemo, pyc_key
from kiln._util.scratch import scratch_folder

INSTALLER = b"kiln\n"


@dataclass(frozen=True)
class InstallScheme:
    """Where the image's interpreter installs distributions (absolute paths in the image)."""

    python: str  # "3.11"
    cache_tag: str  # "cpython-311": the .pyc file name tag
    executable: str  # the console scripts' interpreter, e.g. /usr/bin/python3
    purelib: str
    platlib: str
    scripts: str
    data: str
    include: str

    def dict_for(self, distribution: str) -> dict[str, str]:
        """The scheme ``installer`` takes, for one distribution (its headers folder)."""
        return {
            "purelib": self.purelib,
            "platlib": self.platlib,
            "scripts": self.scripts,
            "data": self.data,
            "headers": posixpath.join(self.include, distribution),
        }


def collision(what: str, path: str, first: str, second: str) -> ConfigError:
    return ConfigError(
        f"{what}: {first} and {second} both install {path}; a file must belong to one "
        "distribution: drop one of them from the image (its lock or its helpers), or "
        "rename the file in the helper that ships it"
    )


@dataclass
class _Destination(SchemeDictionaryDestination):
    """installer's destination, writing into ``files`` (no folder: ``layer_files``), that
    refuses a file another wheel wrote and leaves RECORD to ``write_record`` (after
    bytecode is compiled)."""

    files: LayerFiles = field(default_factory=LayerFiles)
    wheel: str = ""
    what: str = ""
    owners: dict[str, str] = field(default_factory=dict)
    deferred: list[tuple[Scheme, str, list[tuple[Scheme, RecordEntry]]]] = field(
        default_factory=list
    )

    def image_path(self, scheme: Scheme, path: str) -> str:
        return posixpath.normpath(posixpath.join(self.scheme_dict[scheme], path))

    def write_to_fs(
        self, scheme: Scheme, path: str, stream: BinaryIO, is_executable: bool
    ) -> RecordEntry:
        target = self.image_path(scheme, path)
        folder = posixpath.normpath(self.scheme_dict[scheme])
        if not target.startswith(folder.rstrip("/") + "/"):  # installer's own check
            raise ValueError(f"Attempting to write {path} outside of the target directory")
        if target in self.owners:
            raise collision(self.what, target, self.owners[target], self.wheel)
        self.owners[target] = self.wheel
        data = stream.read()
        self.files.add(target, data, executable=is_executable)
        digest = hashlib.new(self.hash_algorithm, data).digest()
        value = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
        return RecordEntry(path, Hash(self.hash_algorithm, value), len(data))

    def write_script(
        self, name: str, module: str, attr: str, section: Literal["console", "gui"]
    ) -> RecordEntry:
        """installer's, without its chmod of the written file (``files`` has no folder:
        the script is written executable)."""
        script_name, data = Script(name, module, attr, section).generate(
            self.interpreter, self.script_kind
        )
        with io.BytesIO(data) as stream:
            return self.write_to_fs(Scheme("scripts"), script_name, stream, is_executable=True)

    def finalize_installation(
        self,
        scheme: Scheme,
        record_file_path: str,
        records: Iterable[tuple[Scheme, RecordEntry]],
    ) -> None:
        self.deferred.append((scheme, record_file_path, list(records)))

    def sources(self) -> list[tuple[Scheme, RecordEntry]]:
        """The installed ``.py`` files that get bytecode (those in the library folders)."""
        return [
            (scheme, record)
            for _, _, records in self.deferred
            for scheme, record in records
            if scheme in ("purelib", "platlib") and record.path.endswith(".py")
        ]

    def write_record(self, pyc: Mapping[tuple[Scheme, str], str]) -> None:
        """RECORD, with the ``.pyc`` of each compiled source (no hash, as pip writes it)."""
        for scheme, record_file_path, records in self.deferred:
            extra = [
                (s, RecordEntry(pyc[(s, r.path)], None, None))
                for s, r in records
                if (s, r.path) in pyc
            ]
            super().finalize_installation(scheme, record_file_path, [*records, *extra])


def _check_tags(wheel: Path, tags: frozenset[Tag] | None, what: str) -> None:
    try:
        _name, _version, _build, wheel_tags = parse_wheel_filename(wheel.name)
    except InvalidWheelFilename:
        raise ConfigError(f"{what}: {wheel} is not named like a wheel") from None
    if tags is not None and not wheel_tags & tags:
        raise ConfigError(
            f"{what}: {wheel.name} does not fit the image's Python and platform (its tags: "
            f"{', '.join(sorted(map(str, wheel_tags)))}); lock a wheel built for the image "
            "(`kiln lock`) or fix image.toml's python/platform"
        )


def _pyc_path(path: str, cache_tag: str) -> str:
    head, name = posixpath.split(path)
    return posixpath.join(head, "__pycache__", f"{name[:-3]}.{cache_tag}.pyc")


# Run by the compiling interpreter: argv[1] is where it writes the sources it could
# not compile (syntax errors in tests or templates: pip skips them as well).
_COMPILE = """\
import json, py_compile, sys
failed = []
for source, cfile, dfile in json.load(sys.stdin):
    try:
        py_compile.compile(source, cfile=cfile, dfile=dfile, doraise=True, optimize=0,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except py_compile.PyCompileError:
        failed.append(source)
with open(sys.argv[1], "w") as out:
    json.dump(failed, out)
"""


# Processes compiling at once: each source's bytes do not depend on which one compiles it.
COMPILE_WORKERS = max(1, min(2, os.cpu_count() or 1))


def compile_bytecode(
    root: Path,
    image_paths: Sequence[str],
    cache_tag: str,
    compiler: Interpreter,
    memo: PycMemo | None,
) -> set[str]:
    """Compile the sources at ``image_paths`` (files under ``root``) with ``compiler``;
    return those that compiled. Each ``.pyc`` depends on its source and the compiler
    only (the fixed hash seed ``compiler`` runs with makes set and frozenset constants,
    marshalled in iteration order, repeatable), so one this process compiled before is
    taken from ``memo``, and the other sorted sources are shared among
    ``COMPILE_WORKERS`` runs of it at once."""
    jobs: list[str] = []
    done: set[str] = set()
    keys: dict[str, PycKey] = {}
    for p in sorted(image_paths):
        path, pyc_path = root / p.lstrip("/"), root / _pyc_path(p, cache_tag).lstrip("/")
        if memo is not None:
            keys[p] = key = pyc_key(compiler.identity, cache_tag, p, path.read_bytes())
            pyc = memo.get(key)
            if pyc is not None:
                pyc_path.parent.mkdir(parents=True, exist_ok=True)
                pyc_path.write_bytes(pyc)
                done.add(p)
                continue
        jobs.append(p)
    compiled = _compile_folder(root, jobs, cache_tag, compiler)
    if memo is not None:
        for p in compiled:
            memo.put(keys[p], (root / _pyc_path(p, cache_tag).lstrip("/")).read_bytes())
    return done | compiled


def compile_files(
    files: LayerFiles,
    image_paths: Sequence[str],
    cache_tag: str,
    compiler: Interpreter,
    memo: PycMemo | None,
) -> set[str]:
    """``compile_bytecode`` for sources in ``files``: each ``.pyc`` is added to ``files``.
    Those ``memo`` lacks are written to a private folder for ``compiler`` to read."""
    misses: list[tuple[str, bytes]] = []
    done: set[str] = set()
    keys: dict[str, PycKey] = {}
    for p in sorted(image_paths):
        source = files.read(p)
        if memo is not None:
            keys[p] = key = pyc_key(compiler.identity, cache_tag, p, source)
            pyc = memo.get(key)
            if pyc is not None:
                files.add(_pyc_path(p, cache_tag), pyc)
                done.add(p)
                continue
        misses.append((p, source))
    if not misses:
        return done
    need = 2 * sum(len(source) for _, source in misses)
    with tempfile.TemporaryDirectory(
        prefix="kiln-pyc-", dir=scratch_folder(need, "kiln-pyc-")
    ) as tmp:
        root = Path(tmp)
        for p, source in misses:
            (root / p[1:]).parent.mkdir(parents=True, exist_ok=True)
            (root / p[1:]).write_bytes(source)
        compiled = _compile_folder(root, [p for p, _ in misses], cache_tag, compiler)
        for p in sorted(compiled):
            pyc = (root / _pyc_path(p, cache_tag)[1:]).read_bytes()
            files.add(_pyc_path(p, cache_tag), pyc)
            if memo is not None:
                memo.put(keys[p], pyc)
    return done | compiled


def _compile_folder(
    root: Path, image_paths: Sequence[str], cache_tag: str, compiler: Interpreter
) -> set[str]:
    """Compile the sources at ``image_paths`` under ``root``, each ``.pyc`` beside it,
    shared among ``COMPILE_WORKERS`` runs of ``compiler``; those that compiled."""
    jobs = [
        (str(root / p.lstrip("/")), str(root / _pyc_path(p, cache_tag).lstrip("/")), p)
        for p in sorted(image_paths)
    ]  # (source, .pyc) under root, path in the image
    if not jobs:
        return set()
    workers = max(1, min(COMPILE_WORKERS, len(jobs) // 50))  # a few sources: one run
    with tempfile.TemporaryDirectory(prefix="kiln-pyc-") as tmp:
        failed_files = [Path(tmp) / f"failed-{i}.json" for i in range(workers)]

        def compile_share(i: int) -> None:
            share = jobs[i::workers]
            compiler.run(_COMPILE, [str(failed_files[i])], stdin=json.dumps(share))

        if workers == 1:
            compile_share(0)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="kiln-pyc") as pool:
                list(pool.map(compile_share, range(workers)))
        failed = {
            source
            for path in failed_files
            for source in json.loads(path.read_text(encoding="utf-8"))
        }
    return {dfile for source, _cfile, dfile in jobs if source not in failed}


def _check_folders(owners: Mapping[str, str], what: str) -> None:
    """No installed file is also a folder of another (a folder install would fail there)."""
    for path, wheel in owners.items():
        parent = posixpath.dirname(path)
        while parent not in ("/", ""):
            if parent in owners:
                raise ConfigError(
                    f"{what}: {owners[parent]} installs the file {parent}, and {wheel} "
                    f"installs {path} as if it were a folder; a path must be one or the "
                    "other: drop one of them from the image (its lock or its helpers)"
                )
            parent = posixpath.dirname(parent)


def install_wheels(
    wheels: Sequence[Path],
    scheme: InstallScheme,
    files: LayerFiles,
    *,
    what: str,
    compiler: Interpreter,
    tags: frozenset[Tag] | None = None,
    memo: PycMemo | None = PYCS,
) -> dict[str, str]:
    """Install ``wheels`` into ``files`` as ``scheme`` lays them out in the image; return
    each file's image path -> the wheel that installed it. ``what`` names the image and
    layer in errors; ``compiler`` is the image's Python (it writes the bytecode, or
    ``memo`` has it); ``tags``, when given, are the ones the image supports."""
    owners: dict[str, str] = {}
    destinations = []
    for wheel in sorted(wheels, key=lambda p: p.name):
        _check_tags(wheel, tags, what)
        distribution = wheel.name.split("-", 1)[0]
        destination = _Destination(
            scheme_dict=scheme.dict_for(distribution),
            interpreter=scheme.executable,
            script_kind="posix",
            files=files,
            wheel=wheel.name,
            what=what,
            owners=owners,
        )
        try:
            with WheelFile.open(wheel) as source:
                install(source, destination, {"INSTALLER": INSTALLER, "REQUESTED": b""})
        except (InstallerError, zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise ConfigError(
                f"{what}: {wheel} is not a valid wheel ({type(exc).__name__}: {exc}); "
                "fetch it again (clear kiln's wheelhouse cache) or rebuild the helper"
            ) from None
        destinations.append(destination)
    _check_folders(owners, what)
    sources = {
        destination.image_path(s, r.path): (i, s, r.path)
        for i, destination in enumerate(destinations)
        for s, r in destination.sources()
    }
    compiled = compile_files(files, list(sources), scheme.cache_tag, compiler, memo)
    pyc: list[dict[tuple[Scheme, str], str]] = [{} for _ in destinations]
    for image_path in compiled:
        i, s, path = sources[image_path]
        pyc[i][(s, path)] = _pyc_path(path, scheme.cache_tag)
    for destination, compiled_here in zip(destinations, pyc, strict=True):
        destination.write_record(compiled_here)
    return owners
