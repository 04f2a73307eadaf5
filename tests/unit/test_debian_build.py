"""The OS layers of a lock as blobs: .debs from the cache or the mirrors (checked by sha256),
a layer from the cache, built from cached .debs, the registry's copy, or built from the
mirrors' .debs, in that order; and kiln's OS base image made of them.

The shared OS layer is only built end to end (its bytecode needs the image's own Python):
here its blob is written from a hand-made tree, and an image's os-packages layer, which
compiles nothing, is the one built from .debs."""

from __future__ import annotations

import dataclasses
import gzip
import stat
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kiln._debian.deb import read_deb
from kiln._debian.lock import ArchSets, DebPin, LayerPin, OsLock, PackageSet
from kiln._debian.tree import DIR, FILE, SYMLINK, Entry
from kiln._errors import ArtifactAltered, ConfigError, ServiceUnavailable
from kiln._images.oci.assemble import assemble
from kiln._images.oci.cache import Blob, LayerCache
from kiln._images.oci.image import (
    canonical_json,
    sha256_digest,
)
from kiln._images.oci.index import image_index
from kiln._images.os_layers import (
    OS_ENV,
    Blobs,
    OsLayers,
    RegistryCopies,
    check_layer,
    deb_path,
    fetch_debs,
)
from kiln._images.os_tree import (
    extract,
    extras_tree,
    host_architecture,
    read_layer,
    store_tree,
)
from tests.debian_sample import (
    DEBIAN,
    SECURITY,
    FakeMirrors,
    bookworm_lock,
    deb,
    file,
    folder,
    pin,
    sha256,
    symlink,
)
from tests.unit.test_debian_ldcache import AARCH64, AARCH64_LIBC6, Tree, elf, read_cache

PROXY, DEB = DEBIAN
GNU = "usr/lib/x86_64-linux-gnu"


# ------------------------------------------------------------------ the workspace's OS
def os_entries() -> dict[str, Entry]:
    """The shared OS layer's tree (what os_tree would give, small): merged /usr, libc's
    loader and ldconfig, Debian's ld.so.conf, a shell."""
    tree = Tree().debian_conf()
    tree.add(Entry(f"{GNU}/libc.so.6", FILE, 0o755, data=elf("libc.so.6")))
    tree.add(Entry("usr/bin/dash", FILE, 0o755, data=b"\x7fELF dash"))
    tree.add(Entry("tmp", DIR, 0o1777))
    return {path: dataclasses.replace(e, owner="libc6") for path, e in tree.items()}


DASH_DEB = deb(
    "dash", [folder("./bin"), file("./bin/dash", b"\x7fELF dash", 0o755)], version="0.5.12-2"
)
LIBC_DEB = deb("libc6", [file(f"./{GNU}/libc.so.6", elf("libc.so.6"), 0o755)], version="2.36")
GOMP_DEB = deb(
    "libgomp1",
    [
        folder("./usr"),
        folder("./usr/lib"),
        folder(f"./{GNU}"),
        file(f"./{GNU}/libgomp.so.1.0.0", elf("libgomp.so.1"), 0o644),
        symlink(f"./{GNU}/libgomp.so.1", "libgomp.so.1.0.0"),
    ],
    version="12.2.0-14",
)
DASH = pin("dash", DASH_DEB, version="0.5.12-2")
LIBC = pin("libc6", LIBC_DEB, version="2.36", archive="debian-security")
GOMP = pin("libgomp1", GOMP_DEB, version="12.2.0-14")


