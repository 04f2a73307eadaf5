"""Debian's archive as `kiln lock` reads it: mirrors tried in order, InRelease checked by
gpgv (a fake runner here) and by its own fields, Packages.xz by the signed sha256, and
every checked file kept in kiln's cache."""

from __future__ import annotations

import json
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest
from debian import deb822

from kiln._debian.archive import (
    Candidate,
    Indexes,
    Suite,
    _check_release,
    by_name,
    verify_release,
)
from kiln._errors import ArtifactAltered, ConfigError, ServiceUnavailable
from tests.debian_sample import (
    DEBIAN,
    OS,
    PACKAGES_XZ,
    SECURITY,
    FakeGpgv,
    FakeMirrors,
    candidate,
    packages_file,
    publish,
    release_text,
    sha256,
    sign,
    stanza,
)

PROXY, DEB = DEBIAN
NOW = 1736600000.0  # 2025-01-11 12:53 UTC
WHERE = "debian bookworm (dists/bookworm/InRelease)"
RETRY = "check the network or the mirrors in [tool.kiln.os.mirrors]"


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    path = tmp_path / "debian-archive-keyring.gpg"
    path.write_bytes(b"keys")
    return path


# ------------------------------------------------------------------ Mirrors.get
def test_get_takes_the_first_mirror_that_serves_the_file() -> None:
    mirrors = FakeMirrors(down={PROXY})
    mirrors.serve(DEB, "dists/bookworm/InRelease", b"signed")
    assert mirrors.client().get("debian", "dists/bookworm/InRelease", what=WHERE) == b"signed"
    assert mirrors.urls() == [
        f"{PROXY}/dists/bookworm/InRelease",
        f"{DEB}/dists/bookworm/InRelease",
    ]


def test_get_stops_at_the_first_mirror_that_serves_it() -> None:
    mirrors = FakeMirrors()
    mirrors.serve(PROXY, "dists/bookworm/InRelease", b"from the proxy")
    mirrors.serve(DEB, "dists/bookworm/InRelease", b"from debian")
    assert mirrors.client().get("debian", "dists/bookworm/InRelease", what=WHERE) == (
        b"from the proxy"
    )
    assert mirrors.urls() == [f"{PROXY}/dists/bookworm/InRelease"]


def test_get_names_every_mirror_and_why_when_none_serves_the_file() -> None:
    mirrors = FakeMirrors(down={PROXY}, status={f"{DEB}/dists/bookworm/InRelease": 503})
    with pytest.raises(ServiceUnavailable) as err:
        mirrors.client().get("debian", "dists/bookworm/InRelease", what=WHERE)
    assert str(err.value) == (
        f"{WHERE}: no mirror of the debian archive serves dists/bookworm/InRelease "
        f"({PROXY}: ConnectionError; {DEB}: HTTP 503); {RETRY}"
    )


# ------------------------------------------------------------------ Mirrors.fetch_to
DEB_PATH = "pool/main/d/dash/dash_0.5.12-2_amd64.deb"


def test_fetch_to_streams_the_file_from_the_first_mirror_that_has_it(tmp_path: Path) -> None:
    mirrors = FakeMirrors()
    mirrors.serve(DEB, DEB_PATH, b"\x00deb" * 300_000)  # more than one chunk
    target = tmp_path / "dash.deb"
    assert mirrors.client().fetch_to("debian", DEB_PATH, target) == DEB
    assert target.read_bytes() == b"\x00deb" * 300_000
    assert mirrors.urls() == [f"{PROXY}/{DEB_PATH}", f"{DEB}/{DEB_PATH}"]


@pytest.mark.parametrize("gone", [404, 410])
def test_fetch_to_is_none_when_every_mirror_says_it_has_no_such_file(
    tmp_path: Path, gone: int
) -> None:
    mirrors = FakeMirrors(status={f"{PROXY}/{DEB_PATH}": gone})  # the other one: 404
    target = tmp_path / "dash.deb"
    assert mirrors.client().fetch_to("debian", DEB_PATH, target) is None
    assert not target.exists()


def test_fetch_to_a_mirror_down_is_unavailable_not_gone(tmp_path: Path) -> None:
    mirrors = FakeMirrors(status={f"{PROXY}/{DEB_PATH}": 502})  # the other one: 404
    with pytest.raises(ServiceUnavailable) as err:
        mirrors.client().fetch_to("debian", DEB_PATH, tmp_path / "dash.deb")
    assert str(err.value) == (
        f"no mirror of the debian archive serves {DEB_PATH} ({PROXY}: HTTP 502); {RETRY}"
    )


