"""The OS layer: the locked packages' files, and what their maintainer scripts would have made.

kiln runs no maintainer script. What they would have written, kiln writes from the
code below, each file explained where it is made:

- merged /usr: ``/bin``, ``/sbin``, ``/lib``, ``/lib64`` are links into ``/usr``;
- ``/etc/passwd`` and ``/etc/group``: root, and nonroot (65532) as distroless has it;
  ``/etc/nsswitch.conf``; ``/tmp`` and ``/var/tmp`` with mode 1777; home folders;
- the CA bundle ``/etc/ssl/certs/ca-certificates.crt`` (update-ca-certificates) and
  the links Python's ``ssl`` reads (``/usr/lib/ssl/cert.pem``, ``/usr/lib/ssl/certs``);
- ``/etc/localtime`` and ``/etc/timezone`` (UTC, tzdata's debconf default);
- ``/var/lib/dpkg/status.d/<package>`` and its md5sums, so CVE scanners (Trivy,
  Syft, Grype) see every OS package, as in distroless images;
- ``/etc/ld.so.cache`` (ldconfig), so ``ctypes.util.find_library`` works;
- ``/usr/lib/os-release``, ``/etc/debian_version`` (base-files);
- ``/usr/bin/python3`` and ``/usr/bin/python`` (python3-minimal), and the folder
  ``/usr/local/lib/python3.X/dist-packages`` that pip-installed packages go to;
- the standard library's bytecode (py3compile), compiled by the image's own Python.

Then the tree is written as one deterministic tar: entries sorted by path, one
fixed mtime, no owner names, PAX. ``WRITER`` names these rules: a change to any of
them changes the layer's bytes, so it changes ``WRITER`` too (and locks made with
another writer are stale).
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from kiln._debian.deb import Deb
from kiln._debian.ldcache import ld_so_cache
from kiln._debian.tree import DIR, FILE, MERGED, SYMLINK, Entry, parents, resolve
from kiln._errors import ConfigError
from kiln._util.epoch import MTIME

WRITER = "1"
NONROOT = 65532

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnogroup:x:65534:\nnonroot:x:{NONROOT}:\n"
NSSWITCH = (
    "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
    "protocols: files\nservices: files\nethers: files\nrpc: files\n"
)
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
_CERTS = "usr/share/ca-certificates/"


@dataclass(frozen=True)
class Release:
    """What the image says it is: Debian ``suite`` at point release ``version``."""

    suite: str
    version: str  # "12.8"; "" when unknown


def _conflict(path: str, first: Entry, second: Entry) -> ConfigError:
    return ConfigError(
        f"/{path}: {first.owner or 'kiln'} and {second.owner or 'kiln'} both ship it, with "
        "different content; a path must belong to one package: drop one of them from "
        "[tool.kiln.os] packages (or the image's os-packages)"
    )


class TreeBuilder:
    """Entries gathered path by path; a path shipped twice must be shipped the same."""

    def __init__(self, below: Mapping[str, Entry] | None = None) -> None:
        self.entries: dict[str, Entry] = {}
        self._below = below or {}  # the layers underneath (an extras layer's OS layer)

    def _parents(self, entry: Entry) -> None:
        """The folders above ``entry``, made where missing; one that is a file or a link
        in the layer (or below it) is a conflict: the path would land elsewhere."""
        for folder in parents(entry.path):
            there = self.entries.get(folder) or self._below.get(folder)
            if there is None:
                self.entries[folder] = Entry(folder, DIR, 0o755, owner=entry.owner)
            elif there.kind != DIR:
                raise ConfigError(
                    f"/{entry.path}: {entry.owner or 'kiln'} ships it under /{folder}, which "
                    f"{there.owner or 'kiln'} ships as a {there.kind}; a path must belong to "
                    "one package: drop one of them from [tool.kiln.os] packages (or the "
                    "image's os-packages)"
                )

    def add(self, entry: Entry) -> None:
        self._parents(entry)
        there = self.entries.get(entry.path) or self._below.get(entry.path)
        if there is None:
            self.entries[entry.path] = entry
        elif there.kind == DIR and entry.kind == DIR:
            return  # folders are shared; the first package's mode stays
        elif not there.same_content(entry):
            raise _conflict(entry.path, there, entry)

    def replace(self, entry: Entry) -> None:
        """kiln's own version of a path (one a maintainer script would rewrite)."""
        self._parents(entry)
        self.entries[entry.path] = entry

    def merged(self) -> dict[str, Entry]:
        return {**self._below, **self.entries}