@dataclass
class FakeCopies:
    """The registry's layer blobs by digest; ``asked``: every digest looked up."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def fetch(self, layer: LayerPin, target: Path) -> bool:
        self.asked.append(layer.digest)
        if layer.digest not in self.blobs:
            return False
        target.write_bytes(self.blobs[layer.digest])
        return True


@dataclass
class Setup:
    """A workspace's caches, mirrors and registry, and a lock of the OS layer (dash,
    libc6) and the ml image's os-packages (libgomp1) whose layers are the right ones."""

    root: Path
    mirrors: FakeMirrors = field(default_factory=FakeMirrors)
    copies: FakeCopies = field(default_factory=FakeCopies)
    os_blob: bytes = field(init=False)  # the OS layer's blob, as the lock pins it
    ml_blob: bytes = field(init=False)  # the ml image's os-packages layer's
    lock: OsLock = field(init=False)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        scratch = LayerCache(self.root / "scratch")
        os_layer = store_tree(os_entries(), scratch)
        ml_entries = extras_tree(
            [read_deb(GOMP_DEB, name="libgomp1", where="x")], read_layer(os_layer)
        )
        ml_layer = store_tree(ml_entries, scratch)
        self.os_blob, self.ml_blob = os_layer.path.read_bytes(), ml_layer.path.read_bytes()
        self.lock = bookworm_lock(
            self.root / "images" / "os.lock",
            PackageSet((DASH, LIBC), (), _pin(os_layer)),
            {"ml": PackageSet((GOMP,), (), _pin(ml_layer), ("libgomp1",))},
        )

    @property
    def cache(self) -> LayerCache:
        return LayerCache(self.root / "layers")

    @property
    def debs(self) -> Path:
        return self.root / "debian"

    def layers(self, *, mirrors: bool = True) -> OsLayers:
        client = self.mirrors.client() if mirrors else None
        return OsLayers(self.cache, self.debs, client, copies=self.copies, log=self.lines.append)

    def cache_os_layer(self) -> None:
        target = self.cache.blob_path(self.pin().digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.os_blob)

    def cache_deb(self, pin: DebPin, data: bytes) -> None:
        deb_path(self.debs, pin).parent.mkdir(parents=True, exist_ok=True)
        deb_path(self.debs, pin).write_bytes(data)

    def serve(self, pin: DebPin, data: bytes) -> None:
        self.mirrors.serve(DEB if pin.archive == "debian" else SECURITY[0], pin.path, data)

    def pin(self, image: str | None = None) -> LayerPin:
        found = (self.lock.os if image is None else self.lock.extras[image]).layer
        assert found is not None
        return found


def _pin(blob: Blob) -> LayerPin:
    return LayerPin(blob.diff_id, blob.digest, blob.size)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def members(blob: Blob) -> dict[str, tarfile.TarInfo]:
    with gzip.open(blob.path) as stream, tarfile.open(fileobj=stream) as tar:
        return {m.name: m for m in tar.getmembers()}


# ------------------------------------------------------------------ fetch_debs
def test_fetch_debs_takes_cached_debs_whose_sha256_is_the_lock_s(setup: Setup) -> None:
    setup.cache_deb(DASH, DASH_DEB)
    fetched = fetch_debs([DASH], setup.mirrors.client(), setup.debs)
    assert fetched.debs == ((DASH, DASH_DEB),)
    assert fetched.gone == ()
    assert setup.mirrors.urls() == []


def test_fetch_debs_downloads_what_the_cache_lacks_or_holds_altered(setup: Setup) -> None:
    setup.cache_deb(DASH, b"truncated")
    setup.serve(DASH, DASH_DEB)
    setup.serve(GOMP, GOMP_DEB)
    lines: list[str] = []
    fetched = fetch_debs([DASH, GOMP], setup.mirrors.client(), setup.debs, log=lines.append)
    assert fetched.debs == ((DASH, DASH_DEB), (GOMP, GOMP_DEB))
    assert deb_path(setup.debs, DASH).read_bytes() == DASH_DEB
    assert deb_path(setup.debs, GOMP) == setup.debs / "debs" / f"{sha256(GOMP_DEB)}.deb"
    assert deb_path(setup.debs, GOMP).read_bytes() == GOMP_DEB
    assert lines == [
        f"    fetched dash_0.5.12-2_amd64.deb ({len(DASH_DEB)} bytes)",
        f"    fetched libgomp1_12.2.0-14_amd64.deb ({len(GOMP_DEB)} bytes)",
    ]
    assert sorted(p.name for p in (setup.debs / "debs").iterdir()) == sorted(
        [f"{DASH.sha256}.deb", f"{GOMP.sha256}.deb"]
    )


