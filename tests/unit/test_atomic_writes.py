"""Every output kiln writes is replaced whole, checked by reading kiln's source.

A file written in place (``Path.write_text``/``write_bytes``, ``open`` for writing) can
be read half-written by another kiln and is left truncated by a kill or a full disk. So
outputs go through ``kiln._util.files`` (``write_atomic``, ``write_text_atomic``,
``atomic_output``, ``replaced_folder``, ``temporary_beside``); the places below write in
place on purpose, each with the reason it is safe. A new place fails this test until it
writes atomically or is listed here with its reason; a listed place that is gone fails
it too, so the list stays true.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import pytest

from kiln._util.files import atomic_output, replaced_folder, write_atomic

T = TypeVar("T")
SRC = Path(__file__).resolve().parents[2] / "src" / "kiln"

_TEMP = "into a private temporary folder, renamed into place whole or removed"
ALLOWED: dict[str, str] = {
    "_util/files.py:write_atomic": "the atomic writer itself: into its temporary file",
    "_util/files.py:atomic_output": "the streaming atomic writer: into its temporary file",
    "_report.py:Reporter.open_log": (
        "the command's log, appended line by line as the run goes; the command holds the "
        "checkout lock (kiln._util.lock) before it opens it"
    ),
    "_release/bundle.py:write_project": f"the bundle's source tree, {_TEMP} (build_bundle)",
    "_release/tag.py:_write_record": "dist/release staged by replaced_folder",
    "_workspace/scaffold.py:_write": (
        "`kiln new`'s new files, opened with 'x': never over an existing file"
    ),
    "_wheels/wheelhouse.py:PipDownload.__call__": f"pip's requirements file, {_TEMP}",
    "_wheels/wheelhouse.py:PipDownload.fetch_file": (
        f"an sdist checked against its sha256, {_TEMP} (SdistBuilder)"
    ),
    "_wheels/wheelhouse.py:fetch_locked": f"the wheelhouse's completion mark, {_TEMP}",
    "_wheels/sdist_cache.py:SdistCache.store": f"the cache entry's record, {_TEMP}",
    "_wheels/build.py:_build_cached": f"the cache entry's record, {_TEMP}",
    "_wheels/build.py:_copy_hashing": "a .part file beside the wheel, then replaced",
    "_images/oci/cache.py:LayerCache.store": "the blob's temporary file, then replaced",
    "_workspace/bump.py:write_files": "each file's temporary file, then all replaced",
    "_util/cmd.py:spawn": "a server's own log, appended to while it runs",
    "_components/run.py:openable": (
        "a copy of a `kiln run` output with its type's extension, for a person to open"
    ),
    "_release/dev.py:copy_tree": f"the dev release's copy of the checkout, {_TEMP}",
    "_release/dev_release.py:release_dev": "dist/dev staged by replaced_folder",
    "_lock/make.py:make_lock": f"uv's input files, {_TEMP}",
    "_servers/registry.py:RegistryClient.download_blob.get": (
        "into the temporary file its callers give (temporary_beside), checked, then replaced"
    ),
    "_servers/supervision.py:StateFile.save": "state.json's temporary file (temporary_beside)",
    "_debian/archive.py:Mirrors.fetch_to": (
        "into the temporary file its callers give (temporary_beside), checked, then replaced"
    ),
    "_debian/archive.py:verify_release": f"gpgv's input, {_TEMP}",
    "_images/os_tree.py:extract": f"a copy of the OS tree to run its python3, {_TEMP}",
    "_images/oci/install.py:compile_bytecode": f"a .pyc compiled before, staged: {_TEMP}",
    "_images/oci/install.py:compile_files": f"sources for the compiler to read, {_TEMP}",
    "_images/oci/layer_files.py:LayerFiles.add": (
        "a layer's file past the memory budget, in its private folder, removed on close"
    ),
    "_images/oci/layer_files.py:LayerFiles.write_out": (
        "the files written out into a folder its caller gives (tests compare trees)"
    ),
    "_images/oci/rootfs.py:_write": f"an unpacked root file system, {_TEMP} (unpack_from)",
}


_SHUTIL_WRITES = ("copy", "copy2", "copyfile", "copytree", "move")


def _mode(call: ast.Call, position: int) -> str | None:
    """The mode string an ``open`` call gives (argument ``position`` or ``mode=``)."""
    given = call.args[position : position + 1]
    for arg in [*given, *(k.value for k in call.keywords if k.arg == "mode")]:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def _writes(call: ast.Call) -> bool:
    func = call.func
    receiver = (
        func.value.id
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
        else ""
    )
    if receiver == "tarfile":  # a tar written into a stream kiln opened itself
        return False
    if receiver == "shutil" and isinstance(func, ast.Attribute):
        return func.attr in _SHUTIL_WRITES
    if isinstance(func, ast.Attribute) and func.attr in ("write_text", "write_bytes"):
        return True
    if isinstance(func, ast.Attribute) and func.attr in ("open", "fdopen"):
        mode = _mode(call, 1 if func.attr == "fdopen" else 0)
    elif isinstance(func, ast.Name) and func.id == "open":
        mode = _mode(call, 1)
    else:
        return False
    return mode is not None and any(c in mode for c in "wax+")


def _in_place_writes(tree: ast.AST, module: str) -> Iterator[str]:
    """``module:function`` (``Class.method``) of every call writing a file in place."""

    def visit(node: ast.AST, scope: list[str]) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield from visit(child, [*scope, child.name])
                continue
            if isinstance(child, ast.Call) and _writes(child):
                yield f"{module}:{'.'.join(scope) or '<module>'}"
            yield from visit(child, scope)

    yield from visit(tree, [])


def _found() -> set[str]:
    found: set[str] = set()
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        found.update(_in_place_writes(ast.parse(path.read_text(), filename=str(path)), module))
    return found


def test_every_output_is_written_atomically_or_listed_with_a_reason() -> None:
    found = _found()
    assert sorted(found - set(ALLOWED)) == [], "write these through kiln._util.files"
    assert sorted(set(ALLOWED) - found) == [], "no longer written in place: unlist them"


def test_the_scan_finds_each_way_of_writing_in_place() -> None:
    snippet = (
        "def a(p):\n    p.write_text('x')\n"
        "def b(p):\n    p.write_bytes(b'x')\n"
        "class C:\n    def c(self, p):\n        with p.open('wb') as f: f.write(b'')\n"
        "def d(p):\n    open(p, mode='a')\n"
        "def e(fd):\n    os.fdopen(fd, 'w')\n"
        "def f(p):\n    p.open('rb'); open(p); p.read_text(); tarfile.open(fileobj=p, mode='w')\n"
        "def g(p, q):\n    shutil.copy2(p, q)\n"
    )
    assert sorted(_in_place_writes(ast.parse(snippet), "m.py")) == [
        "m.py:C.c", "m.py:a", "m.py:b", "m.py:d", "m.py:e", "m.py:g",
    ]  # fmt: skip


def _fails_midway(output: AbstractContextManager[T], write: Callable[[T], object]) -> None:
    """Write into ``output``, then fail as a full disk would."""
    with output as opened:
        write(opened)
        raise OSError(28, "disk full")


def test_an_atomic_write_killed_midway_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "x.yaml"
    write_atomic(target, b"old\n")
    target.chmod(0o640)

    with pytest.raises(OSError, match="disk full"):
        _fails_midway(atomic_output(target), lambda out: out.write(b"half"))
    assert target.read_bytes() == b"old\n"
    write_atomic(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert target.stat().st_mode & 0o777 == 0o640  # the file's mode is kept
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.yaml"]  # no leftovers

    folder = tmp_path / "release"
    with replaced_folder(folder) as staged:
        (staged / "a").write_text("1")
    with pytest.raises(OSError, match="disk full"):
        _fails_midway(replaced_folder(folder), lambda staged: (staged / "b").write_text("2"))
    assert sorted(p.name for p in folder.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "release"]
