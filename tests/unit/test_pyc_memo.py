"""Bytecode compiled once per process: the same bytes without compiling again, and
only for exactly what the bytes depend on."""

from __future__ import annotations

import marshal
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from kiln._debian.tree import FILE, Entry
from kiln._images import os_tree
from kiln._images.oci.install import compile_bytecode
from kiln._images.oci.interpreter import HostPython
from kiln._images.oci.pyc_memo import PycMemo, pyc_key

TAG = "cpython-3x"
SOURCES = {f"/usr/lib/python3/dist-packages/pkg/m{i}.py": f"X = {{{i}, 'a'}}\n" for i in range(3)}


class Counting:
    """kiln's own interpreter, counting its runs (each compiles a share of the sources)."""

    def __init__(self, identity: str = HostPython.identity) -> None:
        self.identity = identity
        self.runs = 0

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        self.runs += 1
        return HostPython().run(script, args, stdin=stdin, env=env)


def _tree(root: Path, sources: Mapping[str, str]) -> Path:
    for path, text in sources.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text)
    return root


def _pycs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.pyc")}


def test_a_source_compiled_once_gets_the_same_bytes_without_compiling_again(
    tmp_path: Path,
) -> None:
    memo, python = PycMemo(), Counting()
    first = _tree(tmp_path / "first", SOURCES)
    assert compile_bytecode(first, list(SOURCES), TAG, python, memo) == set(SOURCES)
    assert (python.runs, len(memo)) == (1, 3)
    again = _tree(tmp_path / "again", SOURCES)  # another layer, the same files
    assert compile_bytecode(again, list(SOURCES), TAG, python, memo) == set(SOURCES)
    assert python.runs == 1
    assert memo.hits == 3
    unmemoized = _tree(tmp_path / "plain", SOURCES)
    compile_bytecode(unmemoized, list(SOURCES), TAG, Counting(), None)
    assert _pycs(again) == _pycs(first) == _pycs(unmemoized)


@pytest.mark.parametrize("change", ["source", "path", "compiler"])
def test_what_the_bytes_depend_on_is_compiled_anew(tmp_path: Path, change: str) -> None:
    memo, python = PycMemo(), Counting()
    compile_bytecode(_tree(tmp_path / "first", SOURCES), list(SOURCES), TAG, python, memo)
    sources, other = dict(SOURCES), python
    if change == "source":
        sources = {p: text + "Y = 1\n" for p, text in SOURCES.items()}
    elif change == "path":  # the .pyc names its source's path (co_filename)
        sources = {p.replace("/pkg/", "/other/"): text for p, text in SOURCES.items()}
    else:  # another build of Python marshals other bytes
        other = Counting(identity="base python sha256:another")
    root = _tree(tmp_path / "second", sources)
    compile_bytecode(root, list(sources), TAG, other, memo)
    assert other.runs == (2 if other is python else 1)
    assert memo.hits == 0
    if change == "path":
        pyc = root / "usr/lib/python3/dist-packages/other/__pycache__/m0.cpython-3x.pyc"
        code = marshal.loads(pyc.read_bytes()[16:])  # noqa: S302 - bytecode this test just compiled
        assert code.co_filename.endswith("/other/m0.py")


def test_a_source_that_does_not_compile_is_left_out_each_time(tmp_path: Path) -> None:
    memo, python = PycMemo(), Counting()
    broken = {"/usr/lib/python3/dist-packages/pkg/bad.py": "def oops(:\n"}
    for n in (1, 2):
        root = _tree(tmp_path / str(n), broken)
        assert compile_bytecode(root, list(broken), TAG, python, memo) == set()
        assert python.runs == n
        assert len(memo) == 0


def test_the_memo_stops_adding_at_its_limit() -> None:
    memo = PycMemo(limit=10)
    one, two = (pyc_key("py", TAG, f"/m{i}.py", b"x") for i in (1, 2))
    memo.put(one, b"123456")
    memo.put(two, b"123456")  # over the limit: not kept
    assert (memo.get(one), memo.get(two), len(memo)) == (b"123456", None, 1)


def test_the_standard_library_another_layer_compiled_is_not_written_out_again(
    tmp_path: Path,
) -> None:
    """The arm64 OS layer's standard library, compiled for amd64's already by the same
    python3 (the compiler tree's): taken from the memo, neither tree is extracted."""
    python = Entry("usr/bin/python3.11", FILE, 0o755, data=b"\x7fELF the amd64 python3.11")
    source = Entry("usr/lib/python3.11/os.py", FILE, 0o644, data=b"import sys\n")
    identity = os_tree._identity({python.path: python}, "3.11")
    assert identity is not None
    assert identity.startswith("OS python 3.11 sha256:")
    memo = PycMemo()
    memo.put(pyc_key(identity, "cpython-311", "/usr/lib/python3.11/os.py", source.data), b"pyc")
    arm64 = {source.path: source}  # its own python3 cannot run here
    work = tmp_path / "work"
    work.mkdir()
    out = os_tree.compile_with_own_python(
        arm64, [source.path], python="3.11", work=work, compiler={python.path: python},
        memo=memo,
    )  # fmt: skip
    assert out == {"usr/lib/python3.11/__pycache__/os.cpython-311.pyc": b"pyc"}
    assert list(work.iterdir()) == []
    other = Entry(python.path, FILE, 0o755, data=b"\x7fELF another build of 3.11")
    assert os_tree._identity({python.path: other}, "3.11") != identity


def test_what_memory_lacks_is_compiled_by_the_compiler_tree_unpacked_already(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """arm64's own _sysconfigdata (amd64 has another): compiled by amd64's python3 from
    where the base is unpacked already, only that source written out."""
    python = Entry("usr/bin/python3.11", FILE, 0o755, data=b"\x7fELF the amd64 python3.11")
    own = Entry("usr/lib/python3.11/_sysconfigdata__aarch64-linux-gnu.py", FILE, 0o644,
                data=b"build_time_vars = {}\n")  # fmt: skip
    extracted: list[list[str]] = []
    ran: list[tuple[Path, list[str]]] = []
    monkeypatch.setattr(os_tree, "extract", lambda tree, root: extracted.append(sorted(tree)))

    class Python:
        def __init__(self, root: Path, image_python: str, identity: str) -> None:
            self.root, self.identity = root, identity

    def compiled(root: Path, paths: list[str], tag: str, python: Python, memo: object) -> set[str]:
        ran.append((python.root, paths))
        for p in paths:
            folder, name = p.lstrip("/").rsplit("/", 1)
            (root / folder / "__pycache__").mkdir(parents=True, exist_ok=True)
            (root / folder / "__pycache__" / f"{name[:-3]}.{tag}.pyc").write_bytes(b"pyc")
        return set(paths)

    monkeypatch.setattr(os_tree, "FolderPython", Python)
    monkeypatch.setattr(os_tree, "compile_bytecode", compiled)
    unpacked = tmp_path / "rootfs"
    work = tmp_path / "work"
    work.mkdir()
    out = os_tree.compile_with_own_python(
        {own.path: own}, [own.path], python="3.11", work=work, compiler={python.path: python},
        memo=PycMemo(), compiler_root=lambda: unpacked,
    )  # fmt: skip
    assert out == {
        "usr/lib/python3.11/__pycache__/_sysconfigdata__aarch64-linux-gnu.cpython-311.pyc": b"pyc"
    }
    assert extracted == [[own.path]]  # the source alone; not the compiler's tree
    assert ran == [(unpacked, [f"/{own.path}"])]
