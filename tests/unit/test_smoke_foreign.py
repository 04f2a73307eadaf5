"""The smoke check of a foreign platform's image: the static check on synthetic rootfs
trees (tiny hand-made ELF files), the qemu runner's command (a fake qemu that reports
how it was started), the private rootfs removed whatever happens, and ``runner_for``."""

from __future__ import annotations

import functools
import json
import struct
import sys
from pathlib import Path

import pytest

from kiln._debian.elf import EM_AARCH64, EM_X86_64, linking, soname
from kiln._errors import CommandFailed, ConfigError
from kiln._images.oci.builder import ForeignRunner
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.index import Platform
from kiln._images.oci.smoke import Run, smoke_check
from kiln._images.oci.smoke_foreign import (
    QemuContainers,
    StaticContainers,
    machine_of,
    runner_for,
    static_result,
)
from tests.oci_layers import D, F, S, layer

ARM = "linux/arm64"
REF = "127.0.0.1:5000/acme/base@sha256:" + "1" * 64
SITE = "usr/local/lib/python3.11/dist-packages"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def elf(
    machine: int,
    needed: tuple[str, ...] = (),
    *,
    runpath: str | None = None,
    rpath: str | None = None,
    name: str | None = None,
    moved: bool = False,
    tail: bytes = b"",
) -> bytes:
    """A little-endian ELF64 shared object: a header, a PT_LOAD and a PT_DYNAMIC, its
    string table and dynamic section. ``moved``: the string table's PT_LOAD has a file
    offset above its address (as patchelf leaves a library auditwheel grafted)."""
    strings = b"\0"
    entries: list[tuple[int, int]] = []

    def text(value: str) -> int:
        nonlocal strings
        at = len(strings)
        strings += value.encode() + b"\0"
        return at

    for tag, value in [(15, rpath), (29, runpath), (14, name)]:
        if value is not None:
            entries.append((tag, text(value)))
    entries += [(1, text(n)) for n in needed]
    strtab = 64 + 3 * 56
    dynamic = strtab + len(strings) + (-(strtab + len(strings)) % 8)
    base, address = (0x10000, 16) if moved else (0, strtab)  # where the strings are loaded
    dyn = b"".join(struct.pack("<qQ", t, v) for t, v in [*entries, (5, address), (0, 0)])
    total = dynamic + len(dyn)
    header = b"\x7fELF\x02\x01\x01" + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 3, machine, 1, 0, 64, 0, 0, 64, 56, 3, 0, 0, 0)
    phdr = "<IIQQQQQQ"  # p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
    phdrs = struct.pack(phdr, 1, 5, 0, base, base, total, total, 0x1000)  # PT_LOAD: all
    if moved:  # PT_LOAD of the strings alone, its offset above its address
        phdrs += struct.pack(phdr, 1, 4, strtab, 16, 16, len(strings), len(strings), 8)
    else:
        phdrs += struct.pack(phdr, 6, 4, 64, 64, 64, 3 * 56, 3 * 56, 8)  # PT_PHDR
    phdrs += struct.pack(phdr, 2, 6, dynamic, base + dynamic, 0, len(dyn), len(dyn), 8)
    body = header + phdrs + strings
    return body + bytes(dynamic - len(body)) + dyn + tail


def test_linking_reads_needed_rpath_runpath_even_with_a_moved_string_table() -> None:
    lib = elf(EM_AARCH64, ("libfoo.so.1", "libc.so.6"), runpath="$ORIGIN/../x.libs", name="a.so")
    found = linking(lib)
    assert (found.machine, found.needed) == (EM_AARCH64, ("libfoo.so.1", "libc.so.6"))
    assert (found.rpath, found.runpath) == (None, "$ORIGIN/../x.libs")
    moved = elf(EM_X86_64, ("libc.so.6",), rpath="$ORIGIN", name="libz-1234.so.1", moved=True)
    assert linking(moved).needed == ("libc.so.6",)
    assert linking(moved).rpath == "$ORIGIN"
    assert soname(moved) == "libz-1234.so.1"  # ldconfig reads it too (was: truncated)
    with pytest.raises(ValueError, match="truncated"):
        linking(lib[:200])