def _file(path: str, text: str | bytes, mode: int = 0o644) -> Entry:
    data = text.encode() if isinstance(text, str) else text
    return Entry(path, FILE, mode, data=data)


def _link(path: str, target: str) -> Entry:
    return Entry(path, SYMLINK, 0o777, target=target)


def _status(deb: Deb) -> bytes:
    """The package's control paragraph as dpkg's status database holds it."""
    lines = deb.control.decode("utf-8", errors="replace").rstrip("\n").split("\n")
    out = []
    for line in lines:
        out.append(line)
        if line.startswith("Package:"):
            out.append("Status: install ok installed")
    return ("\n".join(out) + "\n").encode()


def _ca_bundle(tree: Mapping[str, Entry]) -> bytes:
    """Every certificate ca-certificates ships, concatenated in path order (what
    update-ca-certificates makes with every certificate enabled, its default)."""
    parts = []
    for path in sorted(p for p in tree if p.startswith(_CERTS) and p.endswith(".crt")):
        entry = tree[path]
        if entry.kind == FILE:
            parts.append(entry.data if entry.data.endswith(b"\n") else entry.data + b"\n")
    return b"".join(parts)


def _os_release(release: Release) -> str:
    major = release.version.split(".", 1)[0] if release.version else ""
    version = f"{major} ({release.suite})" if major else release.suite
    return (
        f'PRETTY_NAME="Debian GNU/Linux {version}"\n'
        'NAME="Debian GNU/Linux"\n'
        + (f'VERSION_ID="{major}"\n' if major else "")
        + f'VERSION="{version}"\n'
        f"VERSION_CODENAME={release.suite}\n"
        "ID=debian\n"
        'HOME_URL="https://www.debian.org/"\n'
        'SUPPORT_URL="https://www.debian.org/support"\n'
        'BUG_REPORT_URL="https://bugs.debian.org/"\n'
    )


def _python_version(tree: Mapping[str, Entry]) -> str:
    found = sorted(
        m.group(1)
        for p in tree
        if (m := re.fullmatch(r"usr/bin/python(3\.\d+)", p)) and tree[p].kind == FILE
    )
    if len(found) != 1:
        raise ConfigError(
            "[tool.kiln.os] packages must install one Python (python3.X-minimal); the "
            f"packages ship {', '.join('python' + v for v in found) or 'none'}"
        )
    return found[0]


def add_packages(builder: TreeBuilder, debs: Sequence[Deb]) -> None:
    """Every package's files, and its status.d entry (in package name order)."""
    for deb in sorted(debs, key=lambda d: d.name):
        for entry in deb.entries:
            builder.add(entry)
        builder.add(_file(f"var/lib/dpkg/status.d/{deb.name}", _status(deb)))
        if deb.md5sums:
            builder.add(_file(f"var/lib/dpkg/status.d/{deb.name}.md5sums", deb.md5sums))


