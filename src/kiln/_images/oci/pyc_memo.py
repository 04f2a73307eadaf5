"""The bytecode this process has compiled, by everything its bytes depend on.

A ``.pyc`` written with checked-hash invalidation is a function of the compiling
interpreter (its ``identity``: the exact build, since patch releases marshal
differently), the path it names as its source (``dfile``, in every code object's
``co_filename``) and the source's bytes; the fixed hash seed the compilers run with
takes care of the rest. So a source compiled once need not be compiled again in this
process: not for the arm64 image, whose layers are compiled by this machine's
interpreter of the same OS lock (numpy's and the standard library's ``.py`` files are
the same on both platforms), nor for the next image that bakes the same wheel.

Nothing is read from disk or from another process: an entry is bytes this process's
compiler wrote for exactly that key. The memo holds at most ``limit`` bytes and then
stops adding (a release's worth of bytecode is tens of MB).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

LIMIT = 192 * 1024 * 1024


@dataclass(frozen=True)
class PycKey:
    """What a ``.pyc``'s bytes depend on."""

    compiler: str  # the interpreter's identity
    cache_tag: str  # "cpython-311"
    dfile: str  # the source's path in the image, as the bytecode names it
    source: str  # sha256 of the source's bytes


def pyc_key(compiler: str, cache_tag: str, dfile: str, source: bytes) -> PycKey:
    return PycKey(compiler, cache_tag, dfile, hashlib.sha256(source).hexdigest())


class PycMemo:
    """``.pyc`` bytes by ``PycKey``; safe to share between threads."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._size = 0
        self._pycs: dict[PycKey, bytes] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: PycKey) -> bytes | None:
        with self._lock:
            found = self._pycs.get(key)
            if found is not None:
                self.hits += 1
            return found

    def put(self, key: PycKey, pyc: bytes) -> None:
        with self._lock:
            if key in self._pycs or self._size + len(pyc) > self._limit:
                return
            self._pycs[key] = pyc
            self._size += len(pyc)

    def __len__(self) -> int:
        return len(self._pycs)


PYCS = PycMemo()
"""This process's memo: what ``compile_bytecode`` uses unless given another."""
