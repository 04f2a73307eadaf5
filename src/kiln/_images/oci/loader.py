"""How an image's ``python3`` is started from its files on this machine: through the
image's own dynamic loader, with the image's library folders only (never the build
machine's ``/etc/ld.so.cache``), its symlinks followed the way they are inside the image.
"""

from __future__ import annotations

import os
import platform
import posixpath
from collections.abc import Iterator, Mapping
from pathlib import Path

from kiln._debian.elf import program_interpreter
from kiln._errors import ConfigError
from kiln._util.paths import follow, stays_inside

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# e_machine of an ELF file -> what platform.machine() says on such a machine.
_MACHINES = {3: "i686", 40: "armv7l", 62: "x86_64", 183: "aarch64", 243: "riscv64", 21: "ppc64le"}
_HOST_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


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
    """(the machine a 64-bit ELF executable is for, its PT_INTERP path or None if static)."""
    data = path.read_bytes()
    if data[:4] == b"\x7fELF" and data[4:5] == b"\x01":
        raise ValueError(f"{path} is a 32-bit ELF executable")
    try:
        machine, interp = program_interpreter(data)
    except ValueError:
        raise ValueError(f"{path} is not an ELF executable") from None
    return _MACHINES.get(machine, f"ELF machine {machine}"), interp


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


def find_program(root: Path, name: str, env: Mapping[str, str]) -> str | None:
    """The image path of the program ``name`` (an absolute image path, or a name looked
    up on ``env``'s PATH, the default one without) as the image would find it; None when
    there is no such file."""
    if "/" in name:
        candidates = [name] if name.startswith("/") else []
    else:
        folders = env.get("PATH", DEFAULT_PATH).split(":")
        candidates = [posixpath.join(f, name) for f in folders if f.startswith("/")]
    for candidate in candidates:
        found = resolve(root, candidate)
        if found is not None and found.is_file():
            return candidate
    return None


def started(root: Path, image_path: str, program: Path) -> Path:
    """Where on this machine to start the image's ``image_path`` (``program``: it resolved
    in ``root``): by the path the image would (the same ``sys.executable`` and prefix
    search), unless a symlink on the way leads out of ``root``."""
    unresolved = root / image_path.lstrip("/")
    return unresolved if stays_inside(unresolved, os.path.realpath(root)) else program


def find_python(root: Path, env: Mapping[str, str]) -> str:
    """The image path of the ``python3`` its PATH finds (what ``pip`` would run)."""
    found = find_program(root, "python3", env)
    if found is not None:
        return found
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
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what}: cannot read {image_python} of the base image ({exc})") from None
    if arch != host_machine():
        raise ConfigError(
            f"{what}: the base's Python is built for {arch} and this machine is "
            f"{host_machine()}; kiln compiles the image's bytecode with the base's own "
            f"interpreter, so build {arch} images on an {arch} machine (e.g. a CI runner of "
            "that architecture)"
        )
    start = started(root, image_python, program)
    if interp is None:
        return [str(start)]
    loader = resolve(root, interp)
    if loader is None:
        raise ConfigError(f"{what}: the base image lacks its own loader {interp}")
    dirs = list(dict.fromkeys(str(p) for d in library_dirs(root) if (p := resolve(root, d))))
    argv = [str(loader)]
    if "musl" not in posixpath.basename(interp):
        argv.append("--inhibit-cache")  # never the build machine's /etc/ld.so.cache
    return [*argv, "--library-path", ":".join(dirs), str(start)]
