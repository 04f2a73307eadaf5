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
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from kiln._debian.tree import DIR, FILE, SYMLINK, Entry, resolve
from kiln._errors import ConfigError

_ELFMAG = b"\x7fELF"
_ET_DYN = 3
_EM_386, _EM_X86_64, _EM_AARCH64 = 3, 62, 183
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP, _PT_GNU_PROPERTY = 1, 2, 3, 0x6474E553
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_SONAME = 0, 1, 5, 14
_NT_GNU_PROPERTY_TYPE_0 = 5
_X86_ISA_1_NEEDED = 0xC0008002
_AOUT_MAGICS = (0o413, 0o314)  # ZMAGIC, QMAGIC: an a.out (libc4) library

# ldconfig's library flags (sysdeps/generic/ldconfig.h): a type in the low byte, an ABI above.
_FLAG_ANY, _FLAG_LIBC4, _FLAG_ELF, _FLAG_LIBC5, _FLAG_LIBC6 = -1, 0, 1, 2, 3
_FLAG_X8664_LIB64, _FLAG_X8664_LIBX32 = 0x0300, 0x0800
_FLAG_ARM_LIBHF, _FLAG_AARCH64_LIB64, _FLAG_ARM_LIBSF = 0x0900, 0x0A00, 0x0B00
_LIB_TYPES = {"libc4": _FLAG_LIBC4, "libc5": _FLAG_LIBC5, "libc6": _FLAG_LIBC6, "glibc2": 3}
_KNOWN_LIBS = (b"libc.so.6", b"libm.so.6")  # a DT_NEEDED on these makes a library libc6

_MAGIC = b"glibc-ld.so.cache1.1"
_HEADER = struct.Struct("<20sIIB3xI12x")  # both supported machines are little-endian
_ENTRY = struct.Struct("<iIIIQ")  # flags, key, value, osversion (unused), hwcap
_ENDIAN_LITTLE = 2
_EXTENSION_MAGIC = 0xEAA42174
_HWCAP_EXTENSION = 1 << 62
_TLS_BIT = 63
_C_SPACE = " \t\n\v\f\r"
_GLOB_MAGIC = re.compile(r"[*?\[]")
_LIBCMP_TOKENS = re.compile(rb"[0-9]+|[^0-9]")
_GENERATOR = re.compile(rb"(?<=\x00)ldconfig \([ -~]*\) [ -~]*release version [ -~]+(?=\x00)")


@dataclasses.dataclass(frozen=True)
class _Arch:
    """What ldconfig for one machine has built in (Debian's glibc 2.36 build)."""

    triplet: str
    interpreters: frozenset[bytes]  # a PT_INTERP on these makes a library libc6
    hwcaps: tuple[str, ...]  # legacy hwcap subfolder names; the index is the hwcap bit
    important: int  # the hwcap bits whose subfolders ldconfig descends into
    platforms: tuple[str, ...]  # platform subfolder names, bits from 48 on
    signed_char: bool  # how _dl_cache_libcmp compares bytes above 127
    isa_levels: bool  # whether GNU property notes give glibc-hwcaps entries an ISA level

    @property
    def system_dirs(self) -> tuple[str, ...]:
        """Debian's trusted folders (slibdir, libdir, then /lib and /usr/lib), which
        ldconfig adds after ld.so.conf's. With their trailing slash kept, the
        lib64/libx32 expansion of ldconfig's add_system_dir never applies to them."""
        return (f"/lib/{self.triplet}", f"/usr/lib/{self.triplet}", "/lib", "/usr/lib")

    def hwcap_bit(self, name: str) -> int | None:
        if name in self.hwcaps:
            return self.hwcaps.index(name)
        if name in self.platforms:
            return 48 + self.platforms.index(name)
        return _TLS_BIT if name == "tls" else None

    def is_hwcap_dir(self, name: str) -> bool:
        if name in self.hwcaps:
            return bool((1 << self.hwcaps.index(name)) & self.important)
        return name in self.platforms or name == "tls"

    def path_hwcap(self, path: str) -> int:
        """The hwcap bits of a folder's trailing hwcap components (ldconfig's path_hwcap)."""
        hwcap = 0
        for part in reversed(path.split("/")[1:]):
            bit = self.hwcap_bit(part)
            if bit is None:
                break
            hwcap = (hwcap + (1 << bit)) & (2**64 - 1)
        return hwcap


