"""The OS layer's tree: packages' entries checked against each other, what maintainer
scripts would have written, the standard library's bytecode, and one deterministic tar."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from collections.abc import Mapping, Sequence

import pytest

from kiln._debian.deb import Deb
from kiln._debian.layer import (
    GROUP,
    NONROOT,
    PASSWD,
    Release,
    TreeBuilder,
    add_bytecode,
    add_packages,
    add_system,
    write_tree,
)
from kiln._debian.tree import DIR, FILE, SYMLINK, Entry
from kiln._errors import ConfigError
from kiln._util.epoch import MTIME

CONFLICT = (
    "both ship it, with different content; a path must belong to one package: drop one of "
    "them from [tool.kiln.os] packages (or the image's os-packages)"
)


def f(path: str, data: bytes | str = b"", mode: int = 0o644, owner: str = "") -> Entry:
    return Entry(
        path, FILE, mode, data=data.encode() if isinstance(data, str) else data, owner=owner
    )


def d(path: str, mode: int = 0o755, owner: str = "", uid: int = 0) -> Entry:
    return Entry(path, DIR, mode, uid=uid, gid=uid, owner=owner)


def ln(path: str, target: str, owner: str = "") -> Entry:
    return Entry(path, SYMLINK, 0o777, target=target, owner=owner)


def a_deb(name: str, *entries: Entry, md5sums: bytes = b"", control: str = "") -> Deb:
    text = control or f"Package: {name}\nVersion: 1.0\nArchitecture: amd64\nDescription: x\n"
    owned = tuple(dataclasses.replace(e, owner=name) for e in entries)
    return Deb(name, text.encode(), md5sums, owned)


# ------------------------------------------------------------------ TreeBuilder
def test_add_makes_the_missing_folders_above_an_entry() -> None:
    builder = TreeBuilder()
    builder.add(f("usr/lib/x86_64-linux-gnu/libz.so.1", "z", owner="zlib1g"))
    assert builder.entries == {
        "usr": d("usr", owner="zlib1g"),
        "usr/lib": d("usr/lib", owner="zlib1g"),
        "usr/lib/x86_64-linux-gnu": d("usr/lib/x86_64-linux-gnu", owner="zlib1g"),
        "usr/lib/x86_64-linux-gnu/libz.so.1": f(
            "usr/lib/x86_64-linux-gnu/libz.so.1", "z", owner="zlib1g"
        ),
    }


def test_one_path_shipped_the_same_twice_is_one_entry_and_folders_keep_the_first_mode() -> None:
    builder = TreeBuilder()
    builder.add(d("etc", 0o755, owner="base-files"))
    builder.add(f("etc/services", "ssh 22/tcp\n", owner="netbase"))
    builder.add(f("etc/services", "ssh 22/tcp\n", owner="other"))
    builder.add(d("etc", 0o700, owner="other"))
    assert builder.entries["etc"] == d("etc", 0o755, owner="base-files")
    assert builder.entries["etc/services"].owner == "netbase"


@pytest.mark.parametrize(
    "second",
    [
        f("usr/bin/awk", "gawk", 0o755, owner="gawk"),  # other bytes
        f("usr/bin/awk", "mawk", 0o700, owner="gawk"),  # other mode
        ln("usr/bin/awk", "gawk", owner="gawk"),  # a link for a file
        d("usr/bin/awk", owner="gawk"),  # a folder for a file
        Entry("usr/bin/awk", FILE, 0o755, data=b"mawk", uid=1, owner="gawk"),  # other owner
    ],
)
def test_one_path_shipped_differently_names_both_packages(second: Entry) -> None:
    builder = TreeBuilder()
    builder.add(f("usr/bin/awk", "mawk", 0o755, owner="mawk"))
    with pytest.raises(ConfigError) as err:
        builder.add(second)
    assert str(err.value) == f"/usr/bin/awk: mawk and gawk {CONFLICT}"


def test_a_layer_below_is_checked_but_not_written_again() -> None:
    below = {
        "usr": d("usr", owner="the OS layer"),
        "usr/bin": d("usr/bin", owner="the OS layer"),
        "usr/bin/python3": ln("usr/bin/python3", "python3.11", owner="the OS layer"),
    }
    builder = TreeBuilder(below)
    builder.add(f("usr/bin/gomp-tool", "x", owner="libgomp1"))
    builder.add(ln("usr/bin/python3", "python3.11", owner="libgomp1"))
    assert builder.entries == {"usr/bin/gomp-tool": f("usr/bin/gomp-tool", "x", owner="libgomp1")}
    assert builder.merged() == {**below, **builder.entries}
    with pytest.raises(ConfigError) as err:
        builder.add(ln("usr/bin/python3", "python3.12", owner="python3"))
    assert str(err.value) == f"/usr/bin/python3: the OS layer and python3 {CONFLICT}"
    builder.replace(f("etc/passwd", "root"))
    with pytest.raises(ConfigError, match=r"^/etc/passwd: kiln and base-passwd both ship it"):
        builder.add(f("etc/passwd", "root:x:0:0", owner="base-passwd"))


def test_replace_writes_kiln_s_version_over_a_package_s() -> None:
    builder = TreeBuilder()
    builder.add(f("etc/ld.so.cache", "from a package", owner="libc-bin"))
    builder.replace(f("etc/ld.so.cache", "kiln's"))
    builder.replace(f("var/lib/dpkg/status.d/x", "kiln's"))
    assert builder.entries["etc/ld.so.cache"] == f("etc/ld.so.cache", "kiln's")
    assert builder.entries["var/lib/dpkg"] == d("var/lib/dpkg")


# ------------------------------------------------------------------ add_packages
def test_add_packages_writes_each_package_s_files_status_and_md5sums() -> None:
    control = (
        "Package: dash\nVersion: 0.5.12-2\nArchitecture: amd64\nDescription: POSIX shell\n ok\n"
    )
    dash = a_deb(
        "dash",
        d("usr/bin"),
        f("usr/bin/dash", "elf", 0o755),
        md5sums=b"abc  usr/bin/dash\n",
        control=control,
    )
    tzdata = a_deb("tzdata", f("usr/share/zoneinfo/Etc/UTC", "TZif"))
    builder = TreeBuilder()
    add_packages(builder, [tzdata, dash])
    tree = builder.entries
    assert tree["usr/bin/dash"] == f("usr/bin/dash", "elf", 0o755, owner="dash")
    assert tree["var/lib/dpkg/status.d/dash"] == f(
        "var/lib/dpkg/status.d/dash",
        "Package: dash\nStatus: install ok installed\nVersion: 0.5.12-2\nArchitecture: amd64\n"
        "Description: POSIX shell\n ok\n",
    )
    assert tree["var/lib/dpkg/status.d/dash.md5sums"] == f(
        "var/lib/dpkg/status.d/dash.md5sums", "abc  usr/bin/dash\n"
    )
    assert "var/lib/dpkg/status.d/tzdata" in tree
    assert "var/lib/dpkg/status.d/tzdata.md5sums" not in tree  # it has none


def test_add_packages_names_the_conflicting_packages_in_name_order() -> None:
    gawk = a_deb("gawk", f("usr/bin/awk", "gawk"))
    mawk = a_deb("mawk", f("usr/bin/awk", "mawk"))
    for order in ([gawk, mawk], [mawk, gawk]):
        with pytest.raises(ConfigError) as err:
            add_packages(TreeBuilder(), order)
        assert str(err.value) == f"/usr/bin/awk: gawk and mawk {CONFLICT}"


# ------------------------------------------------------------------ add_system
PYTHON = f("usr/bin/python3.11", b"\x7fELF python", 0o755, owner="python3.11-minimal")
CERTS = "usr/share/ca-certificates/mozilla"
OS_RELEASE = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
    'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
    'HOME_URL="https://www.debian.org/"\nSUPPORT_URL="https://www.debian.org/support"\n'
    'BUG_REPORT_URL="https://bugs.debian.org/"\n'
)


BOOKWORM = Release("bookworm", "12.8")


def system(*entries: Entry, release: Release = BOOKWORM) -> dict[str, Entry]:
    builder = TreeBuilder()
    for entry in entries:
        builder.add(entry)
    assert add_system(builder, release) == "3.11"
    return builder.entries


def test_add_system_writes_what_maintainer_scripts_and_base_files_would_have() -> None:
    tree = system(
        PYTHON,
        f("usr/lib64/ld-linux-x86-64.so.2", "ld", 0o755),
        f(f"{CERTS}/ISRG_Root_X1.crt", "-----ISRG-----"),  # no final newline
        f(f"{CERTS}/Amazon_Root_CA_1.crt", "-----AMAZON-----\n"),
        f("usr/share/ca-certificates/README", "not a certificate\n"),
        f("usr/share/zoneinfo/Etc/UTC", "TZif"),
    )
    links = {p: e.target for p, e in tree.items() if e.kind == SYMLINK}
    assert links == {
        "bin": "usr/bin",
        "sbin": "usr/sbin",
        "lib": "usr/lib",
        "lib64": "usr/lib64",  # lib32 and libx32: no package ships them
        "usr/bin/python3": "python3.11",
        "usr/bin/python": "python3.11",
        "usr/lib/ssl/cert.pem": "/etc/ssl/certs/ca-certificates.crt",
        "usr/lib/ssl/certs": "/etc/ssl/certs",
        "etc/localtime": "/usr/share/zoneinfo/Etc/UTC",
        "etc/os-release": "../usr/lib/os-release",
    }
    folders = {p: (e.mode, e.uid, e.gid) for p, e in tree.items() if e.kind == DIR}
    assert folders["tmp"] == folders["var/tmp"] == (0o1777, 0, 0)
    assert folders["root"] == (0o700, 0, 0)
    assert folders["home/nonroot"] == (0o700, NONROOT, NONROOT) == (0o700, 65532, 65532)
    for path in (
        "usr/sbin",
        "usr/local/bin",
        "usr/local/sbin",
        "etc/ssl/certs",
        "var/lib/dpkg/status.d",
        "usr/local/lib/python3.11/dist-packages",
    ):
        assert folders[path] == (0o755, 0, 0), path
    files = {p: e.data.decode() for p, e in tree.items() if e.kind == FILE}
    assert files["etc/passwd"] == PASSWD
    assert "nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n" in PASSWD
    assert PASSWD.startswith("root:x:0:0:root:/root:/bin/sh\n")
    assert files["etc/group"] == GROUP == "root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n"
    assert files["etc/nsswitch.conf"].startswith("passwd: files\ngroup: files\n")
    assert files["etc/ssl/certs/ca-certificates.crt"] == "-----AMAZON-----\n-----ISRG-----\n"
    assert files["etc/timezone"] == "Etc/UTC\n"
    assert files["usr/lib/os-release"] == OS_RELEASE
    assert files["etc/debian_version"] == "12.8\n"
    assert all(e.mode == 0o644 for p, e in tree.items() if p.startswith("etc/") and e.kind == FILE)


def test_add_system_without_certificates_zones_or_a_point_release_writes_none_of_them() -> None:
    tree = system(PYTHON, release=Release("trixie", ""))
    for path in (
        "etc/ssl/certs/ca-certificates.crt",
        "usr/lib/ssl/cert.pem",
        "etc/localtime",
        "etc/timezone",
        "etc/debian_version",
        "lib64",
    ):
        assert path not in tree, path
    assert tree["usr/lib/os-release"].data.decode() == (
        'PRETTY_NAME="Debian GNU/Linux trixie"\nNAME="Debian GNU/Linux"\nVERSION="trixie"\n'
        "VERSION_CODENAME=trixie\nID=debian\n"
        'HOME_URL="https://www.debian.org/"\nSUPPORT_URL="https://www.debian.org/support"\n'
        'BUG_REPORT_URL="https://bugs.debian.org/"\n'
    )


def test_add_system_keeps_the_python3_link_a_package_ships() -> None:
    shipped = ln("usr/bin/python3", "python3.11", owner="python3-minimal")
    tree = system(PYTHON, shipped)
    assert tree["usr/bin/python3"] == shipped
    assert tree["usr/bin/python"] == ln("usr/bin/python", "python3.11")


def test_add_system_replaces_what_packages_ship_in_kiln_s_place() -> None:
    tree = system(PYTHON, f("etc/passwd", "root:x:0:0::/root:/bin/bash\n", owner="base-passwd"))
    assert tree["etc/passwd"] == f("etc/passwd", PASSWD)


@pytest.mark.parametrize(
    ("pythons", "shipped"),
    [
        ((), "none"),
        (("usr/bin/python3.11", "usr/bin/python3.12"), "python3.11, python3.12"),
    ],
)
def test_add_system_needs_exactly_one_python(pythons: tuple[str, ...], shipped: str) -> None:
    builder = TreeBuilder()
    for path in pythons:
        builder.add(f(path, "elf", 0o755, owner="python"))
    builder.add(ln("usr/bin/python3.13", "python3.11"))  # a link is no interpreter
    with pytest.raises(ConfigError) as err:
        add_system(builder, BOOKWORM)
    assert str(err.value) == (
        "[tool.kiln.os] packages must install one Python (python3.X-minimal); the packages "
        f"ship {shipped}"
    )


# ------------------------------------------------------------------ add_bytecode
def test_add_bytecode_compiles_the_standard_library_and_owns_it_like_its_source() -> None:
    builder = TreeBuilder({"usr/bin/python3.11": PYTHON})
    for entry in (
        f("usr/lib/python3.11/os.py", "import abc", owner="libpython3.11-minimal"),
        f("usr/lib/python3.11/json/__init__.py", "", owner="libpython3.11-stdlib"),
        f("usr/lib/python3.11/json/tool.txt", "", owner="libpython3.11-stdlib"),
        ln("usr/lib/python3.11/sitecustomize.py", "/etc/python3.11/sitecustomize.py"),
        f("usr/lib/python3/dist-packages/six.py", "", owner="python3-six"),
        f("usr/lib/python3.11/site-packages/x.py", "", owner="x"),
        f("usr/lib/python3.11/dist-packages/y.py", "", owner="y"),
        f("usr/lib/python3.12/os.py", "", owner="libpython3.12-minimal"),
    ):
        builder.add(entry)
    asked: list[tuple[Mapping[str, Entry], Sequence[str]]] = []

    def compile_tree(tree: Mapping[str, Entry], sources: Sequence[str]) -> Mapping[str, bytes]:
        asked.append((tree, sources))
        return {
            "usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc": b"pyc json",
            "usr/lib/python3.11/__pycache__/os.cpython-311.pyc": b"pyc os",
        }

    add_bytecode(builder, "3.11", compile_tree)
    [(tree, sources)] = asked
    assert list(sources) == ["usr/lib/python3.11/json/__init__.py", "usr/lib/python3.11/os.py"]
    assert tree["usr/bin/python3.11"] == PYTHON  # the layers below too: the interpreter
    assert builder.entries["usr/lib/python3.11/__pycache__/os.cpython-311.pyc"] == f(
        "usr/lib/python3.11/__pycache__/os.cpython-311.pyc",
        "pyc os",
        owner="libpython3.11-minimal",
    )
    pyc = builder.entries["usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc"]
    assert (pyc.owner, pyc.data, pyc.mode) == ("libpython3.11-stdlib", b"pyc json", 0o644)
    assert builder.entries["usr/lib/python3.11/json/__pycache__"] == d(
        "usr/lib/python3.11/json/__pycache__", owner="libpython3.11-stdlib"
    )


# ------------------------------------------------------------------ write_tree
ENTRIES = [
    d("usr"),
    d("usr/bin"),
    f("usr/bin/dash", b"\x7fELF", 0o755),
    ln("bin", "usr/bin"),
    d("tmp", 0o1777),
    d("home/nonroot", 0o700, uid=NONROOT),
    d("home"),
    f("usr/bin/su", "su", 0o4755),
    Entry("etc/shadow", FILE, 0o640, data=b"root:*:", gid=42),
    d("etc"),
    d("usr-local"),
    d("usr/bin-extra"),
]


def written(entries: Sequence[Entry]) -> bytes:
    out = io.BytesIO()
    write_tree(entries, out)
    return out.getvalue()


def test_write_tree_gives_the_same_bytes_for_the_same_entries_in_any_order() -> None:
    data = written(ENTRIES)
    assert written(ENTRIES[::-1]) == data
    assert written(sorted(ENTRIES, key=lambda e: e.mode)) == data
    assert written([*ENTRIES[:-1], d("usr/bin-extra", 0o700)]) != data


def test_write_tree_puts_each_folder_before_what_it_holds_with_modes_and_owners() -> None:
    with tarfile.open(fileobj=io.BytesIO(written(ENTRIES[::-1]))) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [
            "bin",
            "etc",
            "etc/shadow",
            "home",
            "home/nonroot",
            "tmp",
            "usr",
            "usr/bin",
            "usr/bin/dash",
            "usr/bin/su",
            "usr/bin-extra",
            "usr-local",
        ]
        by_name = {m.name: m for m in members}
        dash = tar.extractfile(by_name["usr/bin/dash"])
        assert dash is not None
        assert dash.read() == b"\x7fELF"
    assert {(m.mtime, m.uname, m.gname) for m in members} == {(MTIME, "", "")}
    assert by_name["tmp"].mode == 0o1777
    assert by_name["usr/bin/su"].mode == 0o4755
    assert (by_name["home/nonroot"].uid, by_name["home/nonroot"].gid) == (NONROOT, NONROOT)
    assert (by_name["etc/shadow"].mode, by_name["etc/shadow"].gid) == (0o640, 42)
    assert by_name["bin"].issym()
    assert by_name["bin"].linkname == "usr/bin"
    assert by_name["usr/bin"].isdir()
