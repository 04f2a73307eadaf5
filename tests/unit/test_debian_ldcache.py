"""/etc/ld.so.cache written in code: SONAMEs read from ELF headers, the folders ld.so.conf
names, ldconfig's entry order and file format, read back by a small reader here."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest

from kiln._debian.elf import program_interpreter
from kiln._debian.ldcache import ld_so_cache, soname
from kiln._debian.tree import DIR, FILE, SYMLINK, Entry, parents
from kiln._errors import ConfigError

X86_64, AARCH64, I386 = 62, 183, 3
X86_LIBC6 = 0x303
AARCH64_LIBC6 = 0xA03
GNU = "usr/lib/x86_64-linux-gnu"
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_GNU_PROPERTY = 1, 2, 3, 0x6474E553
DT_NEEDED, DT_STRTAB, DT_SONAME = 1, 5, 14
BASE = 0x10000  # the shared object's load address: the string table is found through PT_LOAD
GENERATOR = b"ldconfig (Debian GLIBC 2.36-9+deb12u14) stable release version 2.36"


def elf(
    name: str | None,
    *,
    bits: int = 64,
    order: str = "<",
    machine: int = X86_64,
    etype: int = 3,
    needed: tuple[str, ...] = (),
    interp: str | None = None,
    isa_needed: int | None = None,
) -> bytes:
    """A minimal ELF file: its header, PT_LOAD over the whole file, PT_DYNAMIC (DT_NEEDED,
    DT_SONAME, DT_STRTAB), and optionally PT_INTERP and an x86 ISA-level PT_GNU_PROPERTY."""
    wide = bits == 64
    word = "Q" if wide else "I"
    ehsize, phsize, dynsize = (64, 56, 16) if wide else (52, 32, 8)
    strtab = b"\0"
    offsets: dict[str, int] = {}
    for text in (*needed, *([name] if name is not None else [])):
        offsets[text] = len(strtab)
        strtab += text.encode() + b"\0"
    dyn = [(DT_NEEDED, offsets[n]) for n in needed]
    if name is not None:
        dyn.append((DT_SONAME, offsets[name]))
    extras: list[tuple[int, bytes, int]] = []  # (p_type, content, p_align)
    if interp is not None:
        extras.append((PT_INTERP, interp.encode() + b"\0", 1))
    if isa_needed is not None:
        prop = struct.pack(order + "III", 0xC0008002, 4, isa_needed) + b"\0" * (bits // 8 - 4)
        note = struct.pack(order + "III", 4, len(prop), 5) + b"GNU\0" + prop
        extras.append((PT_GNU_PROPERTY, note, bits // 8))
    phnum = 2 + len(extras)
    at = ehsize + phnum * phsize
    dyn_at = at + sum(-(-len(c) // 8) * 8 for _, c, _ in extras)
    str_at = dyn_at + (len(dyn) + 3) * dynsize  # with DT_STRTAB, DT_NULL and a spare slot
    dyn.append((DT_STRTAB, BASE + str_at))
    size = str_at + len(strtab)
    ident = b"\x7fELF" + bytes((1 if not wide else 2, 1 if order == "<" else 2, 1)) + bytes(9)
    header = ident + struct.pack(
        order + ("HHI" + word * 3 + "IHHHHHH"),
        *(etype, machine, 1, 0, ehsize, 0, 0, ehsize, phsize, phnum, 0, 0, 0),
    )

    def phdr(kind: int, offset: int, vaddr: int, filesz: int, align: int) -> bytes:
        if wide:
            return struct.pack(
                order + "IIQQQQQQ", kind, 4, offset, vaddr, vaddr, filesz, filesz, align
            )
        return struct.pack(order + "IIIIIIII", kind, offset, vaddr, vaddr, filesz, filesz, 4, align)

    phdrs = phdr(PT_LOAD, 0, BASE, size, 0x1000) + phdr(
        PT_DYNAMIC, dyn_at, BASE + dyn_at, (len(dyn) + 1) * dynsize, 8
    )
    body = b""
    for kind, content, align in extras:
        phdrs += phdr(kind, at + len(body), BASE + at + len(body), len(content), align)
        body += content + b"\0" * (-len(content) % 8)
    dynamic = b"".join(
        struct.pack(order + ("q" if wide else "i") + word, tag, val) for tag, val in dyn
    )
    dynamic += bytes(dynsize * 2)  # DT_NULL, then a spare slot
    return header + phdrs + body + dynamic + strtab


# ------------------------------------------------------------------ trees


class Tree(dict[str, Entry]):
    """A layer's tree, merged /usr, built up by the tests."""

    def __init__(self, machine: int = X86_64) -> None:
        super().__init__()
        for top in ("bin", "sbin", "lib", "lib64"):
            self.link(top, f"usr/{top}")
        ldconfig = elf(None, machine=machine, etype=2) + b"\0" + GENERATOR + b"\0"
        self.file("usr/sbin/ldconfig", ldconfig)

    def add(self, entry: Entry) -> Tree:
        for parent in parents(entry.path):
            self.setdefault(parent, Entry(parent, DIR, 0o755))
        self[entry.path] = entry
        return self

    def file(self, path: str, data: bytes) -> Tree:
        return self.add(Entry(path, FILE, 0o644, data=data))

    def link(self, path: str, target: str) -> Tree:
        return self.add(Entry(path, SYMLINK, 0o777, target=target))

    def folder(self, path: str) -> Tree:
        return self.add(Entry(path, DIR, 0o755))

    def debian_conf(self, triplet: str = "x86_64-linux-gnu") -> Tree:
        self.file("etc/ld.so.conf", b"include /etc/ld.so.conf.d/*.conf\n\n")
        self.file("etc/ld.so.conf.d/libc.conf", b"# libc default configuration\n/usr/local/lib\n")
        lines = (
            f"# Multiarch support\n/usr/local/lib/{triplet}\n/lib/{triplet}\n/usr/lib/{triplet}\n"
        )
        return self.file(f"etc/ld.so.conf.d/{triplet}.conf", lines.encode())