def test_fetch_to_a_mirror_down_does_not_matter_when_another_serves_it(tmp_path: Path) -> None:
    mirrors = FakeMirrors(down={PROXY})
    mirrors.serve(DEB, DEB_PATH, b"deb")
    assert mirrors.client().fetch_to("debian", DEB_PATH, tmp_path / "dash.deb") == DEB
    assert (tmp_path / "dash.deb").read_bytes() == b"deb"


# ------------------------------------------------------------------ verify_release
def test_verify_release_runs_gpgv_with_the_keyring_and_returns_the_signed_text(
    keyring: Path,
) -> None:
    gpgv = FakeGpgv()
    assert verify_release(sign("Suite: stable\n"), gpgv, where=WHERE, keyring=keyring) == (
        "Suite: stable\n"
    )
    [argv] = gpgv.calls
    assert argv[:4] == ["gpgv", "--keyring", str(keyring), "--output"]
    assert (Path(argv[4]).name, Path(argv[5]).name) == ("Release", "InRelease")
    assert not Path(argv[5]).parent.exists()  # the temporary folder is gone


def test_verify_release_refuses_a_foreign_signature_as_an_altered_index(keyring: Path) -> None:
    with pytest.raises(ArtifactAltered) as err:
        verify_release(
            sign("Suite: stable\n", by="mallory"), FakeGpgv(), where=WHERE, keyring=keyring
        )
    assert str(err.value) == (
        f"{WHERE}: its signature does not verify against Debian's archive keyring "
        f"({keyring}); the mirror serves an altered or foreign index: use another mirror. "
        'gpgv said:\ngpgv: BAD signature from "Debian Archive Automatic Signing Key"'
    )