def _write(root: Path, path: str, data: bytes = b"") -> Path:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def _tree(root: Path, *, machine: int = EM_AARCH64) -> Path:
    """A Debian-like arm64 rootfs: python3 -> python3.11 (saying 3.11.4), a package whose
    extension links a library auditwheel grafted (RUNPATH $ORIGIN/../pkg.libs) and libc."""
    _write(root, "usr/bin/python3.11", elf(EM_AARCH64, ("libc.so.6",), tail=b"\x003.11.4\x00"))
    (root / "usr/bin/python3").symlink_to("python3.11")
    (root / "lib").symlink_to("usr/lib")
    _write(root, "usr/lib/python3.11/json/__init__.py")
    _write(root, "usr/lib/aarch64-linux-gnu/libc.so.6", elf(EM_AARCH64, name="libc.so.6"))
    ext = elf(machine, ("libfoo.so.1", "libc.so.6"), runpath="$ORIGIN/../pkg.libs")
    _write(root, f"{SITE}/pkg/__init__.py")
    _write(root, f"{SITE}/pkg/_ext.cpython-311-aarch64-linux-gnu.so", ext)
    _write(root, f"{SITE}/pkg.libs/libfoo.so.1", elf(EM_AARCH64, ("libc.so.6",), rpath="$ORIGIN"))
    _write(root, f"{SITE}/single.py")
    _write(root, f"{SITE}/native.cpython-311-aarch64-linux-gnu.so", elf(EM_AARCH64))
    meta = "Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\nRequires-Dist: other>=2\n\n"
    _write(root, f"{SITE}/pkg-1.0.dist-info/METADATA", meta.encode())
    return root


def test_the_static_check_passes_a_sound_tree_and_reports_what_python_would(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path)
    summary, result = static_result(root, ENV, ARM, ["pkg", "single", "native", "json"])
    assert result["failed"] == {}
    assert result["distributions"] == {"pkg": ["1.0", ["other>=2"]]}
    env = result["environment"]
    assert (env["platform_machine"], env["python_version"]) == ("aarch64", "3.11")
    assert env["python_full_version"] == env["implementation_version"] == "3.11.4"
    assert "/usr/bin/python3 is /usr/bin/python3.11 (aarch64, 3.11.4)" in summary
    assert "3 ELF files under /usr/local/lib/python3.11/dist-packages" in summary
    with pytest.raises(CommandFailed, match="other"):  # smoke_check's pip check applies
        smoke_check(lambda _i, _c: _run_static(root, ["pkg"]), REF, ["pkg"])


def _run_static(root: Path, modules: list[str]) -> Run:
    summary, result = static_result(root, ENV, ARM, modules)
    return Run(0, f"{summary}\n{json.dumps(result)}")


@pytest.mark.parametrize(
    ("damage", "owner", "says"),
    [
        ("missing module", "absent", "no package or module absent in /usr/lib/python3.11, "),
        (
            "grafted lib gone",
            "pkg",
            (
                "_ext.cpython-311-aarch64-linux-gnu.so needs libfoo.so.1, "
                "which is in none of /usr/local/lib/python3.11/dist-packages/pkg.libs, /lib, "
                "/usr/lib, /lib64, /usr/lib64, /lib/aarch64-linux-gnu, /usr/lib/aarch64-linux-gnu: "
                "add the OS package that ships it"
            ),
        ),
        (
            "x86_64 extension",
            "pkg",
            (
                "_ext.cpython-311-aarch64-linux-gnu.so is built for ELF "
                "machine 62, not aarch64 (linux/arm64): a wheel for another platform"
            ),
        ),
        ("x86_64 libc", "pkg", "needs libc.so.6, which is in none of"),
        ("x86_64 grafted lib", "pkg", "pkg.libs/libfoo.so.1 is built for ELF machine 62"),
    ],
)
def test_the_static_check_finds_what_would_fail_to_import(
    tmp_path: Path, damage: str, owner: str, says: str
) -> None:
    root = _tree(tmp_path, machine=EM_X86_64 if damage == "x86_64 extension" else EM_AARCH64)
    if damage == "grafted lib gone":
        (root / SITE / "pkg.libs/libfoo.so.1").unlink()
    if damage == "x86_64 libc":
        _write(root, "usr/lib/aarch64-linux-gnu/libc.so.6", elf(EM_X86_64, name="libc.so.6"))
    if damage == "x86_64 grafted lib":
        _write(root, f"{SITE}/pkg.libs/libfoo.so.1", elf(EM_X86_64))
    modules = ["pkg", "absent"] if damage == "missing module" else ["pkg"]
    _summary, result = static_result(root, ENV, ARM, modules)
    assert set(result["failed"]) == {owner}
    assert says in result["failed"][owner]
    assert "checked without running it (qemu-aarch64-static is not installed)" in str(result)