def test_fetch_debs_refuses_other_bytes_naming_the_url_and_the_package(setup: Setup) -> None:
    setup.serve(DASH, DASH_DEB + b"tampered")
    with pytest.raises(ArtifactAltered) as err:
        fetch_debs([DASH], setup.mirrors.client(), setup.debs)
    assert str(err.value) == (
        f"{DEB}/{DASH.path}: sha256 {sha256(DASH_DEB + b'tampered')}, but images/os.lock pins "
        f"dash 0.5.12-2 to {DASH.sha256}; the mirror serves other bytes under this name: use "
        "another mirror (or, if the lock was edited, restore it)"
    )
    assert list((setup.debs / "debs").iterdir()) == []


def test_fetch_debs_lists_what_no_mirror_and_no_cache_has(setup: Setup) -> None:
    setup.cache_deb(DASH, DASH_DEB)
    fetched = fetch_debs([DASH, GOMP], setup.mirrors.client(), setup.debs)
    assert (fetched.debs, fetched.gone) == (((DASH, DASH_DEB),), (GOMP,))
    assert setup.mirrors.urls() == [f"{PROXY}/{GOMP.path}", f"{DEB}/{GOMP.path}"]
    setup.serve(GOMP, GOMP_DEB)  # the cache only: the mirrors are not asked
    assert fetch_debs([DASH, GOMP], None, setup.debs).gone == (GOMP,)
    assert list((setup.debs / "debs").iterdir()) == [deb_path(setup.debs, DASH)]


# ------------------------------------------------------------------ extract, read_layer
def test_extract_writes_what_python_reads_with_usable_modes(tmp_path: Path) -> None:
    tree = {
        "usr": Entry("usr", DIR, 0o755),
        "usr/bin": Entry("usr/bin", DIR, 0o755),
        "usr/bin/python3.11": Entry("usr/bin/python3.11", FILE, 0o755, data=b"elf"),
        "usr/bin/python3": Entry("usr/bin/python3", SYMLINK, 0o777, target="python3.11"),
        "etc/shadow": Entry("etc/shadow", FILE, 0o440, data=b"root:*:"),
        "usr/bin/su": Entry("usr/bin/su", FILE, 0o4755, data=b"su"),
        "usr/share/doc/x/copyright": Entry("usr/share/doc/x/copyright", FILE, 0o644, data=b"c"),
        "usr/share/zoneinfo/UTC": Entry("usr/share/zoneinfo/UTC", FILE, 0o644, data=b"TZif"),
        "usr/lib/python3/dist-packages/six.py": Entry(
            "usr/lib/python3/dist-packages/six.py", FILE, 0o644, data=b""
        ),
    }
    extract(tree, tmp_path)
    assert (tmp_path / "usr/bin/python3.11").read_bytes() == b"elf"
    assert (tmp_path / "usr/bin/python3").readlink() == Path("python3.11")
    assert stat.S_IMODE((tmp_path / "usr/bin/python3.11").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "etc/shadow").stat().st_mode) == 0o640  # owner may write
    assert stat.S_IMODE((tmp_path / "usr/bin/su").stat().st_mode) == 0o755  # no setuid here
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert written == [
        "etc",
        "etc/shadow",
        "usr",
        "usr/bin",
        "usr/bin/python3",
        "usr/bin/python3.11",
        "usr/bin/su",
    ]


def test_read_layer_gives_back_the_stored_entries(tmp_path: Path) -> None:
    entries = os_entries()
    blob = store_tree(entries, LayerCache(tmp_path))
    assert read_layer(blob) == {
        path: dataclasses.replace(e, owner="the OS layer") for path, e in entries.items()
    }