def test_verify_release_without_gpgv_or_keyring_says_what_to_install(
    keyring: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as err:
        verify_release(sign("x\n"), FakeGpgv(missing=True), where=WHERE, keyring=keyring)
    assert str(err.value) == (
        "`gpgv` is not installed; kiln needs it: sudo apt-get install gpgv debian-archive-keyring"
    )
    missing = tmp_path / "none.gpg"
    gpgv = FakeGpgv()
    with pytest.raises(ConfigError) as err:
        verify_release(sign("x\n"), gpgv, where=WHERE, keyring=missing)
    assert str(err.value).startswith(f"Debian's archive keyring ({missing}) is missing: ")
    assert str(err.value).endswith("install it: sudo apt-get install gpgv debian-archive-keyring")
    assert gpgv.calls == []


# ------------------------------------------------------------------ _check_release
def release(**fields: str) -> deb822.Release:
    doc = {"Suite": "stable", "Codename": "bookworm", "Architectures": "all amd64 arm64"}
    return deb822.Release({**doc, **fields})


def test_a_release_is_accepted_by_its_codename_or_its_suite() -> None:
    _check_release(release(), "debian", "bookworm", "amd64", where=WHERE, now=NOW)
    _check_release(release(), "debian", "stable", "arm64", where=WHERE, now=NOW)
    later = release(**{"Valid-Until": "Sat, 18 Jan 2025 10:56:37 UTC"})
    _check_release(later, "debian", "bookworm", "amd64", where=WHERE, now=NOW)


def test_a_release_of_another_suite_is_an_altered_index() -> None:
    with pytest.raises(ArtifactAltered) as err:
        _check_release(release(), "debian", "trixie", "amd64", where=WHERE, now=NOW)
    assert str(err.value) == (
        f"{WHERE}: the signed index is for bookworm / stable, not trixie; the mirror serves "
        "another suite under this name: use another mirror"
    )


def test_an_expired_release_is_refused_as_a_stale_mirror() -> None:
    old = release(**{"Valid-Until": "Sat, 04 Jan 2025 10:56:37 UTC"})
    with pytest.raises(ServiceUnavailable) as err:
        _check_release(old, "debian-security", "bookworm", "amd64", where=WHERE, now=NOW)
    assert str(err.value) == (
        f"{WHERE}: the signed index expired on Sat, 04 Jan 2025 10:56:37 UTC (Valid-Until); "
        "the mirror is stale or replays an old index: use another mirror, or try again later"
    )


def test_a_release_without_the_architecture_names_what_it_offers() -> None:
    with pytest.raises(ConfigError) as err:
        _check_release(release(), "debian", "bookworm", "riscv64", where=WHERE, now=NOW)
    assert str(err.value) == (
        "[tool.kiln.os] architectures: debian bookworm has no 'riscv64' "
        "(it offers all, amd64, arm64); lock only those"
    )


# ------------------------------------------------------------------ Indexes.load
DASH = candidate("dash", "0.5.12-2", pre_depends="libc6 (>= 2.34)")
LIBC = candidate("libc6", "2.36-9+deb12u9", source="glibc")
LIBC_SEC = candidate(
    "libc6", "2.36-9+deb12u10", source="glibc", archive="debian-security", suite="bookworm-security"
)


def serve_all(mirrors: FakeMirrors) -> dict[str, bytes]:
    """bookworm (12.8) on the second debian mirror, an empty bookworm-updates, and a
    security suite; the Packages.xz of each suite."""
    return {
        "bookworm": publish(mirrors, DEB, "bookworm", [DASH, LIBC], version="12.8"),
        "bookworm-updates": publish(
            mirrors, DEB, "bookworm-updates", [], codename="bookworm-updates"
        ),
        "bookworm-security": publish(mirrors, SECURITY[0], "bookworm-security", [LIBC_SEC]),
    }


def indexes(
    mirrors: FakeMirrors,
    cache: Path,
    keyring: Path,
    log: Callable[[str], None] = lambda _line: None,
) -> Indexes:
    return Indexes(
        OS, mirrors.client(), FakeGpgv(), cache, keyring=keyring, now=lambda: NOW, log=log
    )


def test_load_reads_every_suite_checked_and_keeps_it_in_the_cache(
    tmp_path: Path, keyring: Path
) -> None:
    mirrors = FakeMirrors(down={PROXY})
    packages = serve_all(mirrors)
    lines: list[str] = []
    suites = indexes(mirrors, tmp_path, keyring, log=lines.append).load()
    assert suites == (
        Suite("debian", "bookworm", "12.8", (DASH, LIBC)),
        Suite("debian", "bookworm-updates", "", ()),
        Suite("debian-security", "bookworm-security", "", (LIBC_SEC,)),
    )
    assert lines == [
        "    debian bookworm: 2 packages (Sat, 11 Jan 2025 10:56:37 UTC)",
        "    debian bookworm-updates: 0 packages (Sat, 11 Jan 2025 10:56:37 UTC)",
        "    debian-security bookworm-security: 1 packages (Sat, 11 Jan 2025 10:56:37 UTC)",
    ]
    for archive, mirror, suite in (
        ("debian", DEB, "bookworm"),
        ("debian", DEB, "bookworm-updates"),
        ("debian-security", SECURITY[0], "bookworm-security"),
    ):
        kept = tmp_path / "mirror" / archive / "dists" / suite
        assert (kept / "InRelease").read_bytes() == mirrors.files[
            f"{mirror}/dists/{suite}/InRelease"
        ]
        assert (kept / PACKAGES_XZ).read_bytes() == packages[suite]
    parsed = json.loads(
        (tmp_path / "parsed" / f"{sha256(packages['bookworm'])}.v1.json").read_text()
    )
    assert [Candidate(**row) for row in parsed] == [DASH, LIBC]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_load_reads_only_the_fields_the_resolver_needs_and_normalizes_relations(
    tmp_path: Path, keyring: Path
) -> None:
    mirrors = FakeMirrors()
    serve_all(mirrors)
    python = candidate("python3.11-minimal", "3.11.2-6+deb12u5", source="python3.11")
    depends = "libc6 (>= 2.36),\n libexpat1 (>= 2.1~beta3),\n zlib1g"  # folded, as Debian's
    entry = stanza(python, Depends=depends, Provides="python3.11-minimal-abi", Essential="no")
    entry["Source"] = "python3.11 (3.11.2-6)"  # a binNMU names its source's version
    packages = lzma.compress(packages_file([entry]))
    mirrors.serve(
        DEB, "dists/bookworm/InRelease", sign(release_text("bookworm", {PACKAGES_XZ: packages}))
    )
    mirrors.serve(DEB, f"dists/bookworm/{PACKAGES_XZ}", packages)
    [found] = indexes(mirrors, tmp_path, keyring).load()[0].packages
    assert found == Candidate(
        name="python3.11-minimal",
        version="3.11.2-6+deb12u5",
        architecture="amd64",
        source="python3.11",
        archive="debian",
        suite="bookworm",
        path=python.path,
        size=python.size,
        sha256=python.sha256,
        depends="libc6 (>= 2.36), libexpat1 (>= 2.1~beta3), zlib1g",
        provides="python3.11-minimal-abi",
    )


def test_a_second_load_reads_the_parsed_index_and_fetches_only_the_signed_releases(
    tmp_path: Path, keyring: Path
) -> None:
    mirrors = FakeMirrors()
    serve_all(mirrors)
    first = indexes(mirrors, tmp_path, keyring).load()
    mirrors.transport.seen.clear()
    assert indexes(mirrors, tmp_path, keyring).load() == first
    assert mirrors.urls() == [  # the proxy has no debian suite: each is asked of it first
        f"{PROXY}/dists/bookworm/InRelease",
        f"{DEB}/dists/bookworm/InRelease",
        f"{PROXY}/dists/bookworm-updates/InRelease",
        f"{DEB}/dists/bookworm-updates/InRelease",
        f"{SECURITY[0]}/dists/bookworm-security/InRelease",
    ]


def test_a_damaged_parsed_index_is_read_again_from_the_mirror(
    tmp_path: Path, keyring: Path
) -> None:
    mirrors = FakeMirrors()
    packages = serve_all(mirrors)
    first = indexes(mirrors, tmp_path, keyring).load()
    parsed = tmp_path / "parsed" / f"{sha256(packages['bookworm'])}.v1.json"
    parsed.write_text('[{"name": "dash"}]')  # another format: not Candidate rows
    mirrors.transport.seen.clear()
    assert indexes(mirrors, tmp_path, keyring).load() == first
    assert f"{DEB}/dists/bookworm/{PACKAGES_XZ}" in mirrors.urls()
    assert json.loads(parsed.read_text())[0]["name"] == "dash"
    assert len(json.loads(parsed.read_text())) == 2


def test_a_packages_file_the_signed_release_does_not_list_is_altered(
    tmp_path: Path, keyring: Path
) -> None:
    mirrors = FakeMirrors()
    serve_all(mirrors)
    mirrors.serve(DEB, f"dists/bookworm/{PACKAGES_XZ}", lzma.compress(b"Package: evil\n"))
    with pytest.raises(ArtifactAltered) as err:
        indexes(mirrors, tmp_path, keyring).load()
    listed = sha256(lzma.compress(packages_file([stanza(DASH), stanza(LIBC)])))
    assert str(err.value) == (
        f"{WHERE}: {PACKAGES_XZ} has another sha256 than its signed Release lists ({listed}); "
        "the mirror serves an altered or half-updated index: use another mirror, or try again "
        "in a few minutes"
    )
    assert not (tmp_path / "mirror" / "debian" / "dists" / "bookworm").exists()
    assert not (tmp_path / "parsed").exists()


def test_a_release_without_the_architecture_s_packages_in_main_is_named(
    tmp_path: Path, keyring: Path
) -> None:
    mirrors = FakeMirrors()
    text = release_text("bookworm", {"main/binary-arm64/Packages.xz": b""})
    mirrors.serve(DEB, "dists/bookworm/InRelease", sign(text))
    with pytest.raises(ConfigError) as err:
        indexes(mirrors, tmp_path, keyring).load()
    assert str(err.value) == (
        f"{WHERE}: lists no {PACKAGES_XZ}; the suite has no amd64 packages in main"
    )


def test_a_replayed_release_of_another_suite_is_refused_before_its_packages_are_read(
    tmp_path: Path, keyring: Path
) -> None:
    mirrors = FakeMirrors()
    serve_all(mirrors)
    mirrors.serve(
        DEB, "dists/bookworm/InRelease", mirrors.files[f"{DEB}/dists/bookworm-updates/InRelease"]
    )
    with pytest.raises(ArtifactAltered, match="is for bookworm-updates, not bookworm;"):
        indexes(mirrors, tmp_path, keyring).load()
    assert not any(u.endswith("Packages.xz") for u in mirrors.urls())


def test_by_name_lists_each_package_s_candidates_in_suite_order() -> None:
    suites = (
        Suite("debian", "bookworm", "12.8", (DASH, LIBC)),
        Suite("debian-security", "bookworm-security", "", (LIBC_SEC,)),
    )
    assert by_name(suites) == {"dash": [DASH], "libc6": [LIBC, LIBC_SEC]}
    assert by_name(suites[::-1])["libc6"] == [LIBC_SEC, LIBC]