def test_the_static_check_needs_the_platform_s_python(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    with pytest.raises(ConfigError, match="no python3 on the image's PATH"):
        static_result(root, {"PATH": "/opt/bin"}, ARM, ["pkg"])
    _write(root, "usr/bin/python3.11", elf(EM_X86_64))
    with pytest.raises(ConfigError, match="built for ELF machine 62, not aarch64"):
        static_result(root, ENV, ARM, ["pkg"])


# ------------------------------------------------------------------ images in layers

_PY = elf(EM_AARCH64, tail=b"\x003.11.4\x00")


def _image(
    tmp_path: Path, *entries: tuple[str, bytes, bytes, str], workdir: str = ""
) -> BuiltImage:
    settings: dict[str, object] = {"Env": ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"]}
    if workdir:
        settings["WorkingDir"] = workdir
    config = json.dumps({"architecture": "arm64", "os": "linux", "config": settings}).encode()
    blob = layer(tmp_path, "layer", *entries)
    return BuiltImage(config=config, manifest=b"{}", layers=(blob,))


_FAKE_QEMU = """\
import json, os, sys
print("noise on stderr", file=sys.stderr)
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}))
sys.exit(int(os.environ.get("EXIT", "0")))
"""


def _fake_qemu(folder: Path) -> Path:
    qemu = _write(folder, "qemu-aarch64-static", f"#!{sys.executable}\n{_FAKE_QEMU}".encode())
    qemu.chmod(0o755)
    return qemu


def test_qemu_runs_the_image_s_own_program_found_on_its_path(tmp_path: Path) -> None:
    image = _image(
        tmp_path,
        ("usr/bin/python3.11", F, _PY, ""),
        ("usr/bin/python3", S, b"", "/usr/bin/python3.11"),  # absolute: inside the image
        ("srv", D, b"", ""),
        workdir="/srv",
    )
    unpack = tmp_path / "unpack"
    unpack.mkdir()
    qemu = _fake_qemu(tmp_path / "bin")
    runner = QemuContainers(image, ARM, str(qemu), tmp=unpack)
    run = runner(REF, ["python3", "-c", "print(1)", "pkg"])
    assert run.exit_code == 0
    started = json.loads(run.output)
    (root,) = {a for a in started["argv"] if a.startswith(str(unpack))} - {
        a for a in started["argv"] if a.endswith("python3.11")
    }
    # the symlink leads out of the folder on this machine: started by the file it means
    assert started["argv"] == ["-L", root, f"{root}/usr/bin/python3.11", "-c", "print(1)", "pkg"]
    assert started["cwd"] == f"{root}/srv"
    assert started["env"] == {"PATH": "/usr/local/bin:/usr/bin", "LANG": "C.UTF-8", "HOME": "/root"}
    assert list(unpack.iterdir()) == []  # removed afterwards


def test_qemu_starts_a_relative_link_by_its_own_name_and_an_absolute_path_as_given(
    tmp_path: Path,
) -> None:
    image = _image(
        tmp_path,
        ("usr/bin/python3.11", F, _PY, ""),
        ("usr/bin/python3", S, b"", "python3.11"),
        ("opt/tool", F, _PY, ""),
    )
    qemu = str(_fake_qemu(tmp_path / "bin"))
    run = QemuContainers(image, ARM, qemu, tmp=tmp_path)(REF, ["python3", "-V"])
    assert json.loads(run.output)["argv"][2].endswith("/usr/bin/python3")
    run = QemuContainers(image, ARM, qemu, tmp=tmp_path)(REF, ["/opt/tool", "x"])
    assert json.loads(run.output)["argv"][2:] == [
        json.loads(run.output)["argv"][1] + "/opt/tool",
        "x",
    ]
    missing = QemuContainers(image, ARM, qemu)(REF, ["/usr/bin/perl"])
    assert (missing.exit_code, missing.output) == (
        127, f"/usr/bin/perl: not found in {REF} (PATH=/usr/local/bin:/usr/bin)"
    )  # fmt: skip


def test_the_private_rootfs_is_removed_when_the_run_or_the_unpack_fails(tmp_path: Path) -> None:
    image = _image(tmp_path, ("usr/bin/python3", F, _PY, ""))
    unpack = tmp_path / "unpack"
    unpack.mkdir()
    script = "import sys; print('qemu: boom', file=sys.stderr); sys.exit(3)\n"
    failing = _write(tmp_path, "bin/qemu-aarch64-static", f"#!{sys.executable}\n{script}".encode())
    failing.chmod(0o755)
    run = QemuContainers(image, ARM, str(failing), tmp=unpack)(REF, ["python3", "-V"])
    assert (run.exit_code, run.output.strip()) == (3, "qemu: boom")
    assert list(unpack.iterdir()) == []
    broken = image.layers[0].path
    broken.write_bytes(broken.read_bytes()[:40])
    for runner in (QemuContainers(image, ARM, str(failing), tmp=unpack),
                   StaticContainers(image, ARM, tmp=unpack)):  # fmt: skip
        with pytest.raises(CommandFailed, match=f"smoke check of {REF}: cannot unpack its layers"):
            runner(REF, ["python3", "-c", "script", "pkg"])
        assert list(unpack.iterdir()) == []


def test_a_static_smoke_failure_names_the_image_the_module_and_the_fix(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    (tree / SITE / "pkg.libs/libfoo.so.1").unlink()
    entries = []
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if path.is_symlink():
            entries.append((rel, S, b"", str(path.readlink())))
        elif path.is_file():
            entries.append((rel, F, path.read_bytes(), ""))
    runner = StaticContainers(_image(tmp_path, *entries), ARM, tmp=tmp_path)
    with pytest.raises(CommandFailed) as failed:
        smoke_check(runner, REF, ["pkg", "single"], fix=lambda names: f"bump {names}")
    assert str(failed.value).startswith(f"smoke check of {REF} failed: import pkg failed:\n")
    assert "needs libfoo.so.1, which is in none of" in str(failed.value)
    assert str(failed.value).endswith("\nBump ['pkg']")


def test_runner_for_takes_qemu_when_it_is_there_and_says_when_it_is_not(tmp_path: Path) -> None:
    image = _image(tmp_path, ("usr/bin/python3", F, _PY, ""))
    notes: list[str] = []
    qemu = _fake_qemu(tmp_path / "bin")
    assert isinstance(runner_for(ARM, image, note=notes.append, search_path=str(qemu.parent)),
                      QemuContainers)  # fmt: skip
    assert notes == []
    assert isinstance(runner_for(ARM, image, note=notes.append, search_path=""), StaticContainers)
    (note,) = notes
    assert note.strip().startswith(
        f"linux/arm64: qemu-aarch64-static is not installed, so {image.digest} is checked "
        "without running it"
    )
    assert note.endswith("to import them under emulation: `sudo apt-get install qemu-user-static`")
    assert machine_of("linux/amd64").qemu == "qemu-x86_64-static"  # from an arm64 machine
    assert machine_of("linux/arm64/v8").qemu == "qemu-aarch64-static"
    with pytest.raises(ConfigError, match="linux/s390x"):
        runner_for("linux/s390x", image, note=notes.append)


def test_runner_for_is_the_builder_s_foreign_runner(tmp_path: Path) -> None:
    image = _image(tmp_path, ("usr/bin/python3", F, _PY, ""))
    notes: list[str] = []
    foreign: ForeignRunner = functools.partial(runner_for, note=notes.append, search_path="")
    assert isinstance(foreign(Platform.parse(ARM), image), StaticContainers)
    assert notes[0].strip().startswith("linux/arm64/v8: qemu-aarch64-static is not installed")