# ------------------------------------------------------------------ reading a cache back


@dataclass(frozen=True)
class Lib:
    key: str
    value: str
    flags: int
    hwcap: int


@dataclass(frozen=True)
class Cache:
    libs: list[Lib]
    extension: dict[int, bytes]  # tag -> section bytes


def cstr(data: bytes, offset: int) -> str:
    return data[offset : data.index(b"\0", offset)].decode()


def read_cache(data: bytes) -> Cache:
    """The new-format cache as glibc's loader reads it."""
    magic, nlibs, len_strings, flags, ext_at = struct.unpack_from("<20sIIB3xI12x", data)
    assert magic == b"glibc-ld.so.cache1.1"
    assert flags == 2  # little-endian
    strings_at = 48 + 24 * nlibs
    if ext_at:
        assert ext_at % 4 == 0
        assert ext_at >= strings_at + len_strings
    else:
        assert len(data) == strings_at + len_strings
    libs = []
    for i in range(nlibs):
        flag, key, value, osversion, hwcap = struct.unpack_from("<iIIIQ", data, 48 + 24 * i)
        assert osversion == 0
        assert strings_at <= key < strings_at + len_strings
        libs.append(Lib(cstr(data, key), cstr(data, value), flag, hwcap))
    extension = {}
    if ext_at:
        ext_magic, count = struct.unpack_from("<II", data, ext_at)
        assert ext_magic == 0xEAA42174
        for i in range(count):
            tag, _, offset, size = struct.unpack_from("<IIII", data, ext_at + 8 + 16 * i)
            assert offset + size <= len(data)
            extension[tag] = data[offset : offset + size]
    return Cache(libs, extension)


def listing(tree: Tree) -> list[tuple[str, str]]:
    return [(lib.key, lib.value) for lib in read_cache(ld_so_cache(tree)).libs]


# ------------------------------------------------------------------ soname


@pytest.mark.parametrize(("bits", "order"), [(64, "<"), (32, "<"), (64, ">"), (32, ">")])
def test_soname_reads_either_class_and_byte_order(bits: int, order: str) -> None:
    data = elf("libfoo.so.1", bits=bits, order=order, needed=("libc.so.6",))
    assert soname(data) == "libfoo.so.1"


def test_soname_is_none_without_one_or_for_other_files() -> None:
    assert soname(elf(None, needed=("libc.so.6",))) is None
    assert soname(elf("libfoo.so.1", etype=2)) is None  # an executable
    assert soname(b"/* GNU ld script */\nGROUP ( /lib/libc.so.6 )\n") is None
    assert soname(b"") is None
    assert soname(b"\x7fELF") is None


def test_soname_of_a_truncated_file_is_none() -> None:
    data = elf("libfoo.so.1")
    assert soname(data[: len(data) - 20]) is None  # the string table cut off
    assert soname(data[:100]) is None  # the program headers cut off


