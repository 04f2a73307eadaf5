"""Layer blobs whose bytes depend on kiln's pinned dependencies only, not on the machine.

A layer is pushed gzip-compressed, and gzip bytes depend on the deflate
implementation and its version (the system zlib, or zlib-ng on some
distributions, each write other bytes). kiln compresses with libdeflate as bundled
in the ``deflate`` wheel, pinned exactly with kiln: its output is deterministic for
a given libdeflate version and level (and does not follow the CPU's features).
libdeflate compresses whole buffers, so the tar is cut into fixed 16 MiB pieces,
each its own gzip member: a concatenation of members is one valid gzip stream
(RFC 1952), which Docker Engine and containerd read as such; the cut points depend
on the offset in the tar only. Docker Engine 20.10 cannot read zstd layers, so
zstd is not an option yet.

The ``deflate`` module holds the GIL while it compresses. Its extension exports the
libdeflate it bundles, so kiln calls that same code through ``ctypes``, which lets the
GIL go: the members of a blob are compressed by ``COMPRESSORS`` threads while the tar
is still being written (the bytes are the same: the known answer below is checked on
both paths, and the module's is used when the library's is not there).
"""

from __future__ import annotations

import collections
import ctypes
import functools
import hashlib
import importlib.metadata
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import deflate
import deflate._deflate

from kiln._errors import ConfigError

TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# The exact ``deflate`` wheel (and so libdeflate) that the known answer below was made with.
DEFLATE_VERSION = "0.9.0"
MEMBER_SIZE = 16 << 20  # uncompressed bytes per gzip member


@dataclass(frozen=True)
class Compression:
    """How a layer tar becomes the blob that is pushed. ``level`` None: uncompressed."""

    level: int | None
    member_size: int = MEMBER_SIZE

    @property
    def media_type(self) -> str:
        return TAR if self.level is None else TAR_GZIP

    @property
    def name(self) -> str:
        """Names the exact bytes this writes: part of every layer cache key."""
        if self.level is None:
            return "tar"
        return f"gzip/deflate=={DEFLATE_VERSION}/level={self.level}/members={self.member_size}"


# Level 6 (libdeflate's default): on the base image's third-party layer (78 MB of tar)
# 22.06 MB in 0.7 s, vs 21.83 MB in 1.7 s at 9 and 21.23 MB in 10.7 s at 12.
GZIP_LEVEL = 6
UNCOMPRESSED = Compression(None)
GZIP = Compression(GZIP_LEVEL)


@dataclass(frozen=True)
class Written:
    """A finished blob: ``diff_id`` is the sha256 of the tar, ``digest`` of the blob."""

    diff_id: str
    digest: str
    size: int
    tar_size: int


