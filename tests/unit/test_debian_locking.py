"""`kiln lock` for the OS: when a lock is stale, what it moves, and lock_os over fake
indexes and a fake layer builder (the real ones are tested in their own files)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from kiln._debian.archive import Indexes, Suite
from kiln._debian.config import OsConfig
from kiln._debian.deb import Deb
from kiln._debian.layer import WRITER
from kiln._debian.lock import LayerPin, OsLock, PackageSet, parse_os_lock, render
from kiln._debian.resolve import Closure, Omitted
from kiln._errors import ConfigError
from kiln._images.oci.cache import Blob, LayerCache
from kiln._images.os_layers import OsLayers
from kiln._locking.debian import Change, changes, check_os_fresh, lock_os, os_inputs, stale_reason
from kiln._workspace.model import Image, StackConfig, Workspace
from tests.debian_sample import candidate

ROOTS = ("python3.11-minimal", "dash")
LAYER = LayerPin("sha256:" + "d" * 64, "sha256:" + "c" * 64, 1)


def an_image(
    root: Path,
    name: str,
    *,
    os_packages: tuple[str, ...] = (),
    python: str = "3.11",
    base: str | None = None,
) -> Image:
    return Image(
        name, root / "images" / name, "0.1.0", base, python, (), (), os_packages=os_packages
    )


def a_workspace(
    root: Path, *images: Image, packages: Image | None = None, os: OsConfig | None = None
) -> Workspace:
    config = os or OsConfig(packages=ROOTS, exclude=("debconf",), path=root / "pyproject.toml")
    return Workspace(
        root,
        "acme",
        "https://pypi.test/simple",
        StackConfig(),
        (),
        images,
        (),
        (),
        packages=packages,
        os=config,
    )


def a_lock(
    workspace: Workspace,
    *,
    writer: str = WRITER,
    os: PackageSet | None = None,
    extras: Mapping[str, PackageSet] | None = None,
) -> OsLock:
    """A lock of ``workspace`` as `kiln lock` would write it now (its sets: as given)."""
    return OsLock(
        workspace.root / "images" / "os.lock",
        os_inputs(workspace),
        writer,
        "bookworm",
        "12.8",
        "amd64",
        "3.11",
        os or PackageSet((), (), LAYER),
        extras or {},
    )


def a_set(*versions: tuple[str, str], roots: tuple[str, ...] = ()) -> PackageSet:
    found = tuple(candidate(name, version) for name, version in versions)
    return dataclasses.replace(PackageSet.of(Closure(found, ()), roots), layer=LAYER)


# ------------------------------------------------------------------ inputs, staleness
def test_os_inputs_are_the_os_table_and_each_image_s_os_packages(tmp_path: Path) -> None:
    plain = a_workspace(tmp_path, an_image(tmp_path, "web"))
    ml = a_workspace(
        tmp_path, an_image(tmp_path, "web"), an_image(tmp_path, "ml", os_packages=("libgomp1",))
    )
    assert os_inputs(plain) == plain.os.inputs({})
    assert os_inputs(ml) == ml.os.inputs({"ml": ("libgomp1",)}) != os_inputs(plain)


def test_a_lock_is_stale_when_its_inputs_or_its_writer_moved(tmp_path: Path) -> None:
    workspace = a_workspace(tmp_path, an_image(tmp_path, "web"))
    assert stale_reason(a_lock(workspace), workspace) is None
    check_os_fresh(a_lock(workspace), workspace)
    grown = a_workspace(tmp_path, an_image(tmp_path, "web", os_packages=("libgomp1",)))
    assert stale_reason(a_lock(workspace), grown) == (
        "[tool.kiln.os] or an image's os-packages changed since it was written"
    )
    assert stale_reason(a_lock(workspace, writer="0"), workspace) == (
        f"it was written by a kiln whose OS layer writer is 0; this kiln's is {WRITER}"
    )
    with pytest.raises(ConfigError) as err:
        check_os_fresh(a_lock(workspace), grown)
    assert str(err.value) == (
        f"{tmp_path}/images/os.lock: stale: [tool.kiln.os] or an image's os-packages changed "
        "since it was written; run `kiln lock` and commit the result"
    )


def test_an_image_on_the_os_base_must_say_the_lock_s_python(tmp_path: Path) -> None:
    registry = an_image(tmp_path, "gpu", python="3.12", base="python:3.12-slim@sha256:" + "a" * 64)
    workspace = a_workspace(tmp_path, an_image(tmp_path, "web"), registry)
    check_os_fresh(a_lock(workspace), workspace)  # a registry base has its own Python
    wrong = a_workspace(tmp_path, an_image(tmp_path, "web", python="3.12"))
    with pytest.raises(ConfigError) as err:
        check_os_fresh(a_lock(wrong), wrong)
    assert str(err.value) == (
        f"{tmp_path}/images/web/image.toml: python = '3.12', but kiln's OS base installs Python "
        f"3.11 ({tmp_path}/images/os.lock); set python = '3.11', or change the Python of "
        "[tool.kiln.os] packages"
    )
    packages = a_workspace(tmp_path, packages=an_image(tmp_path, "packages", python="3.10"))
    with pytest.raises(ConfigError, match=r"^\[tool\.kiln\.packages\]: python = '3\.10', but "):
        check_os_fresh(a_lock(packages), packages)


# ------------------------------------------------------------------ changes
def test_changes_list_added_removed_and_moved_packages_by_set(tmp_path: Path) -> None:
    workspace = a_workspace(tmp_path)
    old = a_lock(
        workspace,
        os=a_set(("dash", "0.5.12-1"), ("zlib1g", "1.2.13")),
        extras={"web": a_set(("curl", "7.88")), "ml": a_set(("libgomp1", "12.2"))},
    )
    new = a_lock(
        workspace,
        os=a_set(("dash", "0.5.12-2"), ("libc6", "2.36")),
        extras={"ml": a_set(("libgomp1", "12.2"), ("gcc-12-base", "12.2"))},
    )
    found = changes(old, new)
    assert found == [
        Change("dash", "0.5.12-1", "0.5.12-2"),
        Change("libc6", None, "2.36"),
        Change("zlib1g", "1.2.13", None),
        Change("gcc-12-base", None, "12.2", "ml"),
        Change("curl", "7.88", None, "web"),
    ]
    assert [c.line for c in found] == [
        "  dash 0.5.12-1 -> 0.5.12-2",
        "+ libc6 2.36",
        "- zlib1g 1.2.13",
        "+ gcc-12-base (ml) 12.2",
        "- curl (web) 7.88",
    ]
    assert changes(new, new) == []
    assert [c.line for c in changes(None, new)] == [
        "+ dash 0.5.12-2",
        "+ libc6 2.36",
        "+ gcc-12-base (ml) 12.2",
        "+ libgomp1 (ml) 12.2",
    ]


# ------------------------------------------------------------------ lock_os
class FakeIndexes(Indexes):
    """The suites as given; ``loads`` counts the calls."""

    def __init__(self, *suites: Suite) -> None:  # no mirrors, no gpgv, no cache
        self.suites = suites
        self.loads = 0
        self.asked: list[str | None] = []

    def load(self, architecture: str | None = None) -> tuple[Suite, ...]:
        self.loads += 1
        self.asked.append(architecture)
        if architecture in (None, "amd64"):
            return self.suites
        return tuple(on_arch(s, architecture) for s in self.suites)


def on_arch(suite: Suite, arch: str) -> Suite:
    """``suite`` as its index for ``arch`` lists it: the same packages built for ``arch``
    (libc6 a binNMU there, "+b1": an architecture may have versions of its own)."""
    moved = []
    for c in suite.packages:
        version = f"{c.version}+b1" if c.name == "libc6" else c.version
        moved.append(dataclasses.replace(c, architecture=arch, version=version))
    return dataclasses.replace(suite, packages=tuple(moved))


class FakeLayers(OsLayers):
    """Builds nothing: each layer's digest is the sha256 of what it holds; ``builds``
    records (set, its packages, the OS layer pinned in the lock when it was built)."""

    def __init__(self, root: Path) -> None:
        super().__init__(LayerCache(root / "layers"), root / "debs", None)
        self.root = root
        self.builds: list[tuple[str, tuple[str, ...], LayerPin | None]] = []

    def build(
        self,
        lock: OsLock,
        packages: PackageSet,
        *,
        below: str | None = None,
        debs: Sequence[Deb] | None = None,
        architecture: str | None = None,
    ) -> Blob:
        held = tuple(f"{p.name}={p.version}" for p in packages.packages)
        self.builds.append(
            (below or "os", held, lock.of(architecture or lock.architecture).os.layer)
        )
        digest = hashlib.sha256(" ".join(held).encode()).hexdigest()
        return Blob(
            "tar+gzip",
            f"sha256:{digest}",
            len(held),
            f"sha256:{digest[::-1]}",
            self.root / digest,
        )


def locked(
    workspace: Workspace,
    indexes: Indexes,
    *,
    previous: OsLock | None = None,
    upgrade: bool = False,
) -> OsLock:
    """``lock_os`` over ``indexes`` with a fresh fake layer builder."""
    return lock_os(
        workspace,
        indexes=indexes,
        layers=FakeLayers(workspace.root),
        previous=previous,
        upgrade=upgrade,
    )


def suites(*, updated: bool) -> tuple[Suite, ...]:
    """bookworm 12.8 (12.9 when ``updated``), its updates, its security archive."""
    main = [
        candidate("python3.11-minimal", "3.11.2-6", depends="libc6 (>= 2.36), debconf"),
        candidate("dash", "0.5.12-2", pre_depends="libc6 (>= 2.34)"),
        candidate("libc6", "2.36-9"),
        candidate("libgomp1", "12.2.0-14", depends="libc6 (>= 2.34), gcc-12-base"),
        candidate("gcc-12-base", "12.2.0-14"),
        candidate("debconf", "1.5.82"),
    ]
    updates = [candidate("gcc-12-base", "12.2.0-15", suite="bookworm-updates")] if updated else []
    security = (
        [
            candidate(
                "libc6", "2.36-9+deb12u10", archive="debian-security", suite="bookworm-security"
            )
        ]
        if updated
        else []
    )
    return (
        Suite("debian", "bookworm", "12.9" if updated else "12.8", tuple(main)),
        Suite("debian", "bookworm-updates", "", tuple(updates)),
        Suite("debian-security", "bookworm-security", "", tuple(security)),
    )


def versions(found: PackageSet) -> dict[str, str]:
    return found.versions()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return a_workspace(
        tmp_path,
        an_image(tmp_path, "ml", os_packages=("libgomp1",)),
        an_image(tmp_path, "web"),
    )


def test_lock_os_resolves_every_set_builds_its_layer_and_pins_it(workspace: Workspace) -> None:
    layers = FakeLayers(workspace.root)
    lines: list[str] = []
    lock = lock_os(
        workspace,
        indexes=FakeIndexes(*suites(updated=False)),
        layers=layers,
        previous=None,
        upgrade=False,
        log=lines.append,
    )
    assert (lock.path, lock.inputs, lock.writer) == (
        workspace.root / "images" / "os.lock",
        os_inputs(workspace),
        WRITER,
    )
    assert (lock.suite, lock.release, lock.architecture, lock.python) == (
        "bookworm",
        "12.8",
        "amd64",
        "3.11",
    )
    assert versions(lock.os) == {
        "dash": "0.5.12-2",
        "libc6": "2.36-9",
        "python3.11-minimal": "3.11.2-6",
    }
    assert lock.os.omitted == (Omitted("python3.11-minimal", "Depends", "debconf"),)
    assert list(lock.extras) == ["ml"]  # web has no os-packages
    assert versions(lock.extras["ml"]) == {"gcc-12-base": "12.2.0-14", "libgomp1": "12.2.0-14"}
    assert lock.extras["ml"].roots == ("libgomp1",)
    os_built, ml_built = layers.builds
    assert os_built[:2] == ("os", ("dash=0.5.12-2", "libc6=2.36-9", "python3.11-minimal=3.11.2-6"))
    assert os_built[2] is None  # the OS layer is built first ...
    assert ml_built[:2] == ("ml", ("gcc-12-base=12.2.0-14", "libgomp1=12.2.0-14"))
    assert ml_built[2] == lock.os.layer  # ... and pinned before the extras are built over it
    assert lock.os.layer is not None
    assert lock.extras["ml"].layer is not None
    assert lock.os.layer.size == 3
    assert lines == [
        "    OS closure: 3 packages, 1 relations left out",
        f"    OS layer {lock.os.layer.digest[:19]}: 3 bytes",
        f"    ml's os-packages layer {lock.extras['ml'].layer.digest[:19]}: 2 bytes",
    ]
    assert parse_os_lock(lock.path, render(lock)) == lock


def test_lock_os_again_keeps_the_locked_versions_and_release(workspace: Workspace) -> None:
    first = locked(workspace, FakeIndexes(*suites(updated=False)))
    later = FakeIndexes(*suites(updated=True))
    again = locked(workspace, later, previous=first)
    assert again == first
    assert changes(first, again) == []


def test_lock_os_upgrade_takes_the_newest_of_everything(workspace: Workspace) -> None:
    first = locked(workspace, FakeIndexes(*suites(updated=False)))
    upgraded = locked(workspace, FakeIndexes(*suites(updated=True)), previous=first, upgrade=True)
    assert upgraded.release == "12.9"
    assert [c.line for c in changes(first, upgraded)] == [
        "  libc6 2.36-9 -> 2.36-9+deb12u10",
        "  gcc-12-base (ml) 12.2.0-14 -> 12.2.0-15",
    ]
    assert upgraded.os.packages[1].archive == "debian-security"
    assert upgraded.os.layer != first.os.layer


def test_lock_os_with_new_roots_keeps_the_versions_it_can(workspace: Workspace) -> None:
    first = locked(workspace, FakeIndexes(*suites(updated=False)))
    grown = dataclasses.replace(
        workspace, os=dataclasses.replace(workspace.os, packages=(*ROOTS, "gcc-12-base"))
    )
    again = locked(grown, FakeIndexes(*suites(updated=True)), previous=first)
    assert versions(again.os)["libc6"] == "2.36-9"  # kept
    assert "gcc-12-base" in versions(again.os)
    assert "gcc-12-base" not in versions(again.extras["ml"])  # now shared
    assert again.release == "12.8"
    assert again.inputs != first.inputs


def test_lock_os_without_a_python_root_says_what_to_add(tmp_path: Path) -> None:
    config = OsConfig(packages=("dash",), path=tmp_path / "pyproject.toml")
    indexes = FakeIndexes(*suites(updated=False))
    with pytest.raises(ConfigError) as err:
        locked(a_workspace(tmp_path, os=config), indexes)
    assert str(err.value) == (
        f"{tmp_path}/pyproject.toml: [tool.kiln.os] packages install no Python: add "
        "python3.X-minimal and libpython3.X-stdlib (e.g. python3.11-minimal, "
        "libpython3.11-stdlib)"
    )
    assert indexes.loads == 0


def test_lock_os_names_the_image_whose_os_packages_cannot_be_resolved(
    tmp_path: Path,
) -> None:
    workspace = a_workspace(tmp_path, an_image(tmp_path, "ml", os_packages=("libgomp2",)))
    with pytest.raises(ConfigError) as err:
        locked(workspace, FakeIndexes(*suites(updated=False)))
    assert str(err.value).startswith(
        f"{tmp_path}/images/ml/image.toml: os-packages: no suite has a package 'libgomp2' for amd64"
    )


def test_lock_os_for_another_suite_takes_that_suite_s_release(workspace: Workspace) -> None:
    first = locked(workspace, FakeIndexes(*suites(updated=False)))
    trixie = dataclasses.replace(workspace, os=dataclasses.replace(workspace.os, suite="trixie"))
    offered = [
        dataclasses.replace(
            s, name=s.name.replace("bookworm", "trixie"), version=s.version and "13.1"
        )
        for s in suites(updated=True)
    ]
    again = locked(trixie, FakeIndexes(*offered), previous=first)
    assert (again.suite, again.release) == ("trixie", "13.1")


def test_the_order_of_the_roots_changes_neither_the_inputs_nor_the_lock(tmp_path: Path) -> None:
    offered = Suite(
        "debian",
        "bookworm",
        "12.8",
        (
            candidate("python3.11-minimal", "3.11.2-6", depends="libedit2 | libreadline8"),
            candidate("dash", "0.5.12-2", depends="libreadline8"),
            candidate("libedit2", "3.1"),
            candidate("libreadline8", "8.2"),
        ),
    )
    locks = []
    for roots in (ROOTS, ROOTS[::-1]):
        config = OsConfig(packages=roots, exclude=(), path=tmp_path / "pyproject.toml")
        workspace = a_workspace(tmp_path, os=config)
        locks.append(locked(workspace, FakeIndexes(offered)))
    assert locks[0].inputs == locks[1].inputs
    assert versions(locks[0].os) == versions(locks[1].os)


# ------------------------------------------------------------------ several architectures
@pytest.fixture
def two_arch(tmp_path: Path) -> Workspace:
    config = OsConfig(
        architectures=("amd64", "arm64"),
        packages=ROOTS,
        exclude=("debconf",),
        path=tmp_path / "pyproject.toml",
    )
    return a_workspace(
        tmp_path,
        an_image(tmp_path, "ml", os_packages=("libgomp1",)),
        an_image(tmp_path, "web"),
        os=config,
    )


def test_lock_os_locks_one_closure_per_architecture_in_one_lock(two_arch: Workspace) -> None:
    layers = FakeLayers(two_arch.root)
    indexes = FakeIndexes(*suites(updated=False))
    lines: list[str] = []
    lock = lock_os(
        two_arch, indexes=indexes, layers=layers, previous=None, upgrade=False, log=lines.append
    )
    assert indexes.asked == [None, "arm64"]
    assert lock.architectures == ("amd64", "arm64")
    arm = lock.of("arm64")
    assert (arm.architecture, arm.suite, arm.release, arm.python) == (
        "arm64", "bookworm", "12.8", "3.11",
    )  # fmt: skip
    assert versions(lock.os)["libc6"] == "2.36-9"
    assert versions(arm.os) == {
        "dash": "0.5.12-2",
        "libc6": "2.36-9+b1",
        "python3.11-minimal": "3.11.2-6",
    }
    assert {p.architecture for p in arm.os.packages} == {"arm64"}
    assert versions(arm.extras["ml"]) == {"gcc-12-base": "12.2.0-14", "libgomp1": "12.2.0-14"}
    assert lock.of("amd64") == dataclasses.replace(lock, more={})
    assert arm.os.layer is not None
    assert arm.extras["ml"].layer is not None
    assert arm.os.layer != lock.os.layer  # libc6 differs: another layer
    # each architecture's OS layer is built before its extras, and pinned when they are
    assert [(b[0], b[1][1]) for b in layers.builds] == [
        ("os", "libc6=2.36-9"),
        ("ml", "libgomp1=12.2.0-14"),
        ("os", "libc6=2.36-9+b1"),
        ("ml", "libgomp1=12.2.0-14"),
    ]
    assert layers.builds[3][2] == arm.os.layer
    assert lines[:2] == [
        "    OS closure: 3 packages, 1 relations left out",
        "    OS closure arm64: 3 packages, 1 relations left out",
    ]
    assert lines[2].startswith("    OS layer (amd64) sha256:")
    assert lines[4].startswith("    OS layer (arm64) sha256:")
    assert len(lock.packages()) == 10  # 3 + 2 per architecture
    text = render(lock)
    assert text.index("[os]") < text.index("[arch.arm64]") < text.index('[arch.arm64.extras."ml"]')
    assert "\n# The OS layer for arm64: the same roots, its own packages.\n[arch.arm64]\n" in text
    assert parse_os_lock(lock.path, text) == lock
    assert render(parse_os_lock(lock.path, text)) == text


def test_a_lock_of_several_architectures_again_keeps_each_one_s_versions(
    two_arch: Workspace,
) -> None:
    first = locked(two_arch, FakeIndexes(*suites(updated=False)))
    again = locked(two_arch, FakeIndexes(*suites(updated=True)), previous=first)
    assert again == first
    upgraded = locked(two_arch, FakeIndexes(*suites(updated=True)), previous=first, upgrade=True)
    assert [c.line for c in changes(first, upgraded)] == [
        "  libc6 2.36-9 -> 2.36-9+deb12u10",
        "  gcc-12-base (ml) 12.2.0-14 -> 12.2.0-15",
        "  libc6 (os arm64) 2.36-9+b1 -> 2.36-9+deb12u10+b1",
        "  gcc-12-base (ml arm64) 12.2.0-14 -> 12.2.0-15",
    ]


def test_adding_an_architecture_keeps_the_first_one_s_lock_and_versions(
    workspace: Workspace, two_arch: Workspace
) -> None:
    one = locked(workspace, FakeIndexes(*suites(updated=False)))
    assert stale_reason(one, two_arch) is not None  # the inputs name both architectures
    both = locked(two_arch, FakeIndexes(*suites(updated=True)), previous=one)
    assert dataclasses.replace(both, inputs=one.inputs, more={}) == one
    # arm64 takes amd64's versions where its index has them (gcc-12-base 12.2.0-14, not -15)
    assert versions(both.of("arm64").extras["ml"])["gcc-12-base"] == "12.2.0-14"
    assert changes(one, both)[0].line == "+ dash (os arm64) 0.5.12-2"


def test_a_lock_names_its_architectures_when_asked_for_another(two_arch: Workspace) -> None:
    lock = locked(two_arch, FakeIndexes(*suites(updated=False)))
    with pytest.raises(ConfigError) as err:
        lock.of("riscv64")
    assert str(err.value) == (
        f"{lock.path}: locks amd64, arm64, not riscv64; add it to [tool.kiln.os] architectures "
        "and run `kiln lock`"
    )