def test_check_layer_names_the_lock_both_digests_and_the_fix(setup: Setup) -> None:
    blob = Blob(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "sha256:" + "1" * 64,
        10,
        "sha256:" + "2" * 64,
        setup.root / "blob",
    )
    check_layer(blob, LayerPin(blob.diff_id, blob.digest, 10), setup.lock.path, "the OS layer")
    for other in (
        LayerPin(blob.diff_id, blob.digest, 11),
        LayerPin("sha256:" + "3" * 64, blob.digest, 10),
    ):
        with pytest.raises(ConfigError) as err:
            check_layer(blob, other, setup.lock.path, "the OS layer")
        assert str(err.value) == (
            f"{setup.lock.path}: the OS layer built from the locked packages is {blob.digest} "
            f"(diff_id {blob.diff_id}), the lock records {other.digest} (diff_id "
            f"{other.diff_id}); the lock was written by another version of kiln or edited: run "
            "`kiln lock` and commit it"
        )


# ------------------------------------------------------------------ RegistryCopies
@dataclass
class FakeBlobs:
    held: dict[str, set[str]]  # repository -> digests
    calls: list[str] = field(default_factory=list)

    def blob_exists(self, repository: str, digest: str) -> bool:
        self.calls.append(f"HEAD {repository}")
        return digest in self.held.get(repository, set())

    def download_blob(self, repository: str, digest: str, target: Path) -> int:
        self.calls.append(f"GET {repository}")
        target.write_bytes(f"{repository} {digest}".encode())
        return target.stat().st_size


def test_registry_copies_are_looked_for_in_each_repository_in_order(tmp_path: Path) -> None:
    layer = LayerPin("sha256:" + "d" * 64, "sha256:" + "c" * 64, 5)
    registry = FakeBlobs({"acme/web": set(), "acme/ml": {layer.digest}, "acme/x": {layer.digest}})
    blobs: Blobs = registry
    copies = RegistryCopies(blobs, ["acme/web", "acme/ml", "acme/x"])
    assert copies.fetch(layer, tmp_path / "blob")
    assert (tmp_path / "blob").read_text() == f"acme/ml {layer.digest}"
    assert registry.calls == ["HEAD acme/web", "HEAD acme/ml", "GET acme/ml"]
    assert not RegistryCopies(registry, ["acme/web"]).fetch(layer, tmp_path / "none")
    assert not (tmp_path / "none").exists()


# ------------------------------------------------------------------ OsLayers.layer
def test_a_cached_layer_blob_is_taken_as_it_is(setup: Setup) -> None:
    setup.cache_os_layer()
    blob = setup.layers(mirrors=False).layer(setup.lock)
    pinned = setup.pin()
    assert (blob.digest, blob.diff_id, blob.size) == (pinned.digest, pinned.diff_id, pinned.size)
    assert blob.path == setup.cache.blob_path(setup.pin().digest)
    assert setup.copies.asked == []


def test_a_cached_blob_with_other_bytes_is_replaced_by_the_registry_s_copy(
    setup: Setup,
) -> None:
    setup.cache_os_layer()
    path = setup.cache.blob_path(setup.pin().digest)
    path.write_bytes(bytes(len(setup.os_blob)))  # the right size, other bytes
    setup.copies.blobs[setup.pin().digest] = setup.os_blob
    blob = setup.layers().layer(setup.lock)
    assert blob.path.read_bytes() == setup.os_blob
    assert setup.copies.asked == [setup.pin().digest]
    assert setup.lines == [f"    OS layer {setup.pin().digest[:19]}: taken from the registry"]
    assert setup.mirrors.urls() == []  # no .deb fetched: the copy came first
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_the_registry_s_copy_with_other_bytes_is_an_altered_blob(setup: Setup) -> None:
    setup.copies.blobs[setup.pin().digest] = setup.os_blob + b"\0"
    with pytest.raises(ArtifactAltered) as err:
        setup.layers().layer(setup.lock)
    assert str(err.value) == (
        f"the registry's blob {setup.pin().digest} (kiln's OS layer) holds other bytes; the "
        "registry's storage is damaged or was altered: delete the blob there"
    )
    assert list(setup.cache.blob_path(setup.pin().digest).parent.iterdir()) == []