_X86_64 = _Arch(
    triplet="x86_64-linux-gnu",
    interpreters=frozenset(
        b"/lib/ld-linux-x86-64.so.2 /lib/ld-linux.so.2 /libx32/ld-linux-x32.so.2 "
        b"/lib64/ld-linux-x86-64.so.2".split()
    ),
    hwcaps=("sse2", "x86_64", "avx512_1"),
    important=0b111,
    platforms=("i586", "i686", "haswell", "xeon_phi"),
    signed_char=True,
    isa_levels=True,
)
_AARCH64 = _Arch(
    triplet="aarch64-linux-gnu",
    interpreters=frozenset(
        b"/lib/ld-linux-aarch64.so.1 /lib/ld-linux-aarch64_be.so.1 /lib/ld-linux.so.3 "
        b"/lib/ld-linux-aarch64_ilp32.so.1 /lib/ld-linux-aarch64_be_ilp32.so.1 "
        b"/lib/ld-linux-armhf.so.3".split()
    ),
    hwcaps=(
        *("fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp"),
        *("asimdhp", "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3"),
        *("sm4", "asimddp", "sha512", "sve", "asimdfhm", "dit", "uscat", "ilrcpc", "flagm"),
        *("ssbs", "sb", "paca", "pacg"),
    ),
    important=1 << 8,  # atomics
    platforms=(),
    signed_char=False,
    isa_levels=False,
)
_ARCHES = {_EM_X86_64: _X86_64, _EM_AARCH64: _AARCH64}
# Where the architecture is read from: the ldconfig that would write the cache, or a loader.
_ARCH_SOURCES = ("sbin/ldconfig", "lib64/ld-linux-x86-64.so.2", "lib/ld-linux-aarch64.so.1")


# ------------------------------------------------------------------ ELF, as ldconfig reads it


class _Truncated(Exception):
    """A header, table or string lies (partly) outside the file."""