class _Libdeflate:
    """libdeflate's gzip compression as the ``deflate`` extension bundles it, called with
    the GIL released (``ctypes.CDLL``)."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        self._alloc = lib.libdeflate_alloc_compressor
        self._alloc.argtypes, self._alloc.restype = [ctypes.c_int], ctypes.c_void_p
        self._bound = lib.libdeflate_gzip_compress_bound
        self._bound.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self._bound.restype = ctypes.c_size_t
        self._compress = lib.libdeflate_gzip_compress
        self._compress.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t
        ]  # fmt: skip
        self._compress.restype = ctypes.c_size_t
        self._free = lib.libdeflate_free_compressor
        self._free.argtypes, self._free.restype = [ctypes.c_void_p], None

    def gzip_compress(self, data: bytes, level: int) -> bytes:
        compressor = self._alloc(level)
        if not compressor:
            raise MemoryError("libdeflate could not make a compressor")
        try:
            bound = self._bound(compressor, len(data))
            out = ctypes.create_string_buffer(bound)
            size = self._compress(compressor, data, len(data), out, bound)
        finally:
            self._free(compressor)
        if size == 0:
            raise ValueError("libdeflate: the output did not fit its bound")
        return out.raw[:size]


@functools.cache
def _libdeflate() -> _Libdeflate | None:
    """The bundled libdeflate, if it is exported and writes the known answer."""
    try:
        lib = _Libdeflate(deflate._deflate.__file__)
        answer = hashlib.sha256(lib.gzip_compress(_sample(), GZIP_LEVEL)).hexdigest()
    except (OSError, AttributeError, TypeError, ValueError, MemoryError):
        return None
    return lib if answer == _KNOWN_ANSWER else None


# Threads compressing a blob's members at once (each member is compressed on its own).
COMPRESSORS = max(1, min(2, os.cpu_count() or 1))


@functools.cache
def _compressors() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(COMPRESSORS, thread_name_prefix="kiln-gzip")


def gzip_member(data: bytes, level: int) -> bytes | bytearray:
    """``data`` as one gzip member, exactly as ``deflate.gzip_compress`` writes it."""
    lib = _libdeflate()
    return lib.gzip_compress(data, level) if lib is not None else deflate.gzip_compress(data, level)


class BlobWriter:
    """A write-only file for a layer tar: hashes it, compresses it into ``out``, hashes
    that. ``tell`` counts tar bytes, as ``tarfile`` expects of its file."""

    def __init__(self, out: BinaryIO, compression: Compression) -> None:
        if compression.level is not None:
            check_pinned()
        self._out = out
        self._level = compression.level
        self._member_size = compression.member_size
        self._tar = hashlib.sha256()
        self._blob = hashlib.sha256()
        self._pending = bytearray()
        self._tar_size = 0
        self._size = 0
        # Members being compressed, in blob order; each is written when it and those
        # before it are done (a few at a time: 16 MiB each).
        self._members: collections.deque[Future[bytes | bytearray]] = collections.deque()

    def _emit(self, data: bytes | bytearray | memoryview) -> None:
        self._blob.update(data)
        self._size += len(data)
        self._out.write(data)

    def _compress(self, end: int, level: int) -> None:
        piece = bytes(self._pending[:end])
        del self._pending[:end]
        if _libdeflate() is None:  # the module's: it holds the GIL, so nothing in parallel
            self._emit(deflate.gzip_compress(piece, level))
            return
        self._members.append(_compressors().submit(gzip_member, piece, level))
        while len(self._members) > COMPRESSORS:
            self._emit(self._members.popleft().result())

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._tar.update(data)
        self._tar_size += len(data)
        if self._level is None:
            self._emit(data)
            return len(data)
        self._pending += data
        while len(self._pending) >= self._member_size:
            self._compress(self._member_size, self._level)
        return len(data)

    def tell(self) -> int:
        return self._tar_size

    def finish(self) -> Written:
        if self._pending and self._level is not None:
            self._compress(len(self._pending), self._level)
        while self._members:
            self._emit(self._members.popleft().result())
        return Written(
            diff_id=f"sha256:{self._tar.hexdigest()}",
            digest=f"sha256:{self._blob.hexdigest()}",
            size=self._size,
            tar_size=self._tar_size,
        )


def _sample() -> bytes:
    """Some text-like and some incompressible bytes, the same on every machine."""
    text = b"".join(b"%06d %d kiln layer sample\n" % (i, i * i % 9973) for i in range(8000))
    noise = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(2000))
    return text + noise + bytes(range(256)) * 64


# sha256 of gzip_compress(_sample(), 6) with deflate 0.9.0: a different libdeflate (another
# wheel version, or a source build linked to the system's) writes other bytes.
_KNOWN_ANSWER = "674e244bb052b542779ab0675f843d27cbe7afb4b0eb030f603425c873bcf095"


@functools.cache
def check_pinned() -> None:
    """A ConfigError unless this libdeflate writes the bytes kiln's digests were made with."""
    installed = importlib.metadata.version("deflate")
    answer = hashlib.sha256(deflate.gzip_compress(_sample(), GZIP_LEVEL)).hexdigest()
    _libdeflate()  # its own known answer, or the module's compression is used
    if installed != DEFLATE_VERSION or answer != _KNOWN_ANSWER:
        raise ConfigError(
            f"the `deflate` package here ({installed}) does not write the gzip bytes kiln's "
            f"image digests are computed with (deflate=={DEFLATE_VERSION}, its bundled "
            "libdeflate); reinstall kiln so its pinned dependencies are used, e.g. "
            f"`pip install --force-reinstall 'deflate=={DEFLATE_VERSION}'` (a wheel, not a "
            "source build linked to another libdeflate)"
        )
