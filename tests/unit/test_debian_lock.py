"""images/os.lock: written in a fixed order, read back to the same lock, and every malformed
input refused with the file and how to restore it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest

from kiln._debian.lock import (
    OS_LOCK,
    DebPin,
    LayerPin,
    OsLock,
    PackageSet,
    parse_os_lock,
    read_os_lock,
    render,
)
from kiln._debian.resolve import Closure, Omitted
from kiln._errors import ConfigError
from tests.debian_sample import bookworm_lock, candidate

LOCK = Path("/ws") / OS_LOCK
FIX = "restore it (`git checkout -- os.lock`) or write it again with `kiln lock`"
DASH = DebPin(
    "dash",
    "0.5.12-2",
    "amd64",
    "dash",
    "debian",
    "pool/main/d/dash/dash_0.5.12-2_amd64.deb",
    113_748,
    "11" * 32,
)
LIBC = DebPin(
    "libc6",
    "2.36-9+deb12u10",
    "amd64",
    "glibc",
    "debian-security",
    "pool/updates/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb",
    2_757_936,
    "22" * 32,
)
GOMP = DebPin(
    "libgomp1",
    "12.2.0-14+deb12u1",
    "amd64",
    "gcc-12",
    "debian",
    "pool/main/g/gcc-12/libgomp1_12.2.0-14+deb12u1_amd64.deb",
    115_628,
    "33" * 32,
)
OS_LAYER = LayerPin("sha256:" + "d0" * 32, "sha256:" + "c0" * 32, 31_337)
ML_LAYER = LayerPin("sha256:" + "d1" * 32, "sha256:" + "c1" * 32, 4_096)
OMITTED = Omitted("libc6", "Depends", "debconf (>= 0.5) | debconf-2.0")


ML = PackageSet((GOMP,), (), ML_LAYER, ("libgomp1",))


def a_lock(
    *,
    path: Path = LOCK,
    os: PackageSet | None = None,
    extras: Mapping[str, PackageSet] | None = None,
) -> OsLock:
    """A lock of bookworm 12.8: dash and libc6, and the ml image's libgomp1."""
    return bookworm_lock(
        path,
        os or PackageSet((DASH, LIBC), (OMITTED,), OS_LAYER),
        {"ml": ML} if extras is None else extras,
    )


# ------------------------------------------------------------------ pins
def test_a_pin_names_its_file_and_its_package_url() -> None:
    assert LIBC.filename == "libc6_2.36-9+deb12u10_amd64.deb"
    assert LIBC.purl == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64"
    epoch = dataclasses.replace(DASH, name="libx", version="1:2.3~rc1+dfsg-1", architecture="all")
    assert epoch.purl == "pkg:deb/debian/libx@1%3A2.3~rc1%2Bdfsg-1?arch=all"


def test_a_package_set_is_its_closure_s_pins_without_a_layer() -> None:
    libc = candidate("libc6", "2.36-9", source="glibc")
    found = PackageSet.of(Closure((libc,), (OMITTED,)), ("libc6",))
    assert found == PackageSet(
        (DebPin("libc6", "2.36-9", "amd64", "glibc", "debian", libc.path, libc.size, libc.sha256),),
        (OMITTED,),
        None,
        ("libc6",),
    )
    assert found.versions() == {"libc6": "2.36-9"}


# ------------------------------------------------------------------ render, parse
def test_render_writes_every_field_in_a_fixed_order() -> None:
    text = render(a_lock())
    body = text.split("\n[os]\n", 1)[1]
    assert body == (
        f'format = 1\ninputs = "sha256:{"ee" * 32}"\nwriter = "1"\nsuite = "bookworm"\n'
        'release = "12.8"\narchitecture = "amd64"\npython = "3.11"\n'
        "\n[os.layer]\n"
        f'diff-id = "sha256:{"d0" * 32}"\ndigest = "sha256:{"c0" * 32}"\nsize = 31337\n'
        "\n# Left out on purpose: only maintainer scripts need these relations.\n"
        '[[os.omitted]]\npackage = "libc6"\nfield = "Depends"\n'
        'relation = "debconf (>= 0.5) | debconf-2.0"\n'
        '\n[[os.package]]\nname = "dash"\nversion = "0.5.12-2"\narchitecture = "amd64"\n'
        'source = "dash"\narchive = "debian"\npath = "pool/main/d/dash/dash_0.5.12-2_amd64.deb"\n'
        f'size = 113748\nsha256 = "{"11" * 32}"\n'
        '\n[[os.package]]\nname = "libc6"\nversion = "2.36-9+deb12u10"\narchitecture = "amd64"\n'
        'source = "glibc"\narchive = "debian-security"\n'
        'path = "pool/updates/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb"\n'
        f'size = 2757936\nsha256 = "{"22" * 32}"\n'
        '\n[extras."ml"]\nroots = ["libgomp1"]\n'
        '\n[extras."ml".layer]\n'
        f'diff-id = "sha256:{"d1" * 32}"\ndigest = "sha256:{"c1" * 32}"\nsize = 4096\n'
        '\n[[extras."ml".package]]\nname = "libgomp1"\nversion = "12.2.0-14+deb12u1"\n'
        'architecture = "amd64"\nsource = "gcc-12"\narchive = "debian"\n'
        'path = "pool/main/g/gcc-12/libgomp1_12.2.0-14+deb12u1_amd64.deb"\n'
        f'size = 115628\nsha256 = "{"33" * 32}"\n'
    )
    assert text.startswith("# Written by `kiln lock`: do not edit.")


