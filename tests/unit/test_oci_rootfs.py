"""The base unpacked for its own interpreter: layers and whiteouts like an engine,
nothing written outside the folder, symlinks followed the way they are in the image."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.loader import (
    elf_interpreter,
    find_python,
    host_machine,
    library_dirs,
    loader_argv,
    resolve,
)
from kiln._images.oci.rootfs import unpack
from tests.oci_layers import D, F, H, S, layer


def test_layers_are_applied_in_order_with_whiteouts_and_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    lower = layer(
        tmp_path,
        "lower",
        ("usr", D, b"", ""),
        ("usr/lib", D, b"", ""),
        ("usr/lib/keep.so", F, b"keep", ""),
        ("usr/lib/gone.so", F, b"gone", ""),
        ("etc", D, b"", ""),
        ("etc/old", D, b"", ""),
        ("etc/old/a.conf", F, b"a", ""),
        ("lib", S, b"", "usr/lib"),
        ("evil", S, b"", str(outside)),
    )
    upper = layer(
        tmp_path,
        "upper",
        ("usr/lib/.wh.gone.so", F, b"", ""),
        ("etc/old/.wh..wh..opq", F, b"", ""),
        ("etc/old/b.conf", F, b"b", ""),
        ("usr/lib/hard.so", H, b"", "usr/lib/keep.so"),
        ("evil/planted", F, b"x", ""),  # through a symlink that leads out: not written
        ("../escape", F, b"x", ""),  # leaves the folder: not written
    )
    cache = LayerCache(tmp_path / "cache")
    root = unpack("sha256:" + "a" * 64, [lower, upper], cache)

    assert root == cache.root / "rootfs" / ("a" * 64)
    assert (root / "usr/lib/keep.so").read_bytes() == b"keep"
    assert not (root / "usr/lib/gone.so").exists()
    assert sorted(p.name for p in (root / "etc/old").iterdir()) == ["b.conf"]
    assert (root / "usr/lib/hard.so").read_bytes() == b"keep"
    assert str((root / "lib").readlink()) == "usr/lib"
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escape").exists()
    assert not (cache.root / "rootfs" / "escape").exists()
    # Unpacked once: a second call finds the folder.
    (root / "usr/lib/keep.so").write_bytes(b"marked")
    assert unpack("sha256:" + "a" * 64, [lower, upper], cache) == root
    assert (root / "usr/lib/keep.so").read_bytes() == b"marked"
    assert [p.name for p in (cache.root / "rootfs").iterdir()] == ["a" * 64]  # no leftovers


def test_what_the_base_s_python_never_reads_is_not_unpacked(tmp_path: Path) -> None:
    blob = layer(
        tmp_path,
        "docs",
        ("usr", D, b"", ""),
        ("usr/lib", D, b"", ""),
        ("usr/lib/python3.11", D, b"", ""),
        ("usr/lib/python3.11/os.py", F, b"# os", ""),
        ("usr/lib/python3.11/site-packages", D, b"", ""),
        ("usr/lib/python3.11/site-packages/pip.py", F, b"# pip", ""),
        ("usr/lib/python3/dist-packages/apt.py", F, b"# apt", ""),
        ("usr/share/doc/python3/README", F, b"docs", ""),
        ("usr/share/man/man1/python3.1", F, b"man", ""),
        ("usr/share/python3/debian_defaults", F, b"kept", ""),
        ("usr/share/documents", F, b"kept too", ""),
        ("var/lib/dpkg/status", F, b"dpkg", ""),
        ("etc/localtime", S, b"", "/usr/share/zoneinfo/Etc/UTC"),
    )
    root = unpack("sha256:" + "b" * 64, [blob], LayerCache(tmp_path / "cache"))

    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())
    assert files == [
        "etc/localtime",
        "usr/lib/python3.11/os.py",
        "usr/share/documents",
        "usr/share/python3/debian_defaults",
    ]
    assert not (root / "usr/lib/python3.11/site-packages").exists()
    assert not (root / "usr/share/doc").exists()


def test_symlinks_resolve_inside_the_image(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_bytes(b"loader")
    (root / "usr/lib64").mkdir()
    (root / "lib").symlink_to("usr/lib")
    # Debian's own absolute link: in the image it means /lib/..., not the build machine's.
    (root / "usr/lib64/ld.so").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    (root / "loop").symlink_to("loop")

    assert (
        resolve(root, "/usr/lib64/ld.so") == root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    )
    assert (
        resolve(root, "/lib/x86_64-linux-gnu/../x86_64-linux-gnu")
        == root / "usr/lib/x86_64-linux-gnu"
    )
    assert resolve(root, "/usr/bin/python3") is None
    assert resolve(root, "/loop") is None


def test_the_loader_folders_come_from_the_image_s_ld_so_conf(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "ld.so.conf.d"
    conf.mkdir(parents=True)
    (tmp_path / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n/opt/lib # own\n")
    (conf / "b.conf").write_text("# multiarch\n/usr/lib/x86_64-linux-gnu\n")
    (conf / "a.conf").write_text("/usr/local/lib\n")
    assert library_dirs(tmp_path) == [
        "/usr/local/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/opt/lib",
        "/lib",
        "/usr/lib",
        "/lib64",
        "/usr/lib64",
    ]


def test_python3_is_found_on_the_image_s_path(tmp_path: Path) -> None:
    (tmp_path / "usr/local/bin").mkdir(parents=True)
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/python3.11").write_bytes(b"")
    (tmp_path / "usr/bin/python3").symlink_to("python3.11")
    assert find_python(tmp_path, {"PATH": "/usr/local/bin:/usr/bin"}) == "/usr/bin/python3"
    with pytest.raises(ConfigError, match="no python3 on the base image's PATH"):
        find_python(tmp_path, {"PATH": "/usr/local/bin"})


def test_the_elf_loader_is_read_from_the_executable() -> None:
    machine, interp = elf_interpreter(Path(os.path.realpath(sys.executable)))
    assert machine == host_machine()
    assert interp is None or Path(interp).name.startswith("ld-")


def _elf(path: Path, machine: int) -> None:
    head = bytearray(64)
    head[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<H", head, 18, machine)
    struct.pack_into("<Q", head, 32, 64)
    struct.pack_into("<HH", head, 54, 56, 0)
    path.write_bytes(bytes(head))


def test_a_base_for_another_architecture_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    other = 62 if host_machine() == "aarch64" else 183
    _elf(tmp_path / "usr/bin/python3", other)
    with pytest.raises(ConfigError) as err:
        loader_argv(tmp_path, "/usr/bin/python3", "base image x")
    assert "kiln compiles the image's bytecode with the base's own" in str(err.value)
    (tmp_path / "usr/bin/python3").write_bytes(b"#!/bin/sh\n")
    with pytest.raises(ConfigError, match="is not an ELF executable"):
        loader_argv(tmp_path, "/usr/bin/python3", "base image x")