@pytest.mark.parametrize(("bits", "order"), [(64, "<"), (32, "<"), (64, ">")])
def test_the_program_interpreter_is_read_with_the_machine(bits: int, order: str) -> None:
    # What kiln starts an image's python3 through (kiln._images.oci.loader).
    data = elf(None, bits=bits, order=order, machine=AARCH64, interp="/lib/ld-linux-aarch64.so.1")
    assert program_interpreter(data) == (AARCH64, "/lib/ld-linux-aarch64.so.1")
    assert program_interpreter(elf("libfoo.so.1")) == (X86_64, None)  # no PT_INTERP


def test_the_program_interpreter_of_another_file_is_a_value_error() -> None:
    for data in (b"#!/bin/sh\n", b"\x7fELF", elf(None, interp="/lib/ld.so")[:80]):
        with pytest.raises(ValueError, match="ELF file"):
            program_interpreter(data)


# ------------------------------------------------------------------ the cache


def test_debian_layout_lists_each_library_once_by_its_soname_link() -> None:
    tree = Tree().debian_conf()
    tree.file(f"{GNU}/libc.so.6", elf("libc.so.6", needed=("ld-linux-x86-64.so.2",)))
    tree.file(f"{GNU}/libz.so.1.2.13", elf("libz.so.1", needed=("libc.so.6",)))
    tree.link(f"{GNU}/libz.so.1", "libz.so.1.2.13")
    tree.file(f"{GNU}/libc.so", b"/* GNU ld script */\nGROUP ( libc.so.6 )\n")  # skipped
    tree.link(f"{GNU}/libgone.so.1", "libgone.so.1.0")  # dangling: skipped
    cache = read_cache(ld_so_cache(tree))
    # /lib/x86_64-linux-gnu and /usr/lib/x86_64-linux-gnu are one folder: the first name wins
    assert [(lib.key, lib.value, lib.flags, lib.hwcap) for lib in cache.libs] == [
        ("libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", X86_LIBC6, 0),
        ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", X86_LIBC6, 0),
    ]
    assert cache.extension == {0: GENERATOR}


def test_entries_sort_descending_with_digit_runs_compared_as_numbers() -> None:
    tree = Tree().debian_conf()
    for name in ("libfoo.so.9", "libfoo.so.10", "libfoo.so.2", "libfoo-9.so", "libfoo9a.so.1"):
        tree.file(f"{GNU}/{name}", elf(name))
    keys = [key for key, _ in listing(tree)]
    # byte order would put libfoo.so.9 before libfoo.so.10; a digit run beats any other byte
    assert keys == ["libfoo9a.so.1", "libfoo.so.10", "libfoo.so.9", "libfoo.so.2", "libfoo-9.so"]


def test_one_soname_in_two_folders_follows_the_folder_order() -> None:
    tree = Tree().debian_conf()
    tree.file("usr/local/lib/libbar.so.1", elf("libbar.so.1"))
    tree.file(f"{GNU}/libbar.so.1", elf("libbar.so.1"))
    tree.file("usr/lib/libbar.so.1", elf("libbar.so.1"))  # /lib, a built-in folder
    assert listing(tree) == [
        ("libbar.so.1", "/usr/local/lib/libbar.so.1"),
        ("libbar.so.1", "/lib/x86_64-linux-gnu/libbar.so.1"),
        ("libbar.so.1", "/lib/libbar.so.1"),
    ]


def test_links_count_by_their_names() -> None:
    tree = Tree().debian_conf()
    tree.file(f"{GNU}/libfoo.so.1.2.3", elf("libfoo.so.1"))
    tree.link(f"{GNU}/libfoo.so", "libfoo.so.1.2.3")  # the dev link: an entry of its own
    tree.link(f"{GNU}/libfoo-compat.so.1", "libfoo.so.1.2.3")  # another name: a copy of the file
    tree.link(f"{GNU}/libbar.so.1", "/usr/local/lib/libbar-impl.so")  # absolute, elsewhere
    tree.file("usr/local/lib/libbar-impl.so", elf("libbar.so.1"))
    assert listing(tree) == [
        ("libfoo.so.1", "/lib/x86_64-linux-gnu/libfoo.so.1"),  # the SONAME, though not a file
        ("libfoo.so", "/lib/x86_64-linux-gnu/libfoo.so"),
        ("libbar.so.1", "/usr/local/lib/libbar.so.1"),
        ("libbar.so.1", "/lib/x86_64-linux-gnu/libbar.so.1"),
    ]


