"""A ``.deb`` as kiln reads it: its control file, its md5sums, and its files as entries.

Nothing in it runs: maintainer scripts (``preinst``, ``postinst``) are not read at
all. ``data.tar``'s members become ``tree.Entry`` values with merged-/usr paths
(``/bin/sh`` -> ``/usr/bin/sh``) and their own modes and owners; hard links become
files with their target's content. Documentation, manuals and translations are left
out (as Debian's own minimal images do), but for each package's ``copyright``.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import lzma
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from kiln._debian.tree import DIR, FILE, SYMLINK, Entry, normalize, usr_merged
from kiln._errors import ArtifactAltered

# Image paths (after merging /usr) that are not written into the layer.
DROPPED = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/lintian/",
    "usr/share/linda/",
)


def dropped(path: str) -> bool:
    """Whether ``path`` is left out of the layer: documentation, manuals, translations,
    but a package's licence (``usr/share/doc/<package>/copyright``) stays."""
    if not path.startswith(DROPPED):
        return False
    parts = path.split("/")
    return not (path.startswith("usr/share/doc/") and len(parts) == 5 and parts[4] == "copyright")


@dataclass(frozen=True)
class Deb:
    name: str
    control: bytes  # the control file, as the package ships it
    md5sums: bytes  # its md5sums file ("" when it has none)
    entries: tuple[Entry, ...]


def _entry(member: tarfile.TarInfo, path: str, owner: str, data: bytes = b"") -> Entry:
    mode = member.mode & 0o7777
    if member.isdir():
        return Entry(path, DIR, mode, uid=member.uid, gid=member.gid, owner=owner)
    if member.issym():
        return Entry(
            path, SYMLINK, 0o777, target=member.linkname, uid=member.uid, gid=member.gid,
            owner=owner,
        )  # fmt: skip
    return Entry(path, FILE, mode, data=data, uid=member.uid, gid=member.gid, owner=owner)


# data.tar's compressions decompressed whole, in one call that leaves the GIL (so the
# .debs of an OS layer are read by threads at once); python-debian streams the others.
_WHOLE: dict[str, Callable[[bytes], bytes]] = {
    ".xz": lzma.decompress,
    ".gz": gzip.decompress,
    "": bytes,
}


def _data_tar(data: bytes) -> tarfile.TarFile | None:
    """``data.tar`` of the .deb ``data``, decompressed whole in memory (None: another
    compression, which python-debian reads)."""
    from debian import arfile  # noqa: PLC0415 - python-debian: only to read an index or a .deb

    ar = arfile.ArFile(fileobj=io.BytesIO(data))
    for member in ar.getmembers():
        name = member.name
        if name.startswith("data.tar"):
            decompress = _WHOLE.get(name.removeprefix("data.tar"))
            if decompress is None:
                return None
            whole = decompress(member.read())
            return tarfile.open(fileobj=io.BytesIO(whole), mode="r:")
    return None


def read_deb(data: bytes, *, name: str, where: str) -> Deb:
    """The package ``name`` in ``data`` (a ``.deb``'s bytes, already checked against its
    sha256); ``where`` names it in errors."""
    from debian import arfile, debfile  # noqa: PLC0415 - (see _data_tar)

    try:
        deb = debfile.DebFile(fileobj=io.BytesIO(data))
        control = deb.control.get_content("control") or b""
        md5sums = deb.control.get_content("md5sums") if deb.control.has_file("md5sums") else None
        tar = _data_tar(data) or deb.data.tgz()
    except (
        debfile.DebError,
        arfile.ArError,
        tarfile.TarError,
        lzma.LZMAError,
        EOFError,
        OSError,
        ValueError,
    ) as exc:
        raise ArtifactAltered(
            f"{where}: not a readable .deb ({type(exc).__name__}: {exc}), though its sha256 "
            "is the lock's; report it, and remove it from kiln's cache (.kiln/cache/debian)"
        ) from None
    entries: list[Entry] = []
    files: dict[str, Entry] = {}
    for member in tar:  # in archive order: each file read as it comes, no seeking back
        path = usr_merged(normalize(member.name))
        if not path or dropped(path):
            continue
        if member.islnk():
            source = files.get(usr_merged(normalize(member.linkname)))
            if source is None:
                raise ArtifactAltered(f"{where}: {path} is a hard link to a file it lacks")
            entries.append(dataclasses.replace(source, path=path))
            continue
        if not (member.isdir() or member.issym() or member.isfile()):
            continue  # devices and fifos: not in any package kiln locks
        content = b""
        if member.isfile():
            extracted = tar.extractfile(member)
            content = extracted.read() if extracted is not None else b""
        entry = _entry(member, path, name, content)
        entries.append(entry)
        if entry.kind == FILE:
            files[path] = entry
    return Deb(name, control if isinstance(control, bytes) else control.encode(), md5sums or b"",
               tuple(entries))  # fmt: skip
