"""Small Debian artifacts for the ``kiln._debian`` tests, written in memory: ``.deb`` files
(an ar archive of debian-binary, control.tar.* and data.tar.*), Packages and Release
indexes, a signing ``gpgv`` stand-in, and mirrors served by an in-memory transport."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from kiln._debian.archive import Candidate, Mirrors
from kiln._debian.config import OsConfig
from kiln._debian.lock import DebPin, OsLock, PackageSet
from kiln._errors import CommandFailed, CommandNotFound
from tests.unit.test_credentials import FakeTransport, session_with

ARCH = "amd64"
PACKAGES_XZ = f"main/binary-{ARCH}/Packages.xz"
DEBIAN = ("https://proxy.test/debian", "https://deb.test/debian")
SECURITY = ("https://deb.test/debian-security",)
OS = OsConfig(mirrors=(("debian", DEBIAN), ("debian-security", SECURITY)))


# ------------------------------------------------------------------ .deb files
@dataclass(frozen=True)
class Member:
    """One member of a tar: ``kind`` is file, dir, symlink, hardlink or fifo; ``target``
    a link's target (as the tar writes it)."""

    path: str
    data: bytes = b""
    kind: str = "file"
    mode: int = 0o644
    target: str = ""
    uid: int = 0
    gid: int = 0


def file(path: str, data: bytes | str, mode: int = 0o644, *, uid: int = 0, gid: int = 0) -> Member:
    raw = data.encode() if isinstance(data, str) else data
    return Member(path, raw, "file", mode, uid=uid, gid=gid)


def folder(path: str, mode: int = 0o755) -> Member:
    return Member(path, kind="dir", mode=mode)


def symlink(path: str, target: str) -> Member:
    return Member(path, kind="symlink", mode=0o777, target=target)


def hardlink(path: str, target: str) -> Member:
    return Member(path, kind="hardlink", target=target)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


_COMPRESS = {"xz": lzma.compress, "gz": lambda data: gzip.compress(data, mtime=0)}


def tar(members: Iterable[Member], compression: str = "xz") -> bytes:
    """A tar of ``members`` (``./``-prefixed names, as dpkg-deb writes them), compressed
    with ``compression`` ("xz" or "gz")."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as out:
        for member in members:
            info = tarfile.TarInfo(member.path)
            info.type = _TYPES[member.kind]
            info.mode = member.mode
            info.uid, info.gid = member.uid, member.gid
            info.linkname = member.target
            info.size = len(member.data) if member.kind == "file" else 0
            out.addfile(info, io.BytesIO(member.data) if member.kind == "file" else None)
    return _COMPRESS[compression](buf.getvalue())


def ar(members: Sequence[tuple[str, bytes]]) -> bytes:
    """An ar archive as dpkg-deb writes one: ``!<arch>``, then per member a 60-byte header
    and its data, padded to an even size."""
    out = b"!<arch>\n"
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}".encode() + b"`\n"
        assert len(header) == 60
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


AUTO = b"<the members' md5sums>"


def md5sums_of(members: Iterable[Member]) -> bytes:
    """The md5sums file dpkg-deb's tools write: each regular file, without ``./``."""
    return b"".join(
        f"{hashlib.md5(m.data).hexdigest()}  {m.path.removeprefix('./')}\n".encode()  # noqa: S324 - dpkg's format
        for m in members
        if m.kind == "file"
    )


def control_text(name: str, version: str = "1.0") -> str:
    """A binary package's control file."""
    return (
        f"Package: {name}\nVersion: {version}\nArchitecture: {ARCH}\n"
        f"Description: {name} for kiln's tests\n"
    )