def test_a_library_without_soname_is_cached_by_its_file_name() -> None:
    tree = Tree().debian_conf()
    tree.file(f"{GNU}/libplugin.so", elf(None, needed=("libc.so.6",)))
    assert listing(tree) == [("libplugin.so", "/lib/x86_64-linux-gnu/libplugin.so")]


def test_ld_so_conf_includes_are_globbed_sorted_and_relative_to_the_file() -> None:
    tree = Tree()
    tree.file("etc/ld.so.conf", b"  include ld.so.conf.d/*.conf /opt/extra.conf # both\n/opt/c\n")
    tree.file("etc/ld.so.conf.d/b.conf", b"/opt/b/\n")
    tree.file("etc/ld.so.conf.d/a.conf", b"/opt/a   \n/opt/missing\n")
    tree.file("etc/ld.so.conf.d/.hidden.conf", b"/opt/hidden\n")
    tree.file("etc/ld.so.conf.d/a.conf.orig", b"/opt/orig\n")
    tree.file("opt/extra.conf", b"/opt/d=libc6\n")
    for folder in "abcd":
        tree.file(f"opt/{folder}/libx.so.1", elf("libx.so.1"))
    tree.file("opt/hidden/libx.so.1", elf("libx.so.1"))
    tree.file("opt/orig/libx.so.1", elf("libx.so.1"))
    assert [value for _, value in listing(tree)] == [
        "/opt/a/libx.so.1",
        "/opt/b/libx.so.1",
        "/opt/d/libx.so.1",
        "/opt/c/libx.so.1",
    ]


def test_without_ld_so_conf_the_built_in_folders_are_searched() -> None:
    tree = Tree()
    tree.file(f"{GNU}/libz.so.1", elf("libz.so.1"))
    tree.file("usr/local/lib/libnot.so.1", elf("libnot.so.1"))  # only ld.so.conf names it
    assert listing(tree) == [("libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1")]


def test_aarch64_tree_gets_aarch64_flags_and_folders() -> None:
    tree = Tree(machine=AARCH64).debian_conf("aarch64-linux-gnu")
    gnu = "usr/lib/aarch64-linux-gnu"
    tree.file(f"{gnu}/libc.so.6", elf("libc.so.6", machine=AARCH64))
    tree.file(f"{gnu}/ld-linux-aarch64.so.1", elf("ld-linux-aarch64.so.1", machine=AARCH64))
    tree.link("usr/lib/ld-linux-aarch64.so.1", "aarch64-linux-gnu/ld-linux-aarch64.so.1")
    tree.file(f"{GNU}/libz.so.1", elf("libz.so.1"))  # another triplet: not searched
    assert [(lib.key, lib.value, lib.flags) for lib in read_cache(ld_so_cache(tree)).libs] == [
        ("libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", AARCH64_LIBC6),
        ("ld-linux-aarch64.so.1", "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1", AARCH64_LIBC6),
        ("ld-linux-aarch64.so.1", "/lib/ld-linux-aarch64.so.1", AARCH64_LIBC6),
    ]


def test_i386_libraries_are_libc6_when_they_link_libc_or_its_folder_says_so() -> None:
    tree = Tree().file("etc/ld.so.conf", b"/opt/i386=libc6\n")

    def i386(name: str, needed: tuple[str, ...] = (), interp: str | None = None) -> bytes:
        return elf(name, bits=32, machine=I386, needed=needed, interp=interp)

    tree.file("usr/lib/libold.so.1", i386("libold.so.1", needed=("libc.so.6",)))
    tree.file("usr/lib/libint.so.1", i386("libint.so.1", interp="/lib/ld-linux.so.2"))
    tree.file("usr/lib/libbare.so.1", i386("libbare.so.1"))
    tree.file("opt/i386/libtyped.so.1", i386("libtyped.so.1"))
    tree.file(f"{GNU}/libold.so.1", elf("libold.so.1"))
    cache = read_cache(ld_so_cache(tree))
    assert [(lib.key, lib.value, lib.flags) for lib in cache.libs] == [
        ("libtyped.so.1", "/opt/i386/libtyped.so.1", 3),
        ("libold.so.1", "/lib/x86_64-linux-gnu/libold.so.1", X86_LIBC6),  # higher flags first
        ("libold.so.1", "/lib/libold.so.1", 3),
        ("libint.so.1", "/lib/libint.so.1", 3),
        ("libbare.so.1", "/lib/libbare.so.1", 1),  # "ELF" in ldconfig -p
    ]


