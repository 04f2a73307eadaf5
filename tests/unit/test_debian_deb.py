"""A .deb read as layer entries: control and md5sums kept, data.tar's members moved to
merged /usr with their own modes and owners, documentation dropped but the licence kept,
hard links read as files."""

from __future__ import annotations

import pytest

from kiln._debian.deb import dropped, read_deb
from kiln._debian.tree import DIR, FILE, SYMLINK, Entry
from kiln._errors import ArtifactAltered
from tests.debian_sample import (
    Member,
    ar,
    control_text,
    deb,
    file,
    folder,
    hardlink,
    symlink,
    tar,
)

WHERE = "dash_0.5.12-2_amd64.deb (images/os.lock)"
MD5SUMS = b"0123456789abcdef0123456789abcdef  usr/bin/dash\n"
DASH = [
    folder("./"),
    folder("./bin"),
    file("./bin/dash", b"\x7fELF dash", 0o755),
    symlink("./bin/sh", "dash"),
    folder("./usr"),
    folder("./usr/share"),
    folder("./usr/share/doc"),
    folder("./usr/share/doc/dash"),
    file("./usr/share/doc/dash/copyright", "Copyright: dash authors\n"),
    file("./usr/share/doc/dash/changelog.Debian.gz", b"\x1f\x8b"),
    folder("./usr/share/man/man1"),
    file("./usr/share/man/man1/dash.1.gz", b"\x1f\x8b"),
]


def entries(members: list[Member], name: str = "dash") -> dict[str, Entry]:
    found = read_deb(deb(name, members), name=name, where=WHERE).entries
    assert len({e.path for e in found}) == len(found)
    return {e.path: e for e in found}


def test_control_md5sums_and_entries_of_a_package() -> None:
    data = deb("dash", DASH, version="0.5.12-2", md5sums=MD5SUMS)
    read = read_deb(data, name="dash", where=WHERE)
    assert read.name == "dash"
    assert read.control == control_text("dash", "0.5.12-2").encode()
    assert read.md5sums == MD5SUMS
    assert read.entries == (
        Entry("usr/bin", DIR, 0o755, owner="dash"),
        Entry("usr/bin/dash", FILE, 0o755, data=b"\x7fELF dash", owner="dash"),
        Entry("usr/bin/sh", SYMLINK, 0o777, target="dash", owner="dash"),
        Entry("usr", DIR, 0o755, owner="dash"),
        Entry("usr/share", DIR, 0o755, owner="dash"),
        Entry("usr/share/doc", DIR, 0o755, owner="dash"),
        Entry(
            "usr/share/doc/dash/copyright",
            FILE,
            0o644,
            data=b"Copyright: dash authors\n",
            owner="dash",
        ),
    )


def test_a_package_without_md5sums_has_none() -> None:
    assert read_deb(deb("dash", DASH, md5sums=None), name="dash", where=WHERE).md5sums == b""


@pytest.mark.parametrize("compression", ["xz", "gz"])
def test_control_and_data_tars_are_read_whatever_their_compression(compression: str) -> None:
    data = deb("dash", DASH, md5sums=MD5SUMS, compression=compression)
    read = read_deb(data, name="dash", where=WHERE)
    assert (read.md5sums, len(read.entries)) == (MD5SUMS, 7)


def test_top_level_folders_move_under_usr_and_links_keep_their_target() -> None:
    found = entries(
        [
            file("./lib/x86_64-linux-gnu/libc.so.6", b"libc", 0o755),
            symlink("./lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld.so"),
            file("./sbin/ldconfig", b"ldconfig", 0o755),
            file("./etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n"),
            file("./usr/lib/os-release", "ID=debian\n"),
            file("usr/bin/plain", b"no ./ prefix"),
        ],
        name="libc6",
    )
    assert sorted(found) == [
        "etc/ld.so.conf",
        "usr/bin/plain",
        "usr/lib/os-release",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "usr/lib64/ld-linux-x86-64.so.2",
        "usr/sbin/ldconfig",
    ]
    assert found["usr/lib64/ld-linux-x86-64.so.2"].target == "/lib/x86_64-linux-gnu/ld.so"