def test_a_package_gone_everywhere_names_it_and_the_upgrade(setup: Setup) -> None:
    setup.cache_deb(DASH, DASH_DEB)
    with pytest.raises(ServiceUnavailable) as err:
        setup.layers().layer(setup.lock)
    assert str(err.value) == (
        f"{setup.lock.path}: no mirror serves libc6 2.36 any more (Debian drops superseded "
        "versions), kiln's cache lacks them and the registry has no copy of the layer; move the "
        "lock to the versions the suites offer now: `kiln lock --upgrade-os`, then commit "
        "images/os.lock"
    )
    assert setup.copies.asked == [setup.pin().digest]
    assert setup.mirrors.urls() == [f"{SECURITY[0]}/{LIBC.path}"]


def test_an_extras_layer_is_built_from_cached_debs_before_the_registry_is_asked(
    setup: Setup,
) -> None:
    setup.cache_os_layer()
    setup.cache_deb(GOMP, GOMP_DEB)
    setup.copies.blobs[setup.pin("ml").digest] = setup.ml_blob  # there, but never asked for
    blob = setup.layers(mirrors=False).layer(setup.lock, "ml")
    assert (blob.digest, blob.diff_id, blob.size) == (
        setup.pin("ml").digest,
        setup.pin("ml").diff_id,
        setup.pin("ml").size,
    )
    assert setup.copies.asked == []
    assert blob.path.read_bytes() == setup.ml_blob
    found = members(blob)
    assert sorted(found) == [  # its packages' files over the OS layer's, and a new cache
        "etc/ld.so.cache",
        f"{GNU}/libgomp.so.1",
        f"{GNU}/libgomp.so.1.0.0",
        "var",
        "var/lib",
        "var/lib/dpkg",
        "var/lib/dpkg/status.d",
        "var/lib/dpkg/status.d/libgomp1",
        "var/lib/dpkg/status.d/libgomp1.md5sums",
    ]
    with gzip.open(blob.path) as stream, tarfile.open(fileobj=stream) as tar:
        cache = tar.extractfile("etc/ld.so.cache")
        assert cache is not None
        libs = {(lib.key, lib.value) for lib in read_cache(cache.read()).libs}
    lib = "/lib/x86_64-linux-gnu"  # first in Debian's ld.so.conf.d, as ldconfig lists them
    assert libs == {("libc.so.6", f"{lib}/libc.so.6"), ("libgomp.so.1", f"{lib}/libgomp.so.1")}


def test_an_extras_layer_is_built_from_the_mirrors_when_nothing_else_has_it(
    setup: Setup,
) -> None:
    setup.cache_os_layer()
    setup.serve(GOMP, GOMP_DEB)
    blob = setup.layers().layer(setup.lock, "ml")
    assert blob.path.read_bytes() == setup.ml_blob
    assert setup.copies.asked == [setup.pin("ml").digest]
    assert deb_path(setup.debs, GOMP).read_bytes() == GOMP_DEB


def test_an_extras_layer_reads_the_os_layer_from_the_registry_when_needed(
    setup: Setup,
) -> None:
    setup.cache_deb(GOMP, GOMP_DEB)
    setup.copies.blobs[setup.pin().digest] = setup.os_blob
    blob = setup.layers(mirrors=False).layer(setup.lock, "ml")
    assert blob.path.read_bytes() == setup.ml_blob
    assert setup.copies.asked == [setup.pin().digest]


def test_a_built_layer_other_than_the_lock_s_is_refused(setup: Setup) -> None:
    setup.cache_os_layer()
    setup.cache_deb(GOMP, GOMP_DEB)
    recorded = LayerPin("sha256:" + "d" * 64, "sha256:" + "c" * 64, 1234)
    ml = dataclasses.replace(setup.lock.extras["ml"], layer=recorded)
    lock = dataclasses.replace(setup.lock, extras={"ml": ml})
    with pytest.raises(ConfigError) as err:
        setup.layers(mirrors=False).layer(lock, "ml")
    built = setup.pin("ml")
    assert str(err.value) == (
        f"{lock.path}: the ml image's os-packages layer built from the locked packages is "
        f"{built.digest} (diff_id {built.diff_id}), the lock records {recorded.digest} "
        f"(diff_id {recorded.diff_id}); the lock was written by another version of kiln or "
        "edited: run `kiln lock` and commit it"
    )


