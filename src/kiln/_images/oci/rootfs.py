"""A base image's filesystem, unpacked on the build machine for its own ``python3``.

The base's layers are unpacked once into the layer cache (``rootfs/<image ID>``,
whiteouts applied, nothing outside the folder written), for ``kiln._images.oci.interpreter``
to run the base's ``python3`` from.

Only what that interpreter can read is unpacked: it runs kiln's own scripts (the probe
and the compiler: standard library only) with ``-S -s`` (no site folders on
``sys.path``) and ``LC_ALL=C`` (no translations), so the base's site-packages,
manuals, translations, time zones and package manager state are left out (a third to
half of a Debian base's files, each a file to create). None of that can change a
``.pyc``: a module it needed would be missing, and the run would fail, not differ.
"""

from __future__ import annotations

import functools
import gzip
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, cast

from kiln._errors import CommandFailed, ConfigError
from kiln._images.oci.cache import Blob, LayerCache
from kiln._util.paths import stays_inside

# Folders (image paths, no leading slash) whose files kiln's runs of the base's python3
# never read (see the module doc): not unpacked.
_NOT_READ = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/i18n/",
    "usr/share/zoneinfo/",
    "usr/share/lintian/",
    "usr/share/common-licenses/",
    "var/cache/",
    "var/log/",
    "var/lib/dpkg/",
    "var/lib/apt/",
)
_SITE_FOLDERS = frozenset({"site-packages", "dist-packages"})  # only ``site`` adds them


def needed(name: str) -> bool:
    """Whether the tar entry ``name`` can be read by the base's python3 as kiln runs it."""
    norm = posixpath.normpath("/" + name).lstrip("/")
    if (norm + "/").startswith(_NOT_READ):
        return False
    return _SITE_FOLDERS.isdisjoint(norm.split("/"))


def _inside(root: Path, name: str) -> Path | None:
    """``root``/``name`` for a tar member name; None if it would leave ``root``."""
    norm = posixpath.normpath("/" + name.lstrip("/"))
    if norm == "/":
        return None
    return root / norm.lstrip("/")


class _Parents:
    """Whether writing a path stays inside ``root`` (no symlinked parent leads out). The
    folders found safe are remembered until something replaces one of them (only a
    removal or a new link can turn a real folder into a way out)."""

    def __init__(self, root: Path) -> None:
        self._top = os.path.realpath(root)
        self._safe: set[Path] = set()

    def safe(self, target: Path) -> bool:
        parent = target.parent
        if parent in self._safe:
            return True
        if stays_inside(parent, self._top):
            self._safe.add(parent)
            return True
        return False

    def changed(self, path: Path) -> None:
        """``path`` is removed or replaced: forget what was found below it."""
        if path in self._safe or any(p.is_relative_to(path) for p in self._safe):
            self._safe.clear()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _layer_stream(blob: Blob) -> IO[bytes]:
    if blob.media_type.endswith(("+gzip", ".gzip")):
        return cast(IO[bytes], gzip.open(blob.path, "rb"))
    if blob.media_type.endswith("tar"):
        return blob.path.open("rb")
    raise ConfigError(
        f"a base layer is {blob.media_type} ({blob.digest}); kiln reads gzip and plain tar "
        "layers: use a base whose layers are gzip-compressed"
    )


def _whiteout(target: Path, parents: _Parents) -> bool:
    """Apply ``target`` if it is a whiteout entry; whether it was one."""
    if target.name == ".wh..wh..opq":  # opaque folder: the lower layers' content is hidden
        if target.parent.is_dir() and not target.parent.is_symlink():
            for child in target.parent.iterdir():
                parents.changed(child)
                _remove(child)
        return True
    if target.name.startswith(".wh."):
        parents.changed(target.parent / target.name[4:])
        _remove(target.parent / target.name[4:])
        return True
    return False


def _write(
    root: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, parents: _Parents
) -> None:
    """One non-folder entry (devices and fifos are skipped: not needed to run Python)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        parents.changed(target)
        _remove(target)
    if member.issym():
        target.symlink_to(member.linkname)
    elif member.islnk():
        source = _inside(root, member.linkname)
        if source is not None and source.is_file() and not source.is_symlink():
            try:
                target.hardlink_to(source)
            except OSError:
                shutil.copy2(source, target)
    elif member.isfile():
        data = tar.extractfile(member)
        if data is not None:
            with target.open("wb") as out:
                shutil.copyfileobj(data, out, 1 << 20)
            target.chmod((member.mode & 0o777) | 0o600)


def _everything(_name: str) -> bool:
    return True


def _apply_layer(root: Path, layer: IO[bytes], keep: Callable[[str], bool] = needed) -> None:
    """Extract one layer tar over ``root`` the way an engine does (whiteouts included),
    but for the entries ``keep`` refuses (by default what kiln's runs of the base's
    python3 never read: ``needed``)."""
    parents = _Parents(root)
    with tarfile.open(fileobj=layer, mode="r|") as tar:
        for member in tar:
            if not keep(member.name):
                continue
            target = _inside(root, member.name)
            if target is None or not parents.safe(target) or _whiteout(target, parents):
                continue
            if member.isdir():
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    parents.changed(target)
                    _remove(target)
                target.mkdir(parents=True, exist_ok=True)
                target.chmod((member.mode & 0o777) | 0o700)
            else:
                _write(root, tar, member, target, parents)


def unpack_whole(layers: Sequence[Blob], root: Path) -> None:
    """Every entry of ``layers`` (in order, whiteouts applied; devices and fifos left out)
    extracted over ``root``: an image's whole filesystem, for the smoke check of a platform
    this machine does not run (``kiln._images.oci.smoke_foreign``). OSError or TarError
    when a layer cannot be read or written."""
    for blob in layers:
        with _layer_stream(blob) as stream:
            _apply_layer(root, stream, keep=_everything)


def rootfs_path(image_id: str, cache: LayerCache) -> Path:
    """Where the base ``image_id`` is (or will be) unpacked."""
    return cache.root / "rootfs" / image_id.partition(":")[2]


def unpack(image_id: str, layers: Sequence[Blob], cache: LayerCache) -> Path:
    """The base's filesystem under the layer cache, unpacked once per image ID."""
    return unpack_from(image_id, [functools.partial(_layer_stream, b) for b in layers], cache)


def unpack_from(
    image_id: str, layers: Sequence[Callable[[], IO[bytes]]], cache: LayerCache
) -> Path:
    """``unpack``, the layers' tars opened by ``layers`` (in order): the base's layers
    as ``docker save`` gave them, uncompressed, when they were just read."""
    done = rootfs_path(image_id, cache)
    folder = done.parent
    if done.is_dir():
        return done
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
    try:
        for opener in layers:
            with opener() as stream:
                _apply_layer(tmp, stream)
        try:
            tmp.rename(done)
        except OSError:
            if not done.is_dir():  # another kiln unpacked it meanwhile: keep theirs
                raise
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise CommandFailed(
            f"cannot unpack base image {image_id} into {folder} ({exc}); free disk space or "
            "remove the folder, then run again"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return done
