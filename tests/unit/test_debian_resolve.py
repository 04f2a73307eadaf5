"""The closure of the OS roots as apt would install it: Depends and Pre-Depends, Debian's
version order, alternatives, virtual packages, excluded relations and architectures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from kiln._debian.archive import Candidate
from kiln._debian.resolve import Closure, Omitted, Resolver, extra_closure
from kiln._errors import ConfigError
from tests.debian_sample import candidate, universe

WHERE = "/ws/pyproject.toml: [tool.kiln.os]"


def resolve(
    roots: Sequence[str],
    *candidates: Candidate,
    exclude: Sequence[str] = (),
    prefer: Mapping[str, str] | None = None,
    architecture: str = "amd64",
) -> Closure:
    resolver = Resolver(
        universe(*candidates),
        architecture=architecture,
        exclude=exclude,
        prefer=prefer,
        where=WHERE,
    )
    return resolver.resolve(roots)


def chosen(closure: Closure) -> dict[str, str]:
    return {c.name: c.version for c in closure.packages}


def failure(roots: Sequence[str], *candidates: Candidate) -> str:
    with pytest.raises(ConfigError) as err:
        resolve(roots, *candidates)
    return str(err.value)


# ------------------------------------------------------------------ the closure
def test_depends_and_pre_depends_are_followed_and_nothing_else_is_taken() -> None:
    closure = resolve(
        ["dash"],
        candidate("dash", pre_depends="libc6 (>= 2.34)", depends="debianutils"),
        candidate("libc6", "2.36", depends="libgcc-s1"),
        candidate("libgcc-s1", "12.2", depends="gcc-12-base (= 12.2)"),
        candidate("gcc-12-base", "12.2"),
        candidate("debianutils", "5.7"),
        candidate("coreutils", "9.1"),  # no one needs it
    )
    assert [c.name for c in closure.packages] == [  # sorted by name
        "dash",
        "debianutils",
        "gcc-12-base",
        "libc6",
        "libgcc-s1",
    ]
    assert closure.omitted == ()


def test_the_newest_version_any_suite_offers_is_taken_in_debian_order() -> None:
    offered = [
        candidate("tzdata", "2024a-0+deb12u1"),
        candidate("tzdata", "2024b-0+deb12u1", archive="debian", suite="bookworm-updates"),
        candidate("tzdata", "2024a-0+deb12u1~bpo1"),
        candidate("libx", "1.0+deb12u1"),
        candidate("libx", "1.0"),
        candidate("libx", "1.0~rc1"),
        candidate("liby", "9.9"),
        candidate("liby", "1:0.1"),  # an epoch outranks any upstream version
    ]
    assert chosen(resolve(["tzdata", "libx", "liby"], *offered)) == {
        "tzdata": "2024b-0+deb12u1",
        "libx": "1.0+deb12u1",
        "liby": "1:0.1",
    }


def test_the_same_version_in_two_archives_is_taken_from_the_first_suite() -> None:
    main = candidate("libssl3", "3.0.15-1~deb12u1")
    security = candidate(
        "libssl3", "3.0.15-1~deb12u1", archive="debian-security", suite="bookworm-security"
    )
    assert resolve(["libssl3"], main, security).packages == (main,)
    assert resolve(["libssl3"], security, main).packages == (security,)


@pytest.mark.parametrize(
    ("relation", "version"),
    [
        ("libx (>= 2.0)", "3.0"),
        ("libx (<< 3.0)", "2.0"),
        ("libx (<= 2.0)", "2.0"),
        ("libx (= 1.0)", "1.0"),
        ("libx (>> 1.0)", "3.0"),
        ("libx (<< 2.0~)", "1.0"),
    ],
)
def test_a_version_constraint_takes_the_newest_version_that_fits(
    relation: str, version: str
) -> None:
    offered = [candidate("libx", v) for v in ("1.0", "2.0", "3.0")]
    closure = resolve(["app"], candidate("app", depends=relation), *offered)
    assert chosen(closure)["libx"] == version


def test_prefer_keeps_a_version_still_offered_that_fits() -> None:
    offered = [candidate("libx", v) for v in ("1.0", "2.0", "3.0")]
    app = candidate("app", depends="libx (>= 2.0)")
    assert chosen(resolve(["app"], app, *offered, prefer={"libx": "2.0"}))["libx"] == "2.0"
    # no longer offered, or too old for the relation: the newest that fits
    assert chosen(resolve(["app"], app, *offered, prefer={"libx": "2.5"}))["libx"] == "3.0"
    assert chosen(resolve(["app"], app, *offered, prefer={"libx": "1.0"}))["libx"] == "3.0"
    strict = candidate("app", depends="libx (>> 2.0)")  # 2.0 itself does not fit
    assert chosen(resolve(["app"], strict, *offered, prefer={"libx": "2.0"}))["libx"] == "3.0"


# ------------------------------------------------------------------ alternatives, virtual
def test_an_alternative_takes_the_first_that_can_be_unless_another_is_chosen() -> None:
    offered = [
        candidate("gawk"),
        candidate("mawk"),
        candidate("tool", depends="gawk | mawk"),
        candidate("old", depends="missing | nope (>= 2) | mawk"),
    ]
    assert sorted(chosen(resolve(["tool"], *offered))) == ["gawk", "tool"]
    assert sorted(chosen(resolve(["mawk", "tool"], *offered))) == ["mawk", "tool"]
    assert sorted(chosen(resolve(["old"], *offered))) == ["mawk", "old"]


def test_a_virtual_package_is_satisfied_by_its_only_or_its_chosen_provider() -> None:
    offered = [
        candidate("app", depends="mail-transport-agent"),
        candidate("exim4", provides="mail-transport-agent"),
        candidate("postfix", provides="mail-transport-agent, default-mta"),
    ]
    assert sorted(chosen(resolve(["postfix", "app"], *offered))) == ["app", "postfix"]
    only = [candidate("app", depends="default-mta"), *offered[1:]]
    assert sorted(chosen(resolve(["app"], *only))) == ["app", "postfix"]
    assert failure(["app"], *offered) == (
        "app 1.0 needs mail-transport-agent, which several packages provide (exim4, postfix) "
        f"and none is chosen; add the one you want to {WHERE} packages"
    )


def test_a_versioned_relation_on_a_virtual_package_needs_a_versioned_provide() -> None:
    offered = [
        candidate("app", depends="libfoo-abi (>= 2)"),
        candidate("libfoo-new", provides="libfoo-abi (= 3)"),
        candidate("libfoo-old", provides="libfoo-abi (= 1)"),
        candidate("libfoo-any", provides="libfoo-abi"),  # unversioned: satisfies no version
    ]
    assert sorted(chosen(resolve(["app"], *offered))) == ["app", "libfoo-new"]


def test_a_virtual_root_is_its_provider() -> None:
    offered = [candidate("mawk", "1.3.4", provides="awk")]
    assert chosen(resolve(["awk"], *offered)) == {"mawk": "1.3.4"}


# ------------------------------------------------------------------ left out, other arches
def test_a_relation_naming_an_excluded_package_is_left_out_and_listed() -> None:
    offered = [
        candidate("tzdata", depends="debconf (>= 0.5) | debconf-2.0"),
        candidate("ca-certificates", depends="openssl (>= 1.1.1), debconf | debconf-2.0"),
        candidate("libc6", pre_depends="dpkg (>= 1.15)"),
        candidate("debconf"),
        candidate("openssl", depends="libc6"),
    ]
    closure = resolve(
        ["tzdata", "ca-certificates", "libc6"],
        *offered,
        exclude=("debconf", "debconf-2.0", "openssl", "dpkg"),
    )
    assert sorted(chosen(closure)) == ["ca-certificates", "libc6", "tzdata"]
    assert closure.omitted == (
        Omitted("ca-certificates", "Depends", "debconf | debconf-2.0"),
        Omitted("ca-certificates", "Depends", "openssl (>= 1.1.1)"),
        Omitted("libc6", "Pre-Depends", "dpkg (>= 1.15)"),
        Omitted("tzdata", "Depends", "debconf (>= 0.5) | debconf-2.0"),
    )


def test_relations_and_packages_of_another_architecture_are_ignored() -> None:
    offered = [
        candidate("app", depends="libamd [amd64], libarm [arm64], libnotarm [!arm64]"),
        candidate("libamd"),
        candidate("libarm"),
        candidate("libnotarm", "2.0", architecture="arm64"),  # only arm64 builds offered ...
        candidate("libnotarm", "1.0"),  # ... and an older amd64 one
        candidate("tzdata", "2024b", architecture="all"),
        candidate("only-arm", architecture="arm64"),
    ]
    assert chosen(resolve(["app", "tzdata"], *offered)) == {
        "app": "1.0",
        "libamd": "1.0",
        "libnotarm": "1.0",
        "tzdata": "2024b",
    }
    on_arm = [
        candidate("app", architecture="arm64", depends="libamd [amd64], libarm [arm64]"),
        candidate("libarm", architecture="arm64"),
        candidate("libamd"),  # an amd64 build only: never asked for on arm64
    ]
    closure = resolve(["app"], *on_arm, architecture="arm64")
    assert chosen(closure) == {"app": "1.0", "libarm": "1.0"}
    assert failure(["only-arm"], *offered) == (
        f"{WHERE}: no suite has a package 'only-arm' for amd64; check the name "
        "(`apt-cache show only-arm` on a Debian machine) and the suite"
    )


def test_any_and_native_qualifiers_name_the_package_itself() -> None:
    offered = [
        candidate("pip", depends="python3:any (>= 3.11), libc6:native"),
        candidate("python3", "3.11.2"),
        candidate("libc6"),
    ]
    assert sorted(chosen(resolve(["pip"], *offered))) == ["libc6", "pip", "python3"]


# ------------------------------------------------------------------ errors
def test_an_unsatisfiable_relation_names_the_package_and_what_is_offered() -> None:
    offered = [
        candidate("app", "2.0", depends="libx (>= 3) | liby"),
        candidate("libx", "1.0"),
        candidate("libx", "2.0"),
    ]
    assert failure(["app"], *offered) == (
        "app 2.0 Depends libx (>= 3) | liby, which nothing in the suites satisfies (libx: "
        f"2.0, 1.0; liby: not in any suite); exclude it in {WHERE} (if only a maintainer "
        "script needs it) or drop the package that needs it"
    )


def test_an_unknown_root_is_named_with_how_to_check_it() -> None:
    assert failure(["python3.99-minimal"], candidate("dash")) == (
        f"{WHERE}: no suite has a package 'python3.99-minimal' for amd64; check the name "
        "(`apt-cache show python3.99-minimal` on a Debian machine) and the suite"
    )


def test_an_alternative_after_a_satisfiable_one_is_not_asked() -> None:
    offered = [
        candidate("tool", depends="mawk | awk"),
        candidate("mawk", provides="awk"),
        candidate("gawk", provides="awk"),
    ]
    assert sorted(chosen(resolve(["tool"], *offered))) == ["mawk", "tool"]


def test_a_virtual_package_takes_the_provider_version_that_provides_it() -> None:
    offered = [
        candidate("app", depends="libfoo-abi (<< 2)"),
        candidate("libfoo", "2.0", provides="libfoo-abi (= 2)"),
        candidate("libfoo", "1.0", provides="libfoo-abi (= 1)"),
    ]
    assert chosen(resolve(["app"], *offered))["libfoo"] == "1.0"


# ------------------------------------------------------------------ an image's os-packages
BASE_OFFER = [
    candidate("libc6", "2.36-9+deb12u9"),
    candidate("libc6", "2.36-9+deb12u10", archive="debian-security", suite="bookworm-security"),
    candidate("python3.11-minimal", "3.11.2", depends="libc6 (>= 2.36), debconf"),
    candidate("libgomp1", "12.2", depends="libc6 (>= 2.34), gcc-12-base, debconf | debconf-2.0"),
    candidate("gcc-12-base", "12.2"),
    candidate("debconf"),
]
EXTRA_WHERE = "/ws/images/ml/image.toml: os-packages"


def base_closure(prefer: Mapping[str, str]) -> Closure:
    return resolve(["python3.11-minimal"], *BASE_OFFER, exclude=("debconf",), prefer=prefer)


def test_extras_hold_only_what_the_shared_layer_lacks_at_its_versions() -> None:
    base = base_closure({"libc6": "2.36-9+deb12u9"})  # an older libc6 kept by the lock
    extra = extra_closure(
        universe(*BASE_OFFER),
        base,
        ["libgomp1"],
        architecture="amd64",
        exclude=("debconf",),
        where=EXTRA_WHERE,
    )
    assert chosen(extra) == {"gcc-12-base": "12.2", "libgomp1": "12.2"}
    assert extra.omitted == (Omitted("libgomp1", "Depends", "debconf | debconf-2.0"),)
    assert Omitted("python3.11-minimal", "Depends", "debconf") in base.omitted


def test_extras_keep_their_preferred_versions() -> None:
    offered = [*BASE_OFFER, candidate("gcc-12-base", "12.3")]
    base = base_closure({})
    kept = extra_closure(
        universe(*offered),
        base,
        ["libgomp1"],
        architecture="amd64",
        exclude=("debconf",),
        prefer={"gcc-12-base": "12.2"},
        where=EXTRA_WHERE,
    )
    assert chosen(kept)["gcc-12-base"] == "12.2"
    moved = extra_closure(
        universe(*offered),
        base,
        ["libgomp1"],
        architecture="amd64",
        exclude=("debconf",),
        where=EXTRA_WHERE,
    )
    assert chosen(moved)["gcc-12-base"] == "12.3"


def test_extras_needing_another_version_of_a_shared_package_say_so() -> None:
    base = base_closure({"libc6": "2.36-9+deb12u9"})
    offered = [*BASE_OFFER, candidate("libnew", depends="libc6 (>= 2.36-9+deb12u10)")]
    with pytest.raises(ConfigError) as err:
        extra_closure(
            universe(*offered),
            base,
            ["libnew"],
            architecture="amd64",
            exclude=("debconf",),
            where=EXTRA_WHERE,
        )
    assert str(err.value) == (
        f"{EXTRA_WHERE} need libnew 1.0 (Depends libc6 (>= 2.36-9+deb12u10)), which the "
        "shared OS layer's libc6 2.36-9+deb12u9 does not meet; add what needs it to "
        "[tool.kiln.os] packages instead, so every image shares one version"
    )