def test_an_extras_package_shipping_an_os_layer_file_differently_is_named(
    setup: Setup,
) -> None:
    setup.cache_os_layer()
    other = deb("busybox", [file("./bin/dash", b"busybox", 0o755)])
    busybox = pin("busybox", other)
    setup.cache_deb(busybox, other)
    ml = dataclasses.replace(setup.lock.extras["ml"], packages=(busybox,))
    with pytest.raises(ConfigError) as err:
        setup.layers(mirrors=False).layer(dataclasses.replace(setup.lock, extras={"ml": ml}), "ml")
    assert str(err.value).startswith("/usr/bin/dash: the OS layer and busybox both ship it")


# ------------------------------------------------------------------ OsLayers.base_image
def test_the_base_image_is_the_os_layer_with_a_config_written_here(setup: Setup) -> None:
    setup.cache_os_layer()
    image = setup.layers(mirrors=False).base_image(setup.lock)
    assert image.ref == "debian bookworm 12.8 (images/os.lock)"
    assert [b.digest for b in image.layers] == [setup.pin().digest]
    assert image.config == {
        "architecture": "amd64",
        "os": "linux",
        "created": "1980-01-01T00:00:00Z",
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ],
            "Cmd": ["python3"],
        },
        "rootfs": {"type": "layers", "diff_ids": [setup.pin().diff_id]},
        "history": [
            {
                "created": "1980-01-01T00:00:00Z",
                "created_by": "kiln: OS layer: Debian bookworm 12.8, 2 packages (images/os.lock)",
            }
        ],
    }
    assert list(OS_ENV) == image.config["config"]["Env"]
    assert image.image_id == sha256_digest(canonical_json(image.config))
    assert (image.origin, image.digest) == (None, None)


def test_an_image_s_base_adds_its_os_packages_layer(setup: Setup) -> None:
    setup.cache_os_layer()
    setup.cache_deb(GOMP, GOMP_DEB)
    layers = setup.layers(mirrors=False)
    plain = layers.base_image(setup.lock)
    image = layers.base_image(setup.lock, "ml")
    assert [b.digest for b in image.layers] == [setup.pin().digest, setup.pin("ml").digest]
    assert image.config["rootfs"]["diff_ids"] == [setup.pin().diff_id, setup.pin("ml").diff_id]
    assert [h["created_by"] for h in image.config["history"]][1] == (
        "kiln: ml's os-packages: libgomp1"
    )
    assert image.image_id == sha256_digest(canonical_json(image.config)) != plain.image_id
    assert image.ref == plain.ref


def test_the_base_image_config_is_the_same_for_the_same_lock(setup: Setup) -> None:
    setup.cache_os_layer()
    first = setup.layers(mirrors=False).base_image(setup.lock)
    again = setup.layers(mirrors=False).base_image(setup.lock)
    assert canonical_json(first.config) == canonical_json(again.config)
    moved = dataclasses.replace(setup.lock, release="12.9")
    assert setup.layers(mirrors=False).base_image(moved).image_id != first.image_id


# ------------------------------------------------------------------ another architecture
ARM = "usr/lib/aarch64-linux-gnu"
ARM_GOMP_DEB = deb(
    "libgomp1",
    [
        folder("./usr"),
        folder("./usr/lib"),
        folder(f"./{ARM}"),
        file(f"./{ARM}/libgomp.so.1.0.0", elf("libgomp.so.1", machine=AARCH64), 0o644),
        symlink(f"./{ARM}/libgomp.so.1", "libgomp.so.1.0.0"),
    ],
    version="12.2.0-14",
)
ARM_GOMP = dataclasses.replace(
    pin("libgomp1", ARM_GOMP_DEB, version="12.2.0-14"),
    architecture="arm64",
    path="pool/main/g/gcc-12/libgomp1_12.2.0-14_arm64.deb",
)


