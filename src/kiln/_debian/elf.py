"""ELF shared objects as glibc 2.36's ``ldconfig`` reads them, for any machine kiln builds.

The ``DT_SONAME``, the library type ldconfig files it under (libc6, and the ABI of
the machine: ``libc6,x86-64``, ``libc6,AArch64``) and the x86 ISA level a
``glibc-hwcaps`` entry carries, read with ``struct`` from the file's bytes alone (it may
be for another architecture: nothing is run); and the program interpreter (PT_INTERP)
an executable is started by. ``Arch`` holds what each machine's ldconfig has built in
(Debian's build). ``kiln._debian.ldcache`` writes the cache.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from typing import NamedTuple

from kiln._errors import ConfigError

ELFMAG = b"\x7fELF"
ET_DYN = 3
EM_386, EM_X86_64, EM_AARCH64 = 3, 62, 183
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP, _PT_GNU_PROPERTY = 1, 2, 3, 0x6474E553
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_SONAME = 0, 1, 5, 14
_NT_GNU_PROPERTY_TYPE_0 = 5
_X86_ISA_1_NEEDED = 0xC0008002
_AOUT_MAGICS = (0o413, 0o314)  # ZMAGIC, QMAGIC: an a.out (libc4) library

# ldconfig's library flags (sysdeps/generic/ldconfig.h): a type in the low byte, an ABI above.
FLAG_ANY, FLAG_LIBC4, FLAG_ELF, FLAG_LIBC5, FLAG_LIBC6 = -1, 0, 1, 2, 3
_FLAG_X8664_LIB64, _FLAG_X8664_LIBX32 = 0x0300, 0x0800
_FLAG_ARM_LIBHF, _FLAG_AARCH64_LIB64, _FLAG_ARM_LIBSF = 0x0900, 0x0A00, 0x0B00
LIB_TYPES = {"libc4": FLAG_LIBC4, "libc5": FLAG_LIBC5, "libc6": FLAG_LIBC6, "glibc2": 3}
_KNOWN_LIBS = (b"libc.so.6", b"libm.so.6")  # a DT_NEEDED on these makes a library libc6

_TLS_BIT = 63


@dataclasses.dataclass(frozen=True)
class Arch:
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


X86_64 = Arch(
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
AARCH64 = Arch(
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
ARCHES = {EM_X86_64: X86_64, EM_AARCH64: AARCH64}
# Where the architecture is read from: the ldconfig that would write the cache, or a loader.
ARCH_SOURCES = ("sbin/ldconfig", "lib64/ld-linux-x86-64.so.2", "lib/ld-linux-aarch64.so.1")


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
class ElfInfo:
    flag: int
    soname: bytes | None
    isa_level: int
    dynamic_segments: int


def _scan(
    data: bytes, order: str, bits: int, interpreters: frozenset[bytes], isa: bool
) -> ElfInfo | None:
    """ldconfig's process_elf32_file/process_elf64_file: the type flag, DT_SONAME and ISA
    level of a shared object of that class; None where ldconfig quietly skips the file."""
    r = _Reader(data, order, bits)
    if data[4:5] != bytes((1 if bits == 32 else 2,)) or r.get("H", 16) != ET_DYN:
        return None
    segments = r.segments()
    flag, level = FLAG_ELF, 0
    for seg in segments:
        if seg.kind == _PT_INTERP and r.cstr(seg.offset) in interpreters:
            flag = FLAG_LIBC6
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
            if flag == FLAG_ELF and r.cstr(strings + value) in _KNOWN_LIBS:
                flag = FLAG_LIBC6
        elif tag == _DT_SONAME:
            soname = r.cstr(strings + value)
        else:
            continue
        if soname is not None and flag != FLAG_ELF:
            break
    return ElfInfo(flag, soname, level, len(dynamic))


def _strtab(r: _Reader, dynamic: int, segments: list[_Segment]) -> int | None:
    """The file offset of the dynamic string table (the first DT_STRTAB), through the
    PT_LOAD that maps it; with none, ldconfig takes the address as an offset."""
    for tag, value in r.dynamic(dynamic):
        if tag == _DT_STRTAB:
            for seg in segments:
                if seg.kind == _PT_LOAD and 0 <= value - seg.vaddr < seg.filesz:
                    return (value - (seg.vaddr - seg.offset)) % (1 << r.bits)
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
    if data[:4] != ELFMAG or len(data) < 6 or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    order = "<" if data[5] == 1 else ">"
    try:
        info = _scan(data, order, 32 if data[4] == 1 else 64, frozenset(), isa=False)
    except _Truncated:
        return None
    if info is None or info.soname is None:
        return None
    return info.soname.decode("utf-8", "surrogateescape")


def program_interpreter(data: bytes) -> tuple[int, str | None]:
    """(e_machine, the PT_INTERP path or None for a static executable) of an ELF file of
    either class and byte order; ValueError for anything else, or a file cut short."""
    if data[:4] != ELFMAG or len(data) < 6 or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise ValueError("not an ELF file")
    r = _Reader(data, "<" if data[5] == 1 else ">", 32 if data[4] == 1 else 64)
    try:
        machine = r.get("H", 18)
        for seg in r.segments():
            if seg.kind == _PT_INTERP:
                return machine, r.cstr(seg.offset).decode()
    except _Truncated:
        raise ValueError("a truncated ELF file") from None
    return machine, None


_FIX = "remove it from the layer, or rename it so it does not look like a library (lib*.so*)"


def read_library(arch: Arch, data: bytes, name: str, path: str) -> ElfInfo | None:
    """ldconfig's process_file for ``data`` (named ``name``, at image path ``path``): None
    where it skips the file quietly, ConfigError where it complains."""
    if len(data) < 64 or data[:4] != ELFMAG:  # 64: the size of an ELF64 or a.out header
        return _read_other(data, name, path)
    if int.from_bytes(data[16:18], "little") != ET_DYN:
        return None
    bits = 32 if data[4] == 1 else 64
    x86_flag = _x86_flag(data, path) if arch is X86_64 else 0
    try:
        info = _scan(data, "<", bits, arch.interpreters, arch.isa_levels)
    except _Truncated:
        raise ConfigError(f"{path} is a truncated ELF file: ldconfig warns; {_FIX}") from None
    if info is None:
        return None
    if info.dynamic_segments > 1:
        raise ConfigError(f"{path} has more than one PT_DYNAMIC segment: ldconfig warns; {_FIX}")
    flag = x86_flag or (_arm_flag(data, bits, info.flag) if arch is AARCH64 else info.flag)
    return dataclasses.replace(info, flag=flag)


def _read_other(data: bytes, name: str, path: str) -> ElfInfo | None:
    """What ldconfig makes of a file that is small, or not ELF."""
    if not data:
        raise ConfigError(f"{path} is empty: ldconfig warns about it; {_FIX}")
    if len(data) < 64:
        if data[:4] == ELFMAG[: len(data)]:
            raise ConfigError(f"{path} is too small to be an ELF file: ldconfig warns; {_FIX}")
        return None
    if int.from_bytes(data[:2], "little") in _AOUT_MAGICS:  # its SONAME is its name to the major
        head, sep, tail = name.partition(".so.")
        short = head + sep + tail.split(".", 1)[0] if sep else name
        return ElfInfo(FLAG_LIBC4, fs_bytes(short), 0, 0)
    if b"GROUP" in data[:512] or b"GNU ld script" in data[:512] or path.endswith("-gdb.py"):
        return None
    raise ConfigError(f"{path} is neither an ELF file nor a linker script: ldconfig warns; {_FIX}")


def _x86_flag(data: bytes, path: str) -> int:
    """The flags x86-64's ldconfig gives a library of that machine whatever it links (0 for
    i386, whose flags come from what it links)."""
    machine = int.from_bytes(data[18:20], "little")
    if machine == EM_X86_64:
        return (_FLAG_X8664_LIB64 if data[4] == 2 else _FLAG_X8664_LIBX32) | FLAG_LIBC6
    if machine == EM_386 and data[4] == 1:
        return 0
    raise ConfigError(
        f"{path} is a shared object for ELF machine {machine}, not x86-64 or i386: "
        f"ldconfig warns about it and leaves it out; {_FIX}"
    )


def _arm_flag(data: bytes, bits: int, flag: int) -> int:
    """arm64's ldconfig: every 64-bit library is AArch64 (its machine unchecked); a 32-bit
    one of ARM EABI 5 is hard- or soft-float by its e_flags."""
    if bits == 64:
        return _FLAG_AARCH64_LIB64 | FLAG_LIBC6
    e_flags = int.from_bytes(data[36:40], "little")
    if e_flags >> 24 != 5:
        return flag
    if e_flags & 0x400:
        return _FLAG_ARM_LIBHF | FLAG_LIBC6
    return (_FLAG_ARM_LIBSF | FLAG_LIBC6) if e_flags & 0x200 else FLAG_LIBC6


def fs_bytes(text: str) -> bytes:
    """A file name as the filesystem holds it (what a name read as text came from)."""
    return text.encode("utf-8", "surrogateescape")


_DT_RPATH, _DT_RUNPATH = 15, 29


@dataclasses.dataclass(frozen=True)
class Linking:
    """What the dynamic loader needs to know of an ELF file to load it."""

    machine: int  # e_machine
    needed: tuple[str, ...]  # DT_NEEDED, in order
    rpath: str | None  # DT_RPATH (ignored by ld.so when DT_RUNPATH is there)
    runpath: str | None  # DT_RUNPATH


def linking(data: bytes) -> Linking:
    """The e_machine, DT_NEEDED, DT_RPATH and DT_RUNPATH of an ELF file of either class and
    byte order (none of them for a static one); ValueError for anything else, or a file cut
    short."""
    if data[:4] != ELFMAG or len(data) < 20 or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise ValueError("not an ELF file")
    r = _Reader(data, "<" if data[5] == 1 else ">", 32 if data[4] == 1 else 64)
    try:
        machine, segments = r.get("H", 18), r.segments()
        dynamic = [seg for seg in segments if seg.kind == _PT_DYNAMIC]
        if not dynamic or dynamic[-1].filesz == 0:
            return Linking(machine, (), None, None)
        offset = dynamic[-1].offset
        strings = _strtab(r, offset, segments)
        if strings is None:
            raise ValueError("a dynamic section without a string table")
        found: dict[int, list[str]] = {_DT_NEEDED: [], _DT_RPATH: [], _DT_RUNPATH: []}
        for tag, value in r.dynamic(offset):
            if tag in found:
                found[tag].append(r.cstr(strings + value).decode("utf-8", "surrogateescape"))
    except _Truncated:
        raise ValueError("a truncated ELF file") from None
    rpath, runpath = (":".join(found[t]) if found[t] else None for t in (_DT_RPATH, _DT_RUNPATH))
    return Linking(machine, tuple(found[_DT_NEEDED]), rpath, runpath)