def test_modes_owners_and_special_bits_are_kept() -> None:
    found = entries(
        [
            folder("./var/mail", 0o2775),
            file("./usr/bin/su", b"su", 0o4755),
            file("./usr/bin/wall", b"wall", 0o2755, gid=5),
            Member("./tmp", kind="dir", mode=0o1777),
            file("./etc/shadow", b"", 0o640, uid=0, gid=42),
        ]
    )
    modes = {path: (e.mode, e.uid, e.gid) for path, e in found.items()}
    assert modes["var/mail"] == (0o2775, 0, 0)
    assert modes["usr/bin/su"] == (0o4755, 0, 0)
    assert modes["usr/bin/wall"] == (0o2755, 0, 5)
    assert modes["tmp"] == (0o1777, 0, 0)
    assert modes["etc/shadow"] == (0o640, 0, 42)


def test_a_hard_link_is_a_file_with_its_target_s_content_and_mode() -> None:
    found = entries(
        [
            file("./usr/bin/perl5.36.0", b"perl", 0o755),
            hardlink("./usr/bin/perl", "./usr/bin/perl5.36.0"),
            file("./bin/gunzip", b"gzip", 0o755),
            hardlink("./bin/uncompress", "./bin/gunzip"),  # both moved under /usr
        ],
        name="perl-base",
    )
    assert found["usr/bin/perl"] == Entry(
        "usr/bin/perl", FILE, 0o755, data=b"perl", owner="perl-base"
    )
    assert found["usr/bin/uncompress"].data == b"gzip"


def test_a_hard_link_to_a_file_the_package_lacks_is_an_altered_package() -> None:
    with pytest.raises(ArtifactAltered) as err:
        entries([hardlink("./usr/bin/perl", "./usr/bin/perl5.36.0")])
    assert str(err.value) == f"{WHERE}: usr/bin/perl is a hard link to a file it lacks"


def test_devices_and_fifos_are_left_out() -> None:
    found = entries([Member("./dev/initctl", kind="fifo"), file("./etc/x", "x")])
    assert sorted(found) == ["etc/x"]


@pytest.mark.parametrize(
    "data",
    [
        b"not an ar archive",
        ar([("debian-binary", b"2.0\n")]),  # no control.tar, no data.tar
        ar(
            [
                ("debian-binary", b"2.0\n"),
                ("control.tar.xz", tar([file("./control", "x")])),
                ("data.tar.xz", b"\xfd7zXZ\x00 truncated"),
            ]
        ),
    ],
)
def test_an_unreadable_deb_is_named_with_what_to_do(data: bytes) -> None:
    with pytest.raises(ArtifactAltered) as err:
        read_deb(data, name="dash", where=WHERE)
    message = str(err.value)
    assert message.startswith(f"{WHERE}: not a readable .deb (")
    assert message.endswith(
        "), though its sha256 is the lock's; report it, and remove it from kiln's cache "
        "(.kiln/cache/debian)"
    )


@pytest.mark.parametrize(
    ("path", "left_out"),
    [
        ("usr/share/doc/dash/copyright", False),
        ("usr/share/doc/dash/changelog.Debian.gz", True),
        ("usr/share/doc/dash/examples/copyright", True),
        ("usr/share/doc/copyright", True),
        ("usr/share/doc", False),  # the folder itself: the licences' parent
        ("usr/share/man/man1/dash.1.gz", True),
        ("usr/share/info/coreutils.info.gz", True),
        ("usr/share/locale/de/LC_MESSAGES/coreutils.mo", True),
        ("usr/share/lintian/overrides/dash", True),
        ("usr/share/linda/overrides/dash", True),
        ("usr/share/zoneinfo/Etc/UTC", False),
        ("usr/share/documentation/x", False),
        ("usr/lib/python3.11/locale.py", False),
    ],
)
def test_dropped_paths_are_documentation_but_never_a_licence(path: str, left_out: bool) -> None:
    assert dropped(path) is left_out


def test_a_hard_link_keeps_its_target_s_owner() -> None:
    found = entries(
        [
            file("./usr/bin/crontab", b"crontab", 0o2755, gid=107),
            hardlink("./usr/bin/crontab.real", "./usr/bin/crontab"),
        ]
    )
    assert found["usr/bin/crontab.real"].gid == found["usr/bin/crontab"].gid == 107
