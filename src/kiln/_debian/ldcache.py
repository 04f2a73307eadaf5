"""``/etc/ld.so.cache`` for an OS layer, written in code as glibc 2.36's ``ldconfig`` writes it.

Nothing runs inside the image (it may be for another architecture), so this module does
what Debian bookworm's ``ldconfig -X`` does: it reads ``/etc/ld.so.conf`` and the files
it includes, adds the folders built into ldconfig, scans each folder (and its
``glibc-hwcaps`` and legacy hwcap subfolders) for shared objects, reads their
``DT_SONAME`` and ELF flags, and writes the new cache format (``glibc-ld.so.cache1.1``)
with ldconfig's entry order, string table and extension directory. The architecture is
that of the tree's ``/sbin/ldconfig`` (or, without one, its dynamic loader); the
generator string is copied from that ldconfig when it carries one, so for a tree of
Debian packages the bytes are those its own ``ldconfig -X`` writes.

What a tree cannot tell: ldconfig meets a folder's names in readdir order, which only
decides between names its comparison deems equal (``libfoo.so.01`` and ``libfoo.so.1``
in one folder); here such ties go by name.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import posixpath
import re
import struct
from collections.abc import Mapping

from kiln._debian.elf import (
    ARCH_SOURCES,
    ARCHES,
    ELFMAG,
    FLAG_ANY,
    FLAG_ELF,
    FLAG_LIBC5,
    FLAG_LIBC6,
    LIB_TYPES,
    Arch,
    fs_bytes,
    read_library,
    soname,
)
from kiln._debian.tree import DIR, FILE, SYMLINK, Entry, resolve
from kiln._errors import ConfigError

__all__ = ["ld_so_cache", "soname"]

_MAGIC = b"glibc-ld.so.cache1.1"
_HEADER = struct.Struct("<20sIIB3xI12x")  # both supported machines are little-endian
_ENTRY = struct.Struct("<iIIIQ")  # flags, key, value, osversion (unused), hwcap
_ENDIAN_LITTLE = 2
_EXTENSION_MAGIC = 0xEAA42174
_HWCAP_EXTENSION = 1 << 62
_C_SPACE = " \t\n\v\f\r"
_GLOB_MAGIC = re.compile(r"[*?\[]")
_LIBCMP_TOKENS = re.compile(rb"[0-9]+|[^0-9]")
_GENERATOR = re.compile(rb"(?<=\x00)ldconfig \([ -~]*\) [ -~]*release version [ -~]+(?=\x00)")


# ------------------------------------------------------------------ the folders and their libraries


@dataclasses.dataclass
class _Dir:
    path: str  # as ldconfig names it (from ld.so.conf, or built in); cache values start with it
    real: str  # the folder it leads to in the tree: its identity, as an inode is ldconfig's
    flag: int
    hwcaps: str | None = None  # the name of a glibc-hwcaps subfolder


@dataclasses.dataclass
class _Found:
    name: str
    soname: bytes
    flag: int
    is_link: bool
    isa_level: int


@dataclasses.dataclass(frozen=True)
class _CacheEntry:
    key: bytes
    value: bytes
    flags: int
    hwcap: int
    hwcaps: bytes | None
    isa_level: int


def _is_dso(name: str) -> bool:
    return (name.startswith(("lib", "ld-")) and ".so" in name) or name.startswith(
        ("ld.so.", "ld64.so.")
    )


def _is_prelink_temp(name: str) -> bool:
    return name.endswith(".#prelink#") or (len(name) >= 17 and name[-17:-6] == ".#prelink#.")


def _libcmp_key(name: bytes, signed: bool) -> tuple[tuple[int, int], ...]:
    """_dl_cache_libcmp as a sort key: digit runs compare by value, above every other byte."""
    tokens = [
        (2, int(tok))
        if tok[0] in b"0123456789"
        else (1, tok[0] - 256 if signed and tok[0] > 127 else tok[0])
        for tok in _LIBCMP_TOKENS.findall(name)
    ]
    return (*tokens, (1, 0))


class _Ldconfig:
    """One run of ldconfig over a tree: the folders to search, then the cache entries."""

    def __init__(self, tree: Mapping[str, Entry], arch: Arch) -> None:
        self.tree = tree
        self.arch = arch
        self.dirs: list[_Dir] = []
        self.by_real: dict[str, _Dir] = {}
        self.hwcaps_names: set[bytes] = set()
        self.entries: list[_CacheEntry] = []
        self.index: dict[str, list[str]] = {}
        for path in tree:
            if path:
                parent, _, name = path.rpartition("/")
                self.index.setdefault(parent, []).append(name)
        for names in self.index.values():
            names.sort()

    def is_dir(self, real: str | None) -> bool:
        return real == "" or (
            real is not None and real in self.tree and self.tree[real].kind == DIR
        )

    def conf(self, path: str, stack: tuple[str, ...]) -> None:
        """Read one configuration file (ldconfig's parse_conf); a missing one is skipped."""
        real = resolve(self.tree, path)
        if real is None or not real or self.tree[real].kind != FILE:
            return  # missing (ldconfig ignores it), or a folder (it reads as empty)
        if real in stack:
            chain = " -> ".join(f"/{p}" for p in (*stack, real))
            raise ConfigError(f"{path} includes itself ({chain}): fix the include lines")
        for lineno, raw in enumerate(self.tree[real].data.split(b"\n"), start=1):
            line = raw.split(b"\0", 1)[0].split(b"#", 1)[0].decode("utf-8", "surrogateescape")
            line = line.lstrip(_C_SPACE)
            if not line:
                continue
            if line.startswith("include") and line[7:8] in (" ", "\t"):
                for pattern in re.split("[ \t]", line[8:]):
                    if pattern:
                        self.include(path, pattern, (*stack, real))
            elif line[:5].lower() == "hwcap" and line[5:6] in (" ", "\t"):
                raise ConfigError(
                    f"{path}:{lineno}: glibc 2.36's ldconfig ignores `hwcap` lines: remove it"
                )
            else:
                self.add_dir(line, f"{path}:{lineno}")

    def include(self, config: str, pattern: str, stack: tuple[str, ...]) -> None:
        if not pattern.startswith("/") and "/" in config:
            pattern = f"{posixpath.dirname(config)}/{pattern}"
        for match in self.glob(pattern):
            self.conf(match, stack)

    def glob(self, pattern: str) -> list[str]:
        """The paths ``pattern`` matches in the tree, sorted as glob(3) sorts them."""
        # (the path as glob prints it, where it leads in the tree or None)
        found: list[tuple[str, str | None]] = [("/" if pattern.startswith("/") else "", "")]
        parts = [p for p in pattern.split("/") if p]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            step: list[tuple[str, str | None]] = []
            for shown, real in found:
                prefix = shown if shown in ("", "/") else f"{shown}/"
                if not _GLOB_MAGIC.search(part):
                    child = resolve(self.tree, f"{real}/{part}") if real is not None else None
                    step.append((prefix + part, child))
                    continue
                if real is None or not self.is_dir(real):
                    continue
                for name in self.index.get(real, []):
                    if name.startswith(".") and not part.startswith("."):
                        continue
                    child = resolve(self.tree, f"{real}/{name}")
                    if fnmatch.fnmatchcase(name, part) and (last or self.is_dir(child)):
                        step.append((prefix + name, child))
            found = step
        return sorted((shown for shown, _ in found), key=fs_bytes)

    def add_dir(self, line: str, where: str) -> None:
        """One folder line of ld.so.conf, or a built-in folder (ldconfig's add_dir_1)."""
        path, eq, kind = line.partition("=")
        flag = FLAG_ANY
        if eq:
            if kind not in LIB_TYPES:
                raise ConfigError(
                    f"{where}: {kind!r} is not a library type ldconfig knows "
                    f"(libc4, libc5, libc6, glibc2): drop the `={kind}`"
                )
            flag = LIB_TYPES[kind]
        path = path.rstrip(_C_SPACE).rstrip("/")
        real = resolve(self.tree, path) if path else None
        if real is None:
            return  # ldconfig skips a folder it cannot stat
        entry = _Dir(path, real, flag)
        if self.add_single(entry):
            self.add_glibc_hwcaps(entry)

    def add_single(self, entry: _Dir) -> bool:
        known = self.by_real.get(entry.real)
        if known is not None:
            known.flag = entry.flag  # one folder named twice: ldconfig keeps the first name
            return False
        self.by_real[entry.real] = entry
        self.dirs.append(entry)
        return True

    def add_glibc_hwcaps(self, entry: _Dir) -> None:
        base = resolve(self.tree, f"{entry.real}/glibc-hwcaps")
        if base is None or not self.is_dir(base):
            return
        for name in self.index.get(base, []):
            if name.startswith(".") or ":" in name or self.tree[f"{base}/{name}"].kind == FILE:
                continue
            real = resolve(self.tree, f"{base}/{name}")
            if real is not None and self.is_dir(real):
                self.hwcaps_names.add(fs_bytes(name))  # ldconfig keeps the name even if unused
                self.add_single(_Dir(f"{entry.path}/glibc-hwcaps/{name}", real, entry.flag, name))

    def search(self, entry: _Dir) -> None:
        """The libraries of one folder (ldconfig's search_dir)."""
        if not self.is_dir(entry.real):
            return
        found: dict[bytes, _Found] = {}
        for name in self.index.get(entry.real, []):
            lib = self.library(entry, name)
            if lib is not None:
                self.keep(found, lib, entry)
        hwcap = 0 if entry.hwcaps is not None else self.arch.path_hwcap(entry.path)
        hwcaps = None if entry.hwcaps is None else fs_bytes(entry.hwcaps)
        # ldconfig puts each new library at the head of its list, then adds the list in order;
        # the cache names a library by its SONAME, in a glibc-hwcaps subfolder by its file
        for lib in reversed(found.values()):
            filename = lib.soname if hwcaps is None else fs_bytes(lib.name)
            value = fs_bytes(entry.path) + b"/" + filename
            self.entries.append(
                _CacheEntry(lib.soname, value, lib.flag, hwcap, hwcaps, lib.isa_level)
            )

    def library(self, entry: _Dir, name: str) -> _Found | None:
        """What ldconfig makes of one name in a folder: a library, or None (a legacy hwcap
        subfolder is queued for searching)."""
        here = f"{entry.real}/{name}" if entry.real else name
        kind = self.tree[here].kind
        if _is_prelink_temp(name) or (
            not _is_dso(name)
            and (kind == FILE or (entry.hwcaps is None and not self.arch.is_hwcap_dir(name)))
        ):
            return None
        path = f"{entry.path}/{name}"
        target = resolve(self.tree, here) if kind == SYMLINK else here
        if not target:
            return None  # a dangling link
        is_dir = self.tree[target].kind == DIR
        if entry.hwcaps is None and is_dir and self.arch.is_hwcap_dir(name):
            self.add_single(_Dir(path, target, entry.flag))
            return None
        if kind not in (FILE, SYMLINK):
            return None
        if is_dir:
            raise ConfigError(f"{path} links to a folder; ldconfig cannot map it: remove the link")
        lib = read_library(self.arch, self.tree[target].data, name, path)
        if lib is None:
            return None
        soname = lib.soname if lib.soname is not None else fs_bytes(name)
        is_link = kind == SYMLINK
        if is_link and fs_bytes(name) != soname:
            # only a link named as the SONAME, or a libfoo.so dev link, counts as a link
            is_link = name.endswith(".so") and soname.startswith(fs_bytes(name))
        flag = lib.flag
        if flag == FLAG_ELF and entry.flag in (FLAG_LIBC5, FLAG_LIBC6):
            flag = entry.flag
        return _Found(name, fs_bytes(name) if is_link else soname, flag, is_link, lib.isa_level)

    def keep(self, found: dict[bytes, _Found], new: _Found, entry: _Dir) -> None:
        """Add ``new`` unless its SONAME is taken; of two, keep a file over a link, else
        the later name by _dl_cache_libcmp (ldconfig's dlib list)."""
        old = found.get(new.soname)
        if old is None:
            found[new.soname] = new
            return
        signed = self.arch.signed_char
        newer = _libcmp_key(fs_bytes(old.name), signed) < _libcmp_key(fs_bytes(new.name), signed)
        if not ((not new.is_link and old.is_link) or (new.is_link == old.is_link and newer)):
            return
        if old.flag != new.flag:
            libc56 = (FLAG_LIBC5, FLAG_LIBC6)
            if not (
                (old.flag == FLAG_ELF and new.flag in libc56)
                or (old.flag in libc56 and new.flag == FLAG_ELF)
            ):
                raise ConfigError(
                    f"{entry.path}/{old.name} and {entry.path}/{new.name} have one SONAME "
                    f"({new.soname.decode('utf-8', 'replace')}) but different ELF types: "
                    "ldconfig complains; keep only one of them in that folder"
                )
            old.flag = new.flag
        old.name, old.is_link, old.isa_level = new.name, new.is_link, new.isa_level


# ------------------------------------------------------------------ the cache file


def _string_table(strings: set[bytes]) -> tuple[bytes, dict[bytes, int]]:
    """ldconfig's string table: sorted by reversed string, descending, each string that
    ends the one before it stored inside that one (tail merging)."""
    offsets: dict[bytes, int] = {}
    previous = b""
    for text in sorted(strings, key=lambda s: s[::-1], reverse=True):
        if not offsets:
            offsets[text] = 0
        elif previous.endswith(text):
            offsets[text] = offsets[previous] + len(previous) - len(text)
        else:
            offsets[text] = offsets[previous] + len(previous) + 1
        previous = text
    table = bytearray(offsets[previous] + len(previous) + 1 if offsets else 0)
    for text, offset in offsets.items():
        table[offset : offset + len(text)] = text
    return bytes(table), offsets


def _write(scan: _Ldconfig, generator: bytes | None) -> bytes:
    signed = scan.arch.signed_char

    def order(e: _CacheEntry) -> tuple[object, ...]:
        # ldconfig's compare(): SONAME descending, flags descending, glibc-hwcaps entries
        # first (by name), then the most specific legacy hwcap; ties keep insertion order
        lib = tuple((-a, -b) for a, b in _libcmp_key(e.key, signed))
        return (lib, -e.flags, e.hwcaps is None, e.hwcaps or b"", -e.hwcap.bit_count(), -e.hwcap)

    entries = sorted(scan.entries, key=order)
    used = sorted({e.hwcaps for e in entries if e.hwcaps is not None})
    table, offsets = _string_table(
        {e.key for e in entries} | {e.value for e in entries} | scan.hwcaps_names
    )
    base = _HEADER.size + _ENTRY.size * len(entries)  # the string table starts here
    body = bytearray()
    for e in entries:
        hwcap = e.hwcap
        if e.hwcaps is not None:
            hwcap = _HWCAP_EXTENSION | e.isa_level << 32 | used.index(e.hwcaps)
        body += _ENTRY.pack(e.flags, base + offsets[e.key], base + offsets[e.value], 0, hwcap)
    body += table
    extension = b""
    ext_offset = 0
    if generator is not None or used:
        ext_offset = -(-(_HEADER.size + len(body)) // 4) * 4
        hwcaps = b"".join(struct.pack("<I", base + offsets[name]) for name in used)
        sections: list[tuple[int, int, int]] = []  # (tag, offset, size)
        if generator is None:
            sections.append((1, ext_offset + 8 + 16, len(hwcaps)))
        else:
            # as ldconfig: the generator first; room for two sections before any data
            hwcaps_at = ext_offset + 8 + 16 * 2
            at = hwcaps_at + len(hwcaps) if used else ext_offset + 8 + 16
            sections.append((0, at, len(generator)))
            if used:
                sections.append((1, hwcaps_at, len(hwcaps)))
        pad = b"\0" * (ext_offset - _HEADER.size - len(body))
        extension = (
            pad
            + struct.pack("<II", _EXTENSION_MAGIC, len(sections))
            + b"".join(struct.pack("<IIII", tag, 0, at, size) for tag, at, size in sections)
            + hwcaps
            + (generator or b"")
        )
    header = _HEADER.pack(_MAGIC, len(entries), len(table), _ENDIAN_LITTLE, ext_offset)
    return header + bytes(body) + extension


def _arch(tree: Mapping[str, Entry]) -> tuple[Arch, bytes | None]:
    """The tree's machine (from its ldconfig, else its dynamic loader), and the generator
    string its ldconfig writes into caches, if it has one."""
    for path in ARCH_SOURCES:
        real = resolve(tree, path)
        data = tree[real].data if real and tree[real].kind == FILE else b""
        if data[:4] != ELFMAG or len(data) < 20 or data[5] not in (1, 2):
            continue
        machine = int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")
        arch = ARCHES.get(machine)
        if arch is None or data[4] != 2 or data[5] != 1:
            raise ConfigError(
                f"/{path} is for ELF machine {machine} ({32 if data[4] == 1 else 64}-bit): kiln "
                "writes /etc/ld.so.cache for x86-64 and aarch64 trees only; build the layer "
                "for amd64 or arm64"
            )
        found = _GENERATOR.search(data) if path == "sbin/ldconfig" else None
        return arch, found.group() if found else None
    raise ConfigError(
        "cannot tell the layer's architecture for /etc/ld.so.cache: it has neither "
        "/sbin/ldconfig nor a dynamic loader (/lib64/ld-linux-x86-64.so.2, "
        "/lib/ld-linux-aarch64.so.1); add the libc6 and libc-bin packages"
    )


def ld_so_cache(tree: Mapping[str, Entry]) -> bytes:
    """The bytes of ``/etc/ld.so.cache`` that glibc 2.36's ldconfig writes for ``tree``."""
    arch, generator = _arch(tree)
    scan = _Ldconfig(tree, arch)
    scan.conf("/etc/ld.so.conf", ())
    for folder in arch.system_dirs:
        scan.add_dir(folder, "<builtin>")
    i = 0
    while i < len(scan.dirs):  # searching may add legacy hwcap subfolders at the end
        scan.search(scan.dirs[i])
        i += 1
    return _write(scan, generator)