def test_glibc_hwcaps_subfolders_come_first_with_their_isa_level() -> None:
    tree = Tree().debian_conf()
    tree.file(f"{GNU}/libm.so.6", elf("libm.so.6"))
    tree.file(f"{GNU}/glibc-hwcaps/x86-64-v3/libm.so.6", elf("libm.so.6", isa_needed=0b1000))
    tree.file(f"{GNU}/glibc-hwcaps/x86-64-v2/libm.so.6", elf("libm.so.6"))
    tree.folder(f"{GNU}/glibc-hwcaps/x86-64-v4")  # empty: no index of its own
    data = ld_so_cache(tree)
    cache = read_cache(data)
    names = [cstr(data, offset) for (offset,) in struct.iter_unpack("<I", cache.extension[1])]
    assert names == ["x86-64-v2", "x86-64-v3"]
    extension = 1 << 62
    assert [(lib.value, lib.hwcap) for lib in cache.libs] == [
        ("/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v2/libm.so.6", extension | 0),
        ("/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libm.so.6", extension | 3 << 32 | 1),
        ("/lib/x86_64-linux-gnu/libm.so.6", 0),
    ]
    assert cache.extension[0] == GENERATOR


def test_legacy_hwcap_subfolders_carry_their_bits() -> None:
    tree = Tree()
    tree.file(f"{GNU}/libq.so.1", elf("libq.so.1"))
    tree.file(f"{GNU}/haswell/libq.so.1", elf("libq.so.1"))
    tree.file(f"{GNU}/tls/libq.so.1", elf("libq.so.1"))
    tree.file(f"{GNU}/other/libq.so.1", elf("libq.so.1"))  # not a hwcap name: not searched
    cache = read_cache(ld_so_cache(tree))
    assert [(lib.value, lib.hwcap) for lib in cache.libs] == [
        ("/lib/x86_64-linux-gnu/tls/libq.so.1", 1 << 63),
        ("/lib/x86_64-linux-gnu/haswell/libq.so.1", 1 << 50),
        ("/lib/x86_64-linux-gnu/libq.so.1", 0),
    ]


def test_strings_are_shared_by_tail_and_the_generator_is_left_out_without_ldconfig() -> None:
    tree = Tree()
    del tree["usr/sbin/ldconfig"]
    tree.file(f"{GNU}/ld-linux-x86-64.so.2", elf("ld-linux-x86-64.so.2"))
    tree.link("usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    data = ld_so_cache(tree)
    _, nlibs, len_strings, _, ext_at = struct.unpack_from("<20sIIB3xI12x", data)
    assert (nlibs, ext_at) == (1, 0)
    # the key is the tail of the value: one string holds both
    assert data[48 + 24 :] == b"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\0"
    assert len_strings == len(data) - 48 - 24
    assert read_cache(data).libs == [
        Lib("ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", X86_LIBC6, 0)
    ]


def test_an_empty_tree_still_needs_an_architecture() -> None:
    with pytest.raises(ConfigError, match="/sbin/ldconfig"):
        ld_so_cache({})
    riscv = Tree(machine=243)
    with pytest.raises(ConfigError, match="machine 243"):
        ld_so_cache(riscv)


def test_a_cache_with_no_libraries_is_valid() -> None:
    cache = read_cache(ld_so_cache(Tree()))
    assert cache.libs == []
    assert cache.extension == {0: GENERATOR}


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "libbroken.so.1",
            b"this is not a library, and no linker script either" * 2,
            "neither an ELF",
        ),
        ("libempty.so.1", b"", "empty"),
        ("libshort.so.1", b"\x7fELF\x02", "too small"),
        ("libarm.so.1", elf("libarm.so.1", machine=AARCH64), "ELF machine 183"),
        ("libcut.so.1", elf("libcut.so.1")[:200], "truncated"),
    ],
)
def test_files_ldconfig_complains_about_name_their_path(
    name: str, data: bytes, message: str
) -> None:
    tree = Tree().file(f"{GNU}/{name}", data)
    with pytest.raises(ConfigError, match=message) as caught:
        ld_so_cache(tree)
    assert f"/lib/x86_64-linux-gnu/{name}" in str(caught.value)