def arm_os_entries() -> dict[str, Entry]:
    """An arm64 OS layer's tree, small: aarch64 ldconfig, libc and loader, Debian's
    ld.so.conf for the aarch64 triplet."""
    tree = Tree(machine=AARCH64).debian_conf("aarch64-linux-gnu")
    tree.add(Entry(f"{ARM}/libc.so.6", FILE, 0o755, data=elf("libc.so.6", machine=AARCH64)))
    tree.add(Entry("tmp", DIR, 0o1777))
    return {path: dataclasses.replace(e, owner="libc6") for path, e in tree.items()}


def two_arch_lock(setup: Setup) -> OsLock:
    """``setup``'s lock with an arm64 closure too: its OS layer and the ml image's
    os-packages over it (aarch64 libgomp), pinned as they build."""
    scratch = LayerCache(setup.root / "arm-scratch")
    os_layer = store_tree(arm_os_entries(), scratch)
    ml = extras_tree([read_deb(ARM_GOMP_DEB, name="libgomp1", where="x")], read_layer(os_layer))
    ml_layer = store_tree(ml, scratch)
    target = setup.cache.blob_path(os_layer.digest)  # the arm64 OS layer is in the cache
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(os_layer.path.read_bytes())
    arm_libc = dataclasses.replace(LIBC, architecture="arm64")
    sets = ArchSets(
        PackageSet((arm_libc,), (), _pin(os_layer)),
        {"ml": PackageSet((ARM_GOMP,), (), _pin(ml_layer), ("libgomp1",))},
    )
    return dataclasses.replace(setup.lock, more={"arm64": sets})


def test_each_architecture_s_extras_layer_is_built_over_its_own_os_layer(setup: Setup) -> None:
    lock = two_arch_lock(setup)
    setup.cache_os_layer()
    setup.cache_deb(GOMP, GOMP_DEB)
    setup.cache_deb(ARM_GOMP, ARM_GOMP_DEB)
    layers = setup.layers(mirrors=False)
    amd = layers.layer(lock, "ml")  # the amd64 OS tree is read first ...
    arm = layers.layer(lock, "ml", architecture="arm64")  # ... and not taken for arm64
    assert amd.path.read_bytes() == setup.ml_blob
    ml_pin = lock.of("arm64").extras["ml"].layer
    assert ml_pin is not None
    assert (arm.digest, arm.size) == (ml_pin.digest, ml_pin.size)
    assert f"{ARM}/libgomp.so.1" in members(arm)
    with gzip.open(arm.path) as stream, tarfile.open(fileobj=stream) as tar:
        cache = tar.extractfile("etc/ld.so.cache")
        assert cache is not None
        libs = {(lib.key, lib.value, lib.flags) for lib in read_cache(cache.read()).libs}
    lib = "/lib/aarch64-linux-gnu"  # written in code: no aarch64 ldconfig ran
    assert libs == {
        ("libc.so.6", f"{lib}/libc.so.6", AARCH64_LIBC6),
        ("libgomp.so.1", f"{lib}/libgomp.so.1", AARCH64_LIBC6),
    }