class _Reader:
    """Fields of one ELF class at file offsets; anything out of range is truncation."""

    def __init__(self, data: bytes, order: str, bits: int) -> None:
        self.data = data
        self.order = order
        self.bits = bits
        self.word = "Q" if bits == 64 else "I"

    def get(self, code: str, offset: int) -> int:
        fmt = self.order + code
        if offset < 0 or offset + struct.calcsize(fmt) > len(self.data):
            raise _Truncated
        return int(struct.unpack_from(fmt, self.data, offset)[0])

    def cstr(self, offset: int) -> bytes:
        end = self.data.find(b"\0", offset) if 0 <= offset <= len(self.data) else -1
        if end < 0:
            raise _Truncated
        return self.data[offset:end]

    def dynamic(self, offset: int) -> Iterator[tuple[int, int]]:
        """(d_tag, d_val) from ``offset`` up to DT_NULL."""
        tag_code, size = ("q", 16) if self.bits == 64 else ("i", 8)
        while (tag := self.get(tag_code, offset)) != _DT_NULL:
            yield tag, self.get(self.word, offset + size // 2)
            offset += size

    def segments(self) -> list[_Segment]:
        """The program headers (at e_phoff, e_phnum of them)."""
        wide = self.bits == 64
        phoff, phnum = self.get(self.word, 32 if wide else 28), self.get("H", 56 if wide else 44)
        if phoff > len(self.data):
            raise _Truncated
        # where p_offset, p_vaddr, p_filesz and p_align are in a header, and its size
        at_off, at_vaddr, at_filesz, at_align, size = (
            (8, 16, 32, 48, 56) if wide else (4, 8, 16, 28, 32)
        )
        return [
            _Segment(
                *(self.get("I", seg),),
                *(self.get(self.word, seg + at) for at in (at_off, at_vaddr, at_filesz, at_align)),
            )
            for seg in range(phoff, phoff + phnum * size, size)
        ]


class _Segment(NamedTuple):
    kind: int
    offset: int
    vaddr: int
    filesz: int
    align: int


@dataclasses.dataclass(frozen=True)
class _ElfInfo:
    flag: int
    soname: bytes | None
    isa_level: int
    dynamic_segments: int


def _scan(
    data: bytes, order: str, bits: int, interpreters: frozenset[bytes], isa: bool
) -> _ElfInfo | None:
    """ldconfig's process_elf32_file/process_elf64_file: the type flag, DT_SONAME and ISA
    level of a shared object of that class; None where ldconfig quietly skips the file."""
    r = _Reader(data, order, bits)
    if data[4:5] != bytes((1 if bits == 32 else 2,)) or r.get("H", 16) != _ET_DYN:
        return None
    segments = r.segments()
    flag, level = _FLAG_ELF, 0
    for seg in segments:
        if seg.kind == _PT_INTERP and r.cstr(seg.offset) in interpreters:
            flag = _FLAG_LIBC6
        elif seg.kind == _PT_GNU_PROPERTY and isa:
            level = _isa_level(r, seg, level)
    dynamic = [seg for seg in segments if seg.kind == _PT_DYNAMIC]  # ldconfig uses the last
    if not dynamic or dynamic[-1].filesz == 0:
        return None
    offset = dynamic[-1].offset & 0xFFFFFFFF  # ldconfig keeps it in an unsigned int
    strings = _strtab(r, offset, segments)
    if strings is None:
        return None
    soname = None
    for tag, value in r.dynamic(offset):
        if tag == _DT_NEEDED:
            if flag == _FLAG_ELF and r.cstr(strings + value) in _KNOWN_LIBS:
                flag = _FLAG_LIBC6
        elif tag == _DT_SONAME:
            soname = r.cstr(strings + value)
        else:
            continue
        if soname is not None and flag != _FLAG_ELF:
            break
    return _ElfInfo(flag, soname, level, len(dynamic))


def _strtab(r: _Reader, dynamic: int, segments: list[_Segment]) -> int | None:
    """The file offset of the dynamic string table (the first DT_STRTAB), through the
    PT_LOAD that maps it; with none, ldconfig takes the address as an offset."""
    for tag, value in r.dynamic(dynamic):
        if tag == _DT_STRTAB:
            for seg in segments:
                if seg.kind == _PT_LOAD and 0 <= value - seg.vaddr < seg.filesz:
                    return value - (seg.vaddr - seg.offset) % (1 << r.bits)
            return value
    return None


def _isa_level(r: _Reader, seg: _Segment, level: int) -> int:
    """The x86 ISA level a PT_GNU_PROPERTY note asks for (its highest
    GNU_PROPERTY_X86_ISA_1_NEEDED bit), or ``level`` when it names none."""
    word, align = r.bits // 8, seg.align
    if align != word:
        return level
    note = seg.offset
    while note + 12 - seg.offset < seg.filesz:
        namesz, descsz, kind = r.get("I", note), r.get("I", note + 4), r.get("I", note + 8)
        if (
            namesz == 4
            and kind == _NT_GNU_PROPERTY_TYPE_0
            and r.data[note + 12 : note + 16] == b"GNU\0"
        ):
            if descsz < 8 or descsz % word:
                return level
            ptr, end, last = note + 16, note + 16 + descsz, 0
            while True:
                prop, datasz = r.get("I", ptr), r.get("I", ptr + 4)
                ptr += 8
                if prop < last or ptr + datasz > end or prop > _X86_ISA_1_NEEDED:
                    return level
                if prop == _X86_ISA_1_NEEDED:
                    needed = r.get("I", ptr) if datasz == 4 else 0
                    return needed.bit_length() - 1 if needed else level
                last = prop
                ptr += -(-datasz // word) * word
                if end - ptr < 8:
                    return level
        note += -(-(-(-(12 + namesz) // align) * align + descsz) // align) * align
    return level


def soname(data: bytes) -> str | None:
    """The DT_SONAME of an ELF shared object (either class, either byte order); None for
    anything else, or when it has none."""
    if data[:4] != _ELFMAG or len(data) < 6 or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    order = "<" if data[5] == 1 else ">"
    try:
        info = _scan(data, order, 32 if data[4] == 1 else 64, frozenset(), isa=False)
    except _Truncated:
        return None
    if info is None or info.soname is None:
        return None
    return info.soname.decode("utf-8", "surrogateescape")


_FIX = "remove it from the layer, or rename it so it does not look like a library (lib*.so*)"


def _read_library(arch: _Arch, data: bytes, name: str, path: str) -> _ElfInfo | None:
    """ldconfig's process_file for ``data`` (named ``name``, at image path ``path``): None
    where it skips the file quietly, ConfigError where it complains."""
    if len(data) < 64 or data[:4] != _ELFMAG:  # 64: the size of an ELF64 or a.out header
        return _read_other(data, name, path)
    if int.from_bytes(data[16:18], "little") != _ET_DYN:
        return None
    bits = 32 if data[4] == 1 else 64
    x86_flag = _x86_flag(data, path) if arch is _X86_64 else 0
    try:
        info = _scan(data, "<", bits, arch.interpreters, arch.isa_levels)
    except _Truncated:
        raise ConfigError(f"{path} is a truncated ELF file: ldconfig warns; {_FIX}") from None
    if info is None:
        return None
    if info.dynamic_segments > 1:
        raise ConfigError(f"{path} has more than one PT_DYNAMIC segment: ldconfig warns; {_FIX}")
    flag = x86_flag or (_arm_flag(data, bits, info.flag) if arch is _AARCH64 else info.flag)
    return dataclasses.replace(info, flag=flag)


def _read_other(data: bytes, name: str, path: str) -> _ElfInfo | None:
    """What ldconfig makes of a file that is small, or not ELF."""
    if not data:
        raise ConfigError(f"{path} is empty: ldconfig warns about it; {_FIX}")
    if len(data) < 64:
        if data[:4] == _ELFMAG[: len(data)]:
            raise ConfigError(f"{path} is too small to be an ELF file: ldconfig warns; {_FIX}")
        return None
    if int.from_bytes(data[:2], "little") in _AOUT_MAGICS:  # its SONAME is its name to the major
        head, sep, tail = name.partition(".so.")
        short = head + sep + tail.split(".", 1)[0] if sep else name
        return _ElfInfo(_FLAG_LIBC4, _b(short), 0, 0)
    if b"GROUP" in data[:512] or b"GNU ld script" in data[:512] or path.endswith("-gdb.py"):
        return None
    raise ConfigError(f"{path} is neither an ELF file nor a linker script: ldconfig warns; {_FIX}")


def _x86_flag(data: bytes, path: str) -> int:
    """The flags x86-64's ldconfig gives a library of that machine whatever it links (0 for
    i386, whose flags come from what it links)."""
    machine = int.from_bytes(data[18:20], "little")
    if machine == _EM_X86_64:
        return (_FLAG_X8664_LIB64 if data[4] == 2 else _FLAG_X8664_LIBX32) | _FLAG_LIBC6
    if machine == _EM_386 and data[4] == 1:
        return 0
    raise ConfigError(
        f"{path} is a shared object for ELF machine {machine}, not x86-64 or i386: "
        f"ldconfig warns about it and leaves it out; {_FIX}"
    )


def _arm_flag(data: bytes, bits: int, flag: int) -> int:
    """arm64's ldconfig: every 64-bit library is AArch64 (its machine unchecked); a 32-bit
    one of ARM EABI 5 is hard- or soft-float by its e_flags."""
    if bits == 64:
        return _FLAG_AARCH64_LIB64 | _FLAG_LIBC6
    e_flags = int.from_bytes(data[36:40], "little")
    if e_flags >> 24 != 5:
        return flag
    if e_flags & 0x400:
        return _FLAG_ARM_LIBHF | _FLAG_LIBC6
    return (_FLAG_ARM_LIBSF | _FLAG_LIBC6) if e_flags & 0x200 else _FLAG_LIBC6


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


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


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

    def __init__(self, tree: Mapping[str, Entry], arch: _Arch) -> None:
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
        return sorted((shown for shown, _ in found), key=_b)

    def add_dir(self, line: str, where: str) -> None:
        """One folder line of ld.so.conf, or a built-in folder (ldconfig's add_dir_1)."""
        path, eq, kind = line.partition("=")
        flag = _FLAG_ANY
        if eq:
            if kind not in _LIB_TYPES:
                raise ConfigError(
                    f"{where}: {kind!r} is not a library type ldconfig knows "
                    f"(libc4, libc5, libc6, glibc2): drop the `={kind}`"
                )
            flag = _LIB_TYPES[kind]
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
                self.hwcaps_names.add(_b(name))  # ldconfig keeps the name even if unused
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
        hwcaps = None if entry.hwcaps is None else _b(entry.hwcaps)
        # ldconfig puts each new library at the head of its list, then adds the list in order;
        # the cache names a library by its SONAME, in a glibc-hwcaps subfolder by its file
        for lib in reversed(found.values()):
            filename = lib.soname if hwcaps is None else _b(lib.name)
            value = _b(entry.path) + b"/" + filename
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
        lib = _read_library(self.arch, self.tree[target].data, name, path)
        if lib is None:
            return None
        soname = lib.soname if lib.soname is not None else _b(name)
        is_link = kind == SYMLINK
        if is_link and _b(name) != soname:
            # only a link named as the SONAME, or a libfoo.so dev link, counts as a link
            is_link = name.endswith(".so") and soname.startswith(_b(name))
        flag = lib.flag
        if flag == _FLAG_ELF and entry.flag in (_FLAG_LIBC5, _FLAG_LIBC6):
            flag = entry.flag
        return _Found(name, _b(name) if is_link else soname, flag, is_link, lib.isa_level)

    def keep(self, found: dict[bytes, _Found], new: _Found, entry: _Dir) -> None:
        """Add ``new`` unless its SONAME is taken; of two, keep a file over a link, else
        the later name by _dl_cache_libcmp (ldconfig's dlib list)."""
        old = found.get(new.soname)
        if old is None:
            found[new.soname] = new
            return
        signed = self.arch.signed_char
        newer = _libcmp_key(_b(old.name), signed) < _libcmp_key(_b(new.name), signed)
        if not ((not new.is_link and old.is_link) or (new.is_link == old.is_link and newer)):
            return
        if old.flag != new.flag:
            libc56 = (_FLAG_LIBC5, _FLAG_LIBC6)
            if not (
                (old.flag == _FLAG_ELF and new.flag in libc56)
                or (old.flag in libc56 and new.flag == _FLAG_ELF)
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


def _arch(tree: Mapping[str, Entry]) -> tuple[_Arch, bytes | None]:
    """The tree's machine (from its ldconfig, else its dynamic loader), and the generator
    string its ldconfig writes into caches, if it has one."""
    for path in _ARCH_SOURCES:
        real = resolve(tree, path)
        data = tree[real].data if real and tree[real].kind == FILE else b""
        if data[:4] != _ELFMAG or len(data) < 20 or data[5] not in (1, 2):
            continue
        machine = int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")
        arch = _ARCHES.get(machine)
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
