"""The OS layer's tree: written from ``.deb`` files, its standard library compiled by a
Python that runs here, stored as a layer blob and read back (``kiln._images.os_layers``
finds and checks the blobs)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import platform
import stat
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from kiln._debian.deb import Deb
from kiln._debian.layer import (
    Release,
    TreeBuilder,
    add_bytecode,
    add_ld_cache,
    add_packages,
    add_system,
    write_tree,
)
from kiln._debian.tree import DIR, FILE, SYMLINK, Entry, normalize
from kiln._images.oci.cache import Blob, LayerCache
from kiln._images.oci.compress import GZIP, BlobWriter, Written
from kiln._images.oci.install import compile_bytecode
from kiln._images.oci.interpreter import FolderPython
from kiln._images.oci.pyc_memo import PYCS, PycMemo, pyc_key
from kiln._images.oci.rootfs import needed
from kiln._util.paths import stays_inside

WORK_PREFIX = "kiln-os-"  # the copies of OS trees its standard library is compiled in


def extract(tree: Mapping[str, Entry], root: Path) -> None:
    """Write what the image's python3 reads of ``tree`` under ``root`` (folders first).
    Nothing is written through a link: a path whose folder leads out of ``root`` (a link
    to an absolute path, as ``usr/lib/ssl/certs`` is) is left out."""
    top = os.path.realpath(root)
    for path in sorted(tree, key=lambda p: p.split("/")):
        entry = tree[path]
        if not needed(path):
            continue
        target = root / path
        if not stays_inside(target.parent, top):
            continue
        if entry.kind == DIR:
            target.mkdir(parents=True, exist_ok=True)
        elif entry.kind == SYMLINK:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(entry.target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(entry.data)
            target.chmod((entry.mode & 0o777) | stat.S_IRUSR | stat.S_IWUSR)


def read_layer(blob: Blob) -> dict[str, Entry]:
    """A layer blob's entries (what an extras layer is checked against)."""
    entries = {}
    with gzip.open(blob.path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            path = normalize(member.name)
            if not path:
                continue
            if member.isdir():
                entry = Entry(path, DIR, member.mode, uid=member.uid, gid=member.gid)
            elif member.issym():
                entry = Entry(path, SYMLINK, 0o777, target=member.linkname)
            else:
                extracted = tar.extractfile(member)
                data = extracted.read() if extracted is not None else b""
                entry = Entry(path, FILE, member.mode, data=data, uid=member.uid, gid=member.gid)
            entries[path] = dataclasses.replace(entry, owner="the OS layer")
    return entries


def host_architecture() -> str:
    """The Debian architecture whose programs run on this machine."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )


def _cache_tag(python: str) -> str:
    return "cpython-" + python.replace(".", "")


def _identity(tree: Mapping[str, Entry], python: str) -> str | None:
    """The identity of the tree's ``python3`` (None: no such file): its version and the
    sha256 of its bytes, which hold the compiler (Debian links libpython in)."""
    entry = tree.get(f"usr/bin/python{python}")
    if entry is None or entry.kind != FILE:
        return None
    return f"OS python {python} sha256:{hashlib.sha256(entry.data).hexdigest()}"


def compile_with_own_python(
    tree: Mapping[str, Entry],
    sources: Sequence[str],
    *,
    python: str,
    work: Path,
    compiler: Mapping[str, Entry] | None = None,
    memo: PycMemo | None = PYCS,
    compiler_root: Callable[[], Path] | None = None,
) -> dict[str, bytes]:
    """``.pyc`` bytes (image path -> bytes) of ``sources``, compiled by the tree's own
    ``python3`` (or ``compiler``'s, another tree) run from a copy of it under ``work``
    (or, for ``compiler``, from the folder ``compiler_root()`` gives, where that tree is
    unpacked already); those ``memo`` holds (the standard library compiled for another
    architecture's layer: the same sources, the same compiling python3) without writing
    either tree."""
    tag = _cache_tag(python)
    identity = _identity(compiler or tree, python)
    memo = memo if identity is not None else None
    out = {}
    missing = []
    for source in sources:
        folder, name = source.rsplit("/", 1)
        pyc_path = f"{folder}/__pycache__/{name[:-3]}.{tag}.pyc"
        entry = tree.get(source)
        found = None
        if memo is not None and identity is not None and entry is not None:
            found = memo.get(pyc_key(identity, tag, f"/{source}", entry.data))
        if found is None:
            missing.append(source)
        else:
            out[pyc_path] = found
    if not missing:
        return out
    with (
        tempfile.TemporaryDirectory(prefix=WORK_PREFIX, dir=work) as tmp,
        tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}py-", dir=work) as py_tmp,
    ):
        root = Path(tmp)
        python_root = root
        if compiler is None:
            extract(tree, root)  # its own python3 runs from it
        else:
            if compiler_root is None:
                python_root = Path(py_tmp)
                extract(compiler, python_root)
            else:
                python_root = compiler_root()
            extract({s: tree[s] for s in missing}, root)  # the sources alone
        interpreter = FolderPython(
            python_root, f"/usr/bin/python{python}", identity or f"OS python {python}"
        )
        compiled = compile_bytecode(root, [f"/{s}" for s in missing], tag, interpreter, memo)
        for image_path in compiled:
            folder, name = image_path.lstrip("/").rsplit("/", 1)
            pyc = f"{folder}/__pycache__/{name[:-3]}.{tag}.pyc"
            out[pyc] = (root / pyc).read_bytes()
    return out


def os_tree(
    debs: Sequence[Deb],
    release: Release,
    *,
    work: Path,
    compiler: Mapping[str, Entry] | None = None,
    compiler_root: Callable[[], Path] | None = None,
) -> tuple[dict[str, Entry], str]:
    """The shared OS layer's entries, and the Python version it installs; its standard
    library compiled by its own ``python3``, or by that of the tree ``compiler`` (an OS
    tree of this machine's architecture, when the layer is for another)."""
    builder = TreeBuilder()
    add_packages(builder, debs)
    python = add_system(builder, release)

    def compile_tree(tree: Mapping[str, Entry], sources: Sequence[str]) -> Mapping[str, bytes]:
        return compile_with_own_python(
            tree, sources, python=python, work=work, compiler=compiler, compiler_root=compiler_root
        )

    add_bytecode(builder, python, compile_tree)
    add_ld_cache(builder)
    return builder.entries, python


def extras_tree(debs: Sequence[Deb], below: Mapping[str, Entry]) -> dict[str, Entry]:
    """An image's extras layer: its packages' files over the OS layer ``below``, and an
    ``ld.so.cache`` that knows the libraries of both."""
    builder = TreeBuilder(below)
    add_packages(builder, debs)
    add_ld_cache(builder)
    return builder.entries


def store_tree(entries: Mapping[str, Entry], cache: LayerCache) -> Blob:
    """``entries`` as a layer blob in ``cache`` (kiln's pinned gzip)."""

    def write(out: BinaryIO) -> Written:
        writer = BlobWriter(out, GZIP)
        write_tree(entries.values(), writer)  # type: ignore[arg-type]  # tarfile's file
        return writer.finish()

    return cache.store(write, GZIP)