@pytest.mark.parametrize("fails", [False, True])
def test_another_architecture_s_debs_read_ahead_are_what_its_layer_is_built_from(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    lock = two_arch_lock(setup)
    setup.cache_os_layer()
    setup.cache_deb(ARM_GOMP, ARM_GOMP_DEB)
    layers = setup.layers(mirrors=False)
    reads: list[str] = []
    debs_of = layers._debs_of

    def counted(packages: Any, where: Path, *, mirrors: bool) -> Any:
        reads.append(threading.current_thread().name)
        if fails and len(reads) == 1:
            raise OSError("the read ahead failed")
        return debs_of(packages, where, mirrors=mirrors)

    monkeypatch.setattr(layers, "_debs_of", counted)
    layers.read_ahead(lock, "ml", architecture="arm64")
    layers.read_ahead(lock, architecture="arm64")  # its OS layer is cached: nothing to read
    arm = layers.layer(lock, "ml", architecture="arm64")
    pin = lock.of("arm64").extras["ml"].layer
    assert pin is not None
    assert (arm.digest, arm.size) == (pin.digest, pin.size)
    # Read once, in the thread of its own; read again by the build only when that failed.
    assert reads == ["kiln-debs-arm64", *(["MainThread"] if fails else [])]


def test_the_base_image_of_an_architecture_is_its_layers_and_says_it(setup: Setup) -> None:
    lock = two_arch_lock(setup)
    setup.cache_os_layer()
    setup.cache_deb(ARM_GOMP, ARM_GOMP_DEB)
    layers = setup.layers(mirrors=False)
    arm = layers.base_image(lock, "ml", architecture="arm64")
    amd = layers.base_image(lock)
    sets = lock.of("arm64")
    assert sets.os.layer is not None
    assert sets.extras["ml"].layer is not None
    assert (arm.config["architecture"], arm.config["variant"]) == ("arm64", "v8")
    assert arm.config["rootfs"]["diff_ids"] == [
        sets.os.layer.diff_id,
        sets.extras["ml"].layer.diff_id,
    ]
    assert amd.config["architecture"] == "amd64"
    assert "variant" not in amd.config
    assert amd.config["rootfs"]["diff_ids"] == [setup.pin().diff_id]


@pytest.mark.skipif(host_architecture() != "amd64", reason="the foreign architecture is arm64")
def test_a_foreign_os_layer_needs_this_machine_s_python_at_the_same_version(
    setup: Setup,
) -> None:
    lock = two_arch_lock(setup)
    python = dataclasses.replace(DASH, name="python3.11-minimal", version="3.11.2-6+deb12u5")
    arm_python = dataclasses.replace(python, version="3.11.2-6+deb12u4", architecture="arm64")
    arm_only = dataclasses.replace(
        lock, architecture="arm64", os=lock.more["arm64"].os, extras={}, more={}
    )
    layers = setup.layers(mirrors=False)
    with pytest.raises(ConfigError) as err:
        layers.build(arm_only, arm_only.os, debs=[])
    assert str(err.value) == (
        f"{lock.path}: the arm64 OS layer's bytecode is compiled by the amd64 Python of the "
        "same lock (nothing runs emulated), and the lock has no amd64: add 'amd64' to "
        "[tool.kiln.os] architectures and run `kiln lock`"
    )
    skewed = dataclasses.replace(
        lock,
        os=dataclasses.replace(lock.os, packages=(*lock.os.packages, python)),
        more={
            "arm64": ArchSets(
                dataclasses.replace(lock.more["arm64"].os, packages=(arm_python,)), {}
            )
        },
    )
    with pytest.raises(ConfigError) as err:
        layers.build(skewed, skewed.of("arm64").os, debs=[], architecture="arm64")
    assert str(err.value) == (
        f"{lock.path}: python3.11-minimal is 3.11.2-6+deb12u4 for arm64 but 3.11.2-6+deb12u5 "
        "for amd64; its bytecode is compiled by the amd64 Python, which must be the same "
        "version: run `kiln lock --upgrade-os`"
    )


def test_images_on_each_architecture_s_base_make_one_index_of_both_platforms(
    setup: Setup,
) -> None:
    lock = two_arch_lock(setup)
    setup.cache_os_layer()
    layers = setup.layers(mirrors=False)
    images = []
    for arch in ("amd64", "arm64"):
        base = layers.base_image(lock, architecture=arch)
        images.append(assemble(base, (), env={}, labels={}, annotations={}, what=arch))
    index = image_index(images)
    assert [str(p) for p, _ in index.images] == ["linux/amd64", "linux/arm64/v8"]
    assert images[0].digest != images[1].digest