def add_system(builder: TreeBuilder, release: Release) -> str:
    """What maintainer scripts and base-files would have made; the Python version."""
    tree = builder.entries
    for name in MERGED:
        if f"usr/{name}" in tree or name in ("bin", "sbin", "lib"):
            builder.add(Entry(f"usr/{name}", DIR, 0o755))
            builder.replace(_link(name, f"usr/{name}"))
    for path, mode, owner in (
        ("tmp", 0o1777, 0),
        ("var/tmp", 0o1777, 0),
        ("root", 0o700, 0),
        ("home", 0o755, 0),
        ("home/nonroot", 0o700, NONROOT),
        ("usr/local/bin", 0o755, 0),
        ("usr/local/sbin", 0o755, 0),
        ("etc/ssl/certs", 0o755, 0),
        ("var/lib/dpkg/status.d", 0o755, 0),
    ):
        builder.replace(Entry(path, DIR, mode, uid=owner, gid=owner))
    builder.replace(_file("etc/passwd", PASSWD))
    builder.replace(_file("etc/group", GROUP))
    builder.replace(_file("etc/nsswitch.conf", NSSWITCH))
    if any(p.startswith(_CERTS) for p in tree):
        builder.replace(_file(CA_BUNDLE, _ca_bundle(tree)))
        builder.replace(_link("usr/lib/ssl/cert.pem", f"/{CA_BUNDLE}"))
        builder.replace(_link("usr/lib/ssl/certs", "/etc/ssl/certs"))
    if "usr/share/zoneinfo/Etc/UTC" in tree:
        builder.replace(_link("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"))
        builder.replace(_file("etc/timezone", "Etc/UTC\n"))
    builder.replace(_file("usr/lib/os-release", _os_release(release)))
    builder.replace(_link("etc/os-release", "../usr/lib/os-release"))
    if release.version:
        builder.replace(_file("etc/debian_version", f"{release.version}\n"))
    python = _python_version(tree)
    for name in ("python3", "python"):
        if f"usr/bin/{name}" not in tree:
            builder.replace(_link(f"usr/bin/{name}", f"python{python}"))
    builder.replace(Entry(f"usr/local/lib/python{python}/dist-packages", DIR, 0o755))
    return python


def add_ld_cache(builder: TreeBuilder) -> None:
    """``/etc/ld.so.cache`` for every library of the layers so far (this one included)."""
    merged = builder.merged()
    if resolve(merged, "etc/ld.so.conf") is None and not any(
        p.startswith("usr/lib/") for p in merged
    ):
        return
    builder.replace(_file("etc/ld.so.cache", ld_so_cache(merged)))


def add_bytecode(
    builder: TreeBuilder,
    python: str,
    compile_tree: Callable[[Mapping[str, Entry], Sequence[str]], Mapping[str, bytes]],
) -> None:
    """The standard library's ``.pyc`` files, as py3compile makes them on installation
    (but checked-hash: valid without timestamps, in a read-only container too), compiled
    by ``compile_tree(tree, sources)`` -> image path of each .pyc -> its bytes."""
    prefix = f"usr/lib/python{python}/"
    tree = builder.entries
    sources = sorted(
        p
        for p, e in tree.items()
        if p.startswith(prefix) and p.endswith(".py") and e.kind == FILE
        and "/site-packages/" not in p and "/dist-packages/" not in p
    )  # fmt: skip
    for path, data in sorted(compile_tree(builder.merged(), sources).items()):
        builder.add(Entry(path, FILE, 0o644, data=data, owner=tree[_source_of(path)].owner))


def _source_of(pyc: str) -> str:
    """``a/__pycache__/b.cpython-311.pyc`` -> ``a/b.py`` (``b`` may hold dots)."""
    folder, name = pyc.rsplit("/__pycache__/", 1)
    return f"{folder}/{name.rsplit('.', 2)[0]}.py"


def _info(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = MTIME
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mode = entry.mode
    if entry.kind == DIR:
        info.type = tarfile.DIRTYPE
    elif entry.kind == SYMLINK:
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.size = len(entry.data)
    return info


def write_tree(entries: Iterable[Entry], out: BinaryIO) -> None:
    """``entries`` as a deterministic tar: sorted by path, a folder before what it holds."""
    ordered = sorted(entries, key=lambda e: e.path.split("/"))
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in ordered:
            info = _info(entry)
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == FILE else None)