def deb(
    name: str,
    members: Sequence[Member] = (),
    *,
    version: str = "1.0",
    md5sums: bytes | None = AUTO,
    compression: str = "xz",
) -> bytes:
    """A ``.deb`` of package ``name`` holding ``members`` in its data.tar; its md5sums are
    the members' (``AUTO``), ``md5sums``, or none at all (None)."""
    control_members = [file("./control", control_text(name, version))]
    if md5sums is AUTO:
        md5sums = md5sums_of(members)
    if md5sums is not None:
        control_members.append(file("./md5sums", md5sums))
    return ar(
        [
            ("debian-binary", b"2.0\n"),
            (f"control.tar.{compression}", tar(control_members, compression)),
            (f"data.tar.{compression}", tar(members, compression)),
        ]
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pool_path(name: str, version: str, archive: str = "debian") -> str:
    pool = "pool/updates/main" if archive == "debian-security" else "pool/main"
    return f"{pool}/{name[0]}/{name}/{name}_{version}_{ARCH}.deb"


def pin(name: str, data: bytes, *, version: str = "1.0", archive: str = "debian") -> DebPin:
    """The lock's pin of the ``.deb`` ``data``."""
    return DebPin(
        name,
        version,
        ARCH,
        name,
        archive,
        pool_path(name, version, archive),
        len(data),
        sha256(data),
    )


# ------------------------------------------------------------------ indexes
def candidate(
    name: str,
    version: str = "1.0",
    *,
    depends: str = "",
    pre_depends: str = "",
    provides: str = "",
    architecture: str = ARCH,
    archive: str = "debian",
    suite: str = "bookworm",
    source: str | None = None,
) -> Candidate:
    """A package as a suite's index lists it (its pool file is never read)."""
    return Candidate(
        name=name,
        version=version,
        architecture=architecture,
        source=source or name,
        archive=archive,
        suite=suite,
        path=pool_path(name, version, archive),
        size=1000 + len(name),
        sha256=sha256(f"{name} {version} {archive}".encode()),
        depends=depends,
        pre_depends=pre_depends,
        provides=provides,
    )


def universe(*candidates: Candidate) -> dict[str, list[Candidate]]:
    """What ``by_name`` gives for suites listing ``candidates`` (in that order)."""
    found: dict[str, list[Candidate]] = {}
    for c in candidates:
        found.setdefault(c.name, []).append(c)
    return found


def packages_file(stanzas: Iterable[Mapping[str, str]]) -> bytes:
    return "\n".join(
        "".join(f"{key}: {value}\n" for key, value in stanza.items()) for stanza in stanzas
    ).encode()


def stanza(c: Candidate, **extra: str) -> dict[str, str]:
    """``c`` as a Packages stanza (with fields the resolver does not read)."""
    doc = {"Package": c.name}
    if c.source != c.name:
        doc["Source"] = c.source
    doc |= {
        "Version": c.version,
        "Installed-Size": "12",
        "Maintainer": "Debian <debian@example.org>",
        "Architecture": c.architecture,
    }
    for key, value in (
        ("Depends", c.depends),
        ("Pre-Depends", c.pre_depends),
        ("Provides", c.provides),
    ):
        if value:
            doc[key] = value
    doc |= {"Filename": c.path, "Size": str(c.size), "SHA256": c.sha256, **extra}
    return doc


def release_text(
    suite: str,
    files: Mapping[str, bytes],
    *,
    codename: str | None = None,
    version: str = "",
    architectures: str = "all amd64 arm64",
    valid_until: str | None = None,
) -> str:
    lines = [
        "Origin: Debian",
        "Label: Debian",
        f"Suite: {suite}",
        f"Codename: {codename or suite}",
    ]
    if version:
        lines.append(f"Version: {version}")
    lines += ["Date: Sat, 11 Jan 2025 10:56:37 UTC"]
    if valid_until:
        lines.append(f"Valid-Until: {valid_until}")
    lines += [f"Architectures: {architectures}", "Components: main", "SHA256:"]
    lines += [f" {sha256(data)} {len(data):>8} {path}" for path, data in sorted(files.items())]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ gpgv
_SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"
_SIGNATURE = "-----BEGIN PGP SIGNATURE-----\n"


def sign(text: str, *, by: str = "debian") -> bytes:
    """``text`` as an InRelease file; ``FakeGpgv`` accepts only what ``debian`` signed."""
    return f"{_SIGNED}{text}{_SIGNATURE}{by}\n-----END PGP SIGNATURE-----\n".encode()


@dataclass
class FakeGpgv:
    """``gpgv --keyring K --output OUT IN``: writes the signed text of IN to OUT when
    ``debian`` signed it, else fails as gpgv does. ``missing``: as if not on PATH."""

    missing: bool = False
    calls: list[list[str]] = field(default_factory=list)

    def __call__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        self.calls.append(list(args))
        if self.missing:
            raise CommandNotFound("`gpgv` was not found on PATH: install it or fix PATH")
        assert [args[0], args[1], args[3]] == ["gpgv", "--keyring", "--output"]
        signed = Path(args[-1]).read_text()
        body, _, signature = signed.removeprefix(_SIGNED).partition(_SIGNATURE)
        if not signed.startswith(_SIGNED) or signature.split("\n", 1)[0] != "debian":
            output = 'gpgv: BAD signature from "Debian Archive Automatic Signing Key"\n'
            raise CommandFailed(f"`{' '.join(args)}` failed", returncode=1, output=output)
        Path(args[4]).write_text(body)
        return "gpgv: Good signature\n"


# ------------------------------------------------------------------ mirrors
@dataclass
class FakeMirrors:
    """Every mirror's files by URL; ``down`` mirrors refuse connections, ``status`` answers
    a URL with that HTTP status; anything else is a 404."""

    files: dict[str, bytes] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    status: dict[str, int] = field(default_factory=dict)
    transport: FakeTransport = field(init=False)

    def __post_init__(self) -> None:
        self.transport = FakeTransport(self._handle)

    def _handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        url = str(request.url)
        if any(url.startswith(f"{m}/") for m in self.down):
            raise requests.ConnectionError(f"cannot reach {url}")
        if url in self.status:
            return self.status[url], {}, b""
        if url in self.files:
            return 200, {}, self.files[url]
        return 404, {}, b"not found"

    def serve(self, mirror: str, path: str, data: bytes) -> None:
        self.files[f"{mirror}/{path}"] = data

    def client(self, config: OsConfig = OS) -> Mirrors:
        return Mirrors(config, session_with(self.transport))

    def urls(self) -> list[str]:
        return [str(r.url) for r in self.transport.seen]


def publish(
    mirrors: FakeMirrors,
    mirror: str,
    suite: str,
    candidates: Sequence[Candidate],
    *,
    version: str = "",
    codename: str | None = None,
) -> bytes:
    """Serve ``suite`` on ``mirror``: its signed InRelease and its Packages.xz listing
    ``candidates``; the Packages.xz bytes."""
    packages = lzma.compress(packages_file(stanza(c) for c in candidates))
    text = release_text(suite, {PACKAGES_XZ: packages}, codename=codename, version=version)
    mirrors.serve(mirror, f"dists/{suite}/InRelease", sign(text))
    mirrors.serve(mirror, f"dists/{suite}/{PACKAGES_XZ}", packages)
    return packages


def bookworm_lock(path: Path, os: PackageSet, extras: Mapping[str, PackageSet]) -> OsLock:
    """An OS lock of bookworm 12.8 for Python 3.11 on amd64 holding ``os`` and ``extras``."""
    return OsLock(
        path=path,
        inputs="sha256:" + "ee" * 32,
        writer="1",
        suite="bookworm",
        release="12.8",
        architecture="amd64",
        python="3.11",
        os=os,
        extras=extras,
    )