def test_an_include_loop_is_an_error_naming_the_file() -> None:
    tree = Tree()
    tree.file("etc/ld.so.conf", b"include /etc/ld.so.conf.d/*.conf\n")
    tree.file("etc/ld.so.conf.d/loop.conf", b"include /etc/ld.so.conf\n")
    with pytest.raises(ConfigError, match=r"/etc/ld.so.conf includes itself"):
        ld_so_cache(tree)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (b"/usr/lib=libc7\n", r"/etc/ld.so.conf:1: 'libc7' is not a library type"),
        (b"# old\nhwcap 1 tls\n", r"/etc/ld.so.conf:2: .* `hwcap` lines"),
    ],
)
def test_lines_ldconfig_complains_about_name_the_line(conf: bytes, message: str) -> None:
    tree = Tree().file("etc/ld.so.conf", conf)
    with pytest.raises(ConfigError, match=message):
        ld_so_cache(tree)


def test_a_library_name_linking_to_a_folder_is_an_error() -> None:
    tree = Tree().link(f"{GNU}/libdir.so.1", "../")
    with pytest.raises(ConfigError, match=r"/lib/x86_64-linux-gnu/libdir.so.1 links to a folder"):
        ld_so_cache(tree)


def test_the_cache_does_not_depend_on_insertion_order() -> None:
    tree = Tree().debian_conf()
    for i in range(30):
        tree.file(f"{GNU}/libn{i}.so.{i % 7}", elf(f"libn{i}.so.{i % 7}"))
    shuffled = {path: tree[path] for path in sorted(tree, reverse=True)}
    assert ld_so_cache(shuffled) == ld_so_cache(tree)
    assert len(read_cache(ld_so_cache(tree)).libs) == 30


# The bytes glibc 2.36's ldconfig (Debian 2.36-9+deb12u14) wrote, with `ldconfig -X -i -r ROOT`,
# for the tree below unpacked to ROOT.
LDCONFIG_WROTE = bytes.fromhex(
    "676c6962632d6c642e736f2e6361636865312e31060000003d01000002000000000200000000000000000000"
    "0000000003030000f3010000c601000000000000000000000000004003030000f3010000a601000000000000"
    "0000000000000000030300007e01000058010000000000000000000000000040030300007e01000021010000"
    "000000000000000000000040030300007e010000ea000000000000000100000003000040030300007e010000"
    "ca0000000000000000000000000000007a7a2d756e75736564002f6c69622f7838365f36342d6c696e75782d"
    "676e752f6c69626d2e736f2e36002f6c69622f7838365f36342d6c696e75782d676e752f676c6962632d6877"
    "636170732f7838362d36342d76332f6c69626d2e736f2e36002f6c69622f7838365f36342d6c696e75782d67"
    "6e752f676c6962632d6877636170732f7838362d36342d76322f6c69626d2e736f2e36002f7573722f6c6f63"
    "616c2f6c69622f676c6962632d6877636170732f7838362d36342d76322f6c69626d2e736f2e36007838362d"
    "36342d7634007838362d36342d7633007838362d36342d7632002f6c69622f7838365f36342d6c696e75782d"
    "676e752f6c6962712e736f2e31002f6c69622f7838365f36342d6c696e75782d676e752f676c6962632d6877"
    "636170732f7838362d36342d76322f6c6962712e736f2e31000000007421a4ea020000000000000000000000"
    "3002000043000000010000000000000028020000080000009c010000920100006c64636f6e66696720284465"
    "6269616e20474c49424320322e33362d392b64656231327531342920737461626c652072656c656173652076"
    "657273696f6e20322e3336"
)


def test_bytes_equal_what_ldconfig_wrote_for_the_same_tree() -> None:
    tree = Tree().debian_conf()
    hwcaps = f"{GNU}/glibc-hwcaps"
    tree.file(f"{GNU}/libm.so.6", elf("libm.so.6"))
    tree.file(f"{hwcaps}/x86-64-v3/libm.so.6", elf("libm.so.6", isa_needed=0b1000))
    tree.file(f"{hwcaps}/x86-64-v3/libm-real.so.6", elf("libm.so.6", isa_needed=0b100))
    tree.file(f"{hwcaps}/x86-64-v2/libm.so.6", elf("libm.so.6"))
    tree.link(f"{hwcaps}/x86-64-v2/libq.so.1", "../../libq.so.1")
    tree.file(f"{GNU}/libq.so.1", elf("libq.so.1"))
    tree.folder(f"{hwcaps}/x86-64-v4")
    tree.folder(f"{hwcaps}/zz-unused")
    tree.file("usr/local/lib/glibc-hwcaps/x86-64-v2/libm.so.6", elf("libm.so.6"))
    assert ld_so_cache(tree) == LDCONFIG_WROTE