def test_a_lock_reads_back_as_itself_and_renders_the_same_bytes() -> None:
    lock = a_lock(
        extras={
            "web": PackageSet((DASH,), (OMITTED,), ML_LAYER, ("dash",)),
            "ml": PackageSet((GOMP,), (), ML_LAYER, ("libgomp1",)),
        }
    )
    text = render(lock)
    assert parse_os_lock(LOCK, text) == lock
    assert render(parse_os_lock(LOCK, text)) == text
    assert text.index('[extras."ml"]') < text.index('[extras."web"]')
    assert "extras" not in render(a_lock(extras={}))


def test_a_lock_whose_layer_was_never_built_is_not_rendered() -> None:
    with pytest.raises(ValueError, match=r"^os: its layer was never built$"):
        render(a_lock(os=PackageSet((DASH,), (), None)))


def test_read_os_lock_reads_the_workspace_s_lock(tmp_path: Path) -> None:
    lock = a_lock(path=tmp_path / OS_LOCK)
    lock.path.parent.mkdir()
    lock.path.write_text(render(lock))
    assert read_os_lock(tmp_path) == lock


def test_a_missing_lock_says_to_run_kiln_lock(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        read_os_lock(tmp_path)
    assert str(err.value) == (
        f"{tmp_path / OS_LOCK}: missing; images on kiln's OS base are built from it: run "
        "`kiln lock` and commit the file"
    )


# ------------------------------------------------------------------ malformed locks
GOOD = render(a_lock())


def edit(old: str, new: str, *, count: int = 1) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, count)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[os\n", "not valid TOML (Expected ']' at the end of a table declaration"),
        (GOOD.replace("[os]", "[linux]").replace("[os.", "[linux."), "no [os] table"),
        (
            edit("format = 1", "format = 2"),
            (
                "lock format 2, this kiln reads 1: upgrade kiln, or "
                "write the lock again with this one (`kiln lock`)"
            ),
        ),
        (edit("format = 1\n", ""), "lock format None, this kiln reads 1"),
        (edit('writer = "1"', "writer = 1"), "[os]: writer must be a non-empty string"),
        (edit('python = "3.11"', 'python = ""'), "[os]: python must be a non-empty string"),
        (edit("[os.layer]", "[os.layers]"), "[os].layer is missing"),
        (edit("size = 31337", "size = -1"), "[os].layer: size must be a size in bytes"),
        (edit("size = 113748", "size = true"), "[os].package[0]: size must be a size in bytes"),
        (edit("diff-id", "diff_id"), "[os].layer: diff-id must be a non-empty string"),
        (
            edit(f'sha256 = "{"22" * 32}"', f'sha256 = "{"2G" * 32}"'),
            f"[os].package[1]: sha256 '{'2G' * 32}' is not 64 hex digits",
        ),
        (
            edit(f'sha256 = "{"22" * 32}"', 'sha256 = "22"'),
            "[os].package[1]: sha256 '22' is not 64 hex digits",
        ),
        (edit('source = "glibc"\n', ""), "[os].package[1]: source must be a non-empty string"),
        (edit("[[os.package]]", "[[os.packages]]", count=2), "[os] lists no package"),
        (edit('name = "libc6"', 'name = "dash"'), "[os]: dash locked more than once"),
        (
            edit("relation = ", "relations = "),
            "[os].omitted[0]: relation must be a non-empty string",
        ),
        (edit('roots = ["libgomp1"]', "roots = 1"), "[extras.ml]: roots must be a list of package"),
        (GOOD + "\n[extras]\nweb = 1\n", "[extras.web] must be a table"),
        (
            'extras = "ml"\n' + GOOD.split('\n[extras."ml"]')[0],
            "[extras] must be a table of images",
        ),
        (edit('[extras."ml".layer]', '[extras."ml".lay]'), "[extras.ml].layer is missing"),
    ],
)
def test_a_malformed_lock_names_the_file_the_problem_and_the_fix(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_os_lock(LOCK, text)
    message = str(err.value)
    assert message.startswith(f"{LOCK}")
    assert problem in message
    assert message.endswith(FIX)
    assert message.count(FIX) == 1


def test_an_os_value_that_is_not_a_table_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_os_lock(LOCK, 'os = "bookworm"\n')
    assert str(err.value).startswith(f"{LOCK}")
    assert str(err.value).endswith(FIX)


def test_malformed_omitted_relations_are_refused_not_dropped() -> None:
    text = edit("[os.layer]", 'omitted = ["debconf"]\n\n[os.layer]')
    text = text.replace("[[os.omitted]]", "[[os.dropped]]")
    with pytest.raises(ConfigError) as err:
        parse_os_lock(LOCK, text)
    assert str(err.value).startswith(f"{LOCK} [os]")
    assert str(err.value).endswith(FIX)


def test_an_image_name_with_a_dot_reads_back() -> None:
    lock = a_lock(extras={"ml.gpu": PackageSet((GOMP,), (), ML_LAYER, ("libgomp1",))})
    assert parse_os_lock(LOCK, render(lock)) == lock
