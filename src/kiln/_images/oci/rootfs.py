"""The base image's own Python, run on the build machine without Docker or root.

The ``.pyc`` files of an image must not depend on the machine kiln runs on, and
their bytes differ between patch releases of one Python (3.11.2 and 3.11.7 give
different bytes for a few of matplotlib's modules). So they are compiled by the
image's own interpreter: the base's layers are unpacked once into the layer cache
(``rootfs/<image ID>``, whiteouts applied, nothing outside the folder written) and
its ``python3`` is started through the base's own dynamic loader, with the base's
library folders only. No container, no privileges, and the same bytes as a
``python3`` started inside the image.

That interpreter also answers where the image installs distributions (the probe):
its sysconfig paths are under the unpacked folder, and are read back without it.

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
import platform
import posixpath
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol, cast

from kiln._errors import CommandFailed, ConfigError
from kiln._images.oci.cache import Blob, LayerCache
from kiln._util.paths import follow

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# e_machine of an ELF file -> what platform.machine() says on such a machine.
_MACHINES = {3: "i686", 40: "armv7l", 62: "x86_64", 183: "aarch64", 243: "riscv64", 21: "ppc64le"}
_HOST_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


class Interpreter(Protocol):
    """A Python that kiln runs with a script: kiln's own in tests, the base's in builds."""

    @property
    def identity(self) -> str:
        """What the interpreter's output depends on (part of a layer's cache key)."""
        ...

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Run ``script`` with ``args`` (and the variables ``env``, for a probe of the
        image's own settings); its stdout. CommandFailed when it fails."""
        ...


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """None of kiln's environment reaches the interpreter: a fixed hash seed (set
    constants are marshalled in iteration order), no bytecode of its own. ``extra``
    (the image's Env, for the probe) adds what does not change how Python starts."""
    kept = {
        k: v
        for k, v in (extra or {}).items()
        if k not in ("PATH", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")
        and not k.startswith("LD_")
    }
    return {
        **kept,
        "PATH": "/usr/bin:/bin",
        "LC_ALL": "C",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _run(
    argv: Sequence[str], what: str, stdin: str | None, env: Mapping[str, str] | None = None
) -> str:
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env=_clean_env(env),
            check=False,
        )
    except OSError as exc:
        raise CommandFailed(f"{what}: cannot start {argv[0]} ({exc})") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise CommandFailed(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


class HostPython:
    """kiln's own interpreter (unit tests: no base image to unpack)."""

    identity = f"host python {sys.version}"

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        return _run([sys.executable, "-S", "-s", "-c", script, *args], "python", stdin, env)


# -- unpacking the base ---------------------------------------------------------------


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
        real = os.path.realpath(parent)
        if real == self._top or real.startswith(self._top + os.sep):
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


def _apply_layer(root: Path, layer: IO[bytes]) -> None:
    """Extract one layer tar over ``root`` the way an engine does (whiteouts included),
    but for what kiln's runs of the base's python3 never read (``needed``)."""
    parents = _Parents(root)
    with tarfile.open(fileobj=layer, mode="r|") as tar:
        for member in tar:
            if not needed(member.name):
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


# -- running the base's interpreter ---------------------------------------------------


def resolve(root: Path, image_path: str) -> Path | None:
    """The file at ``image_path`` inside ``root``, symlinks followed the way they are
    inside the image (an absolute target starts again at ``root``); None if missing."""

    def look(here: str) -> tuple[bool, str | None]:
        path = root / here
        if path.is_symlink():
            return True, str(path.readlink())
        return path.exists(), None

    found = follow(image_path, look)
    return None if found is None else root / found


def elf_interpreter(path: Path) -> tuple[str, str | None]:
    """(the machine an ELF executable is for, its PT_INTERP path or None if static)."""
    with path.open("rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF":
            raise ValueError(f"{path} is not an ELF executable")
        if head[4] != 2:
            raise ValueError(f"{path} is a 32-bit ELF executable")
        order = "<" if head[5] == 1 else ">"
        (machine,) = struct.unpack_from(order + "H", head, 18)
        (phoff,) = struct.unpack_from(order + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
        arch = _MACHINES.get(machine, f"ELF machine {machine}")
        for i in range(phnum):
            fh.seek(phoff + i * phentsize)
            entry = fh.read(phentsize)
            (p_type,) = struct.unpack_from(order + "I", entry, 0)
            if p_type == 3:  # PT_INTERP
                (offset,) = struct.unpack_from(order + "Q", entry, 8)
                (size,) = struct.unpack_from(order + "Q", entry, 32)
                fh.seek(offset)
                return arch, fh.read(size).rstrip(b"\0").decode()
    return arch, None


def library_dirs(root: Path) -> list[str]:
    """The folders the image's loader searches (its ld.so.conf, then the defaults), as
    image paths, in order."""
    found: list[str] = []

    def read(conf: Path, depth: int) -> Iterator[str]:
        try:
            lines = conf.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
        for raw in lines:
            line = raw.split("#", 1)[0].strip()
            if line.startswith("include") and depth < 8:
                pattern = line.split(None, 1)[1] if " " in line else ""
                for match in sorted(root.glob(pattern.lstrip("/"))):
                    yield from read(match, depth + 1)
            elif line.startswith("/"):
                yield line

    for d in [*read(root / "etc/ld.so.conf", 0), "/lib", "/usr/lib", "/lib64", "/usr/lib64"]:
        if d not in found:
            found.append(d)
    return found


def host_machine() -> str:
    machine = platform.machine().lower()
    return _HOST_ALIASES.get(machine, machine)


def find_python(root: Path, env: Mapping[str, str]) -> str:
    """The image path of the ``python3`` its PATH finds (what ``pip`` would run)."""
    for folder in env.get("PATH", DEFAULT_PATH).split(":"):
        if folder.startswith("/"):
            candidate = posixpath.join(folder, "python3")
            found = resolve(root, candidate)
            if found is not None and found.is_file():
                return candidate
    raise ConfigError(
        "no python3 on the base image's PATH; kiln installs into the base's own Python: use "
        "a base with python3 (e.g. python:3.11-slim)"
    )


def loader_argv(root: Path, image_python: str, what: str) -> list[str]:
    """The command that starts the image's ``image_python`` from ``root`` on this machine."""
    program = resolve(root, image_python)
    if program is None:
        raise ConfigError(f"{what}: {image_python} is not in the base image")
    try:
        arch, interp = elf_interpreter(program)
    except (OSError, ValueError, struct.error) as exc:
        raise ConfigError(f"{what}: cannot read {image_python} of the base image ({exc})") from None
    if arch != host_machine():
        raise ConfigError(
            f"{what}: the base's Python is built for {arch} and this machine is "
            f"{host_machine()}; kiln compiles the image's bytecode with the base's own "
            f"interpreter, so build {arch} images on an {arch} machine (e.g. a CI runner of "
            "that architecture)"
        )
    # Start it by the path the image would (the same sys.executable and prefix search),
    # unless a symlink on the way leads out of the unpacked folder.
    unresolved = root / image_python.lstrip("/")
    top = os.path.realpath(root)
    started = unresolved if os.path.realpath(unresolved).startswith(top + os.sep) else program
    if interp is None:
        return [str(started)]
    loader = resolve(root, interp)
    if loader is None:
        raise ConfigError(f"{what}: the base image lacks its own loader {interp}")
    dirs = list(dict.fromkeys(str(p) for d in library_dirs(root) if (p := resolve(root, d))))
    argv = [str(loader)]
    if "musl" not in posixpath.basename(interp):
        argv.append("--inhibit-cache")  # never the build machine's /etc/ld.so.cache
    return [*argv, "--library-path", ":".join(dirs), str(started)]


class BasePython:
    """The base image's ``python3``, run from its unpacked filesystem (see module doc)."""

    def __init__(
        self, image_id: str, layers: Sequence[Blob], env: Mapping[str, str], cache: LayerCache
    ) -> None:
        self.identity = f"base python {image_id}"
        self._image_id = image_id
        self._layers = tuple(layers)
        self._env = dict(env)
        self._cache = cache
        self._argv: list[str] | None = None
        self._root: Path | None = None
        self.image_python = ""

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = unpack(self._image_id, self._layers, self._cache)
        return self._root

    def _start(self) -> list[str]:
        if self._argv is None:
            what = f"base image {self._image_id}"
            self.image_python = find_python(self.root, self._env)
            self._argv = loader_argv(self.root, self.image_python, what)
        return self._argv

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        argv = [*self._start(), "-S", "-s", "-c", script, *args]
        return _run(argv, f"the base's {self.image_python or 'python3'}", stdin, env)

    def image_path(self, path: str) -> str:
        """A path the interpreter printed, as a path in the image."""
        top = os.path.realpath(self.root)
        for prefix in (str(self.root), top):
            if path == prefix or path.startswith(prefix + os.sep):
                return "/" + path[len(prefix) :].lstrip("/")
        raise ConfigError(
            f"base image {self._image_id}: its python3 reported {path}, outside its own "
            "filesystem; use a base whose Python is installed the usual way"
        )


class FolderPython:
    """The ``python3`` of a filesystem written out in ``root`` (an OS layer being built,
    before it is a blob): run as ``BasePython`` runs the base's."""

    def __init__(self, root: Path, image_python: str, identity: str) -> None:
        self.identity = identity
        self.image_python = image_python
        self._argv = loader_argv(root, image_python, identity)

    def run(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        return _run([*self._argv, "-S", "-s", "-c", script, *args], self.image_python, stdin, env)
