"""Deterministic layer tars and pinned gzip blobs."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln._images.oci import compress
from kiln._images.oci.compress import (
    GZIP,
    TAR,
    TAR_GZIP,
    UNCOMPRESSED,
    BlobWriter,
    Compression,
    check_pinned,
)
from kiln._images.oci.layers import write_layer, write_tar
from kiln._util.epoch import MTIME

FILES = {
    "usr/local/bin/tool": (b"#!/usr/bin/python3\nprint('hi')\n", True),
    "usr/local/lib/python3.11/dist-packages/pkg/__init__.py": (b"X = 1\n", False),
    "usr/local/lib/python3.11/dist-packages/pkg/data/table.csv": (b"a,b\n1,2\n", False),
    "usr/local/lib/python3.11/dist-packages/pkg-1.0.dist-info/RECORD": (b"pkg/a.py,,\n", False),
    "usr/local/lib/python3.11/dist-packages/pkg_long/" + "n" * 120 + ".py": (b"", False),
}  # fmt: skip


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def make_tree(root: Path, order: list[str], *, file_umask: int, seed: int) -> Path:
    """FILES under ``root``, created in ``order`` with ``file_umask`` and random mtimes."""
    rng = random.Random(seed)  # noqa: S311 - mtimes, not secrets
    os.umask(file_umask)
    for rel in order:
        data, executable = FILES[rel]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if executable:
            path.chmod(0o700 if file_umask == 0o077 else 0o775)
    for path in [root, *root.rglob("*")]:
        stamp = rng.randint(0, 2_000_000_000)
        os.utime(path, (stamp, stamp))
    return root


def gzip_members(blob: bytes) -> int:
    count = 0
    while blob:
        member = zlib.decompressobj(wbits=31)  # one gzip member
        member.decompress(blob)
        blob = member.unused_data
        count += 1
    return count


def tar_of(root: Path) -> bytes:
    out = io.BytesIO()
    write_tar(root, out)
    return out.getvalue()


@pytest.mark.usefixtures("umask")
def test_same_files_give_the_same_bytes_whatever_order_mtimes_and_umask(tmp_path: Path) -> None:
    names = sorted(FILES)
    one = make_tree(tmp_path / "one", names, file_umask=0o022, seed=1)
    two = make_tree(tmp_path / "two", names[::-1], file_umask=0o077, seed=2)
    assert tar_of(one) == tar_of(two)
    blobs = [write_layer(root, io.BytesIO(), GZIP) for root in (one, two)]
    assert blobs[0] == blobs[1]


@pytest.mark.usefixtures("umask")
def test_entries_are_sorted_root_owned_with_parents_and_normalised_modes(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t", sorted(FILES), file_umask=0o077, seed=3)
    data = tar_of(root)
    assert data[257:265] == b"ustar\x0000"  # POSIX headers (PAX format)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    site = "usr/local/lib/python3.11/dist-packages"
    assert [(m.name, oct(m.mode), m.type) for m in members] == [
        ("usr", "0o755", tarfile.DIRTYPE),
        ("usr/local", "0o755", tarfile.DIRTYPE),
        ("usr/local/bin", "0o755", tarfile.DIRTYPE),
        ("usr/local/bin/tool", "0o755", tarfile.REGTYPE),
        ("usr/local/lib", "0o755", tarfile.DIRTYPE),
        ("usr/local/lib/python3.11", "0o755", tarfile.DIRTYPE),
        (site, "0o755", tarfile.DIRTYPE),
        (f"{site}/pkg", "0o755", tarfile.DIRTYPE),
        (f"{site}/pkg/__init__.py", "0o644", tarfile.REGTYPE),
        (f"{site}/pkg/data", "0o755", tarfile.DIRTYPE),
        (f"{site}/pkg/data/table.csv", "0o644", tarfile.REGTYPE),
        (f"{site}/pkg-1.0.dist-info", "0o755", tarfile.DIRTYPE),
        (f"{site}/pkg-1.0.dist-info/RECORD", "0o644", tarfile.REGTYPE),
        (f"{site}/pkg_long", "0o755", tarfile.DIRTYPE),
        (f"{site}/pkg_long/{'n' * 120}.py", "0o644", tarfile.REGTYPE),  # a PAX path header
    ]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(MTIME, 0, 0, "", "")}
    assert b"/" + b"n" * 120 + b".py" in data  # the long name is kept whole, in a PAX record


def test_gzip_blob_is_fixed_size_members_whatever_the_writes(tmp_path: Path) -> None:
    payload = b"".join(b"line %d of a layer\n" % i for i in range(5000))
    small = Compression(6, member_size=4096)
    outputs = []
    for step in (1, 777, len(payload)):
        out = io.BytesIO()
        writer = BlobWriter(out, small)
        for start in range(0, len(payload), step):
            writer.write(payload[start : start + step])
        written = writer.finish()
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] == outputs[2]
    blob = outputs[0]
    assert gzip.decompress(blob) == payload  # members concatenate into one gzip stream
    assert gzip_members(blob) == -(-len(payload) // 4096)
    assert written.diff_id == f"sha256:{hashlib.sha256(payload).hexdigest()}"
    assert written.digest == f"sha256:{hashlib.sha256(blob).hexdigest()}"
    assert (written.size, written.tar_size) == (len(blob), len(payload))


def test_an_uncompressed_blob_is_the_tar_itself(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    out = io.BytesIO()
    written = write_layer(tmp_path, out, UNCOMPRESSED)
    assert written.digest == written.diff_id
    assert out.getvalue() == tar_of(tmp_path)
    assert (UNCOMPRESSED.media_type, GZIP.media_type) == (TAR, TAR_GZIP)


def test_the_compressor_is_the_pinned_one() -> None:
    check_pinned()  # the known answer of deflate==0.9.0 at kiln's level
    assert GZIP.name == "gzip/deflate==0.9.0/level=6/members=16777216"


def test_members_compressed_by_threads_are_the_bytes_the_deflate_module_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libdeflate called with the GIL let go (members compressed at once, written in
    order) gives exactly what the ``deflate`` module's one-at-a-time calls give."""
    payload = os.urandom(3000) + b"".join(b"row %d, a layer's text\n" % i for i in range(9000))
    small = Compression(6, member_size=4096)

    def blob() -> bytes:
        out = io.BytesIO()
        writer = BlobWriter(out, small)
        for start in range(0, len(payload), 1000):
            writer.write(payload[start : start + 1000])
        writer.finish()
        return out.getvalue()

    assert compress._libdeflate() is not None  # the wheel's library is exported here
    threaded = blob()
    monkeypatch.setattr(compress, "_libdeflate", lambda: None)
    assert blob() == threaded
    assert gzip_members(threaded) == -(-len(payload) // 4096)
    assert gzip.decompress(threaded) == payload
