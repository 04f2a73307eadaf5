"""The smoke check of an image for a platform this machine does not run (linux/arm64 on
an amd64 machine), with no binfmt handler and no engine: ``runner_for`` gives a
``ContainerRunner`` that ``smoke.smoke_check`` takes unchanged.

With Debian's ``qemu-user-static`` installed, ``QemuContainers`` unpacks the image's
layers (whiteouts applied) into a private temporary folder, removed afterwards, and runs
the command's program from it under ``qemu-<arch>-static -L <rootfs>``: the image's own
``python3`` imports the modules, with the image's Env, in its working folder, with no
network.

Without it, ``StaticContainers`` runs nothing and answers the smoke script from the
image's files: each module is a package or module file on the image Python's path,
every ELF file under its site folders is built for the platform's machine, and each
one's DT_NEEDED libraries are found where the image's loader would look (DT_RPATH,
LD_LIBRARY_PATH, DT_RUNPATH with ``$ORIGIN``, auditwheel's ``<pkg>.libs``, the
ld.so.conf folders, ``/lib/<triplet>``, ``/usr/lib/<triplet>``); the installed
distributions' requirements are read from their metadata, for ``smoke_check`` to judge
as it judges a real run. It cannot see a module that fails at import (a Python error, a
missing symbol): ``runner_for`` says so, and how to get the real check.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shlex
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from kiln._debian.elf import AARCH64, EM_AARCH64, EM_X86_64, X86_64, Arch, Linking, linking
from kiln._errors import CommandFailed, ConfigError
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.index import Platform
from kiln._images.oci.loader import find_program, library_dirs, resolve, started
from kiln._images.oci.rootfs import unpack_whole
from kiln._images.oci.smoke import ContainerRunner, Run
from kiln._util.cmd import capture
from kiln._util.scratch import scratch_folder

INSTALL_QEMU = "sudo apt-get install qemu-user-static"


@dataclass(frozen=True)
class Machine:
    """What one OCI architecture is to qemu-user, to ELF and to ``platform.machine()``."""

    qemu: str
    e_machine: int
    name: str
    arch: Arch


MACHINES = {
    "arm64": Machine("qemu-aarch64-static", EM_AARCH64, "aarch64", AARCH64),
    "amd64": Machine("qemu-x86_64-static", EM_X86_64, "x86_64", X86_64),
}


def machine_of(platform: Platform | str) -> Machine:
    parsed = platform if isinstance(platform, Platform) else Platform.parse(platform)
    found = MACHINES.get(parsed.architecture) if parsed.os == "linux" else None
    if found is None:
        raise ConfigError(
            f"platform {platform!r}: kiln smoke-checks linux/amd64 and linux/arm64 images only"
        )
    return found


def image_env(image: BuiltImage) -> dict[str, str]:
    """The image config's Env (and HOME=/root unless it sets one, as Docker does)."""
    settings = json.loads(image.config).get("config") or {}
    env = dict(item.partition("=")[::2] for item in settings.get("Env") or [])
    return {"HOME": "/root", **env}


_PREFIX = "kiln-smoke-"


@contextlib.contextmanager
def unpacked(image: BuiltImage, what: str, tmp: Path | None = None) -> Iterator[Path]:
    """The image's whole filesystem in a private folder (under ``tmp``, None: in memory
    when there is room, ``scratch_folder``, else the system's temporary folder) for the
    time of the block; removed afterwards, also on error."""
    if tmp is None:  # its files take about 4x the compressed layers
        tmp = scratch_folder(4 * sum(blob.size for blob in image.layers), _PREFIX)
    root = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=tmp))
    try:
        try:
            unpack_whole(image.layers, root)
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise CommandFailed(
                f"smoke check of {what}: cannot unpack its layers into {root} ({exc}); free "
                "disk space in the temporary folder (TMPDIR), then release again"
            ) from None
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


class QemuContainers:
    """A ContainerRunner for ``image`` (built for ``platform``): its command run from the
    unpacked image under ``qemu`` (the path of ``qemu-<arch>-static``), the rootfs as the
    ELF prefix (``-L``), with the image's Env and working folder."""

    def __init__(
        self, image: BuiltImage, platform: str, qemu: str, *, tmp: Path | None = None
    ) -> None:
        self._image = image
        self._platform = platform
        self._qemu = qemu
        self._tmp = tmp

    def __call__(self, image: str, command: Sequence[str]) -> Run:
        env = image_env(self._image)
        workdir = (json.loads(self._image.config).get("config") or {}).get("WorkingDir") or "/"
        with unpacked(self._image, image, self._tmp) as root:
            program = find_program(root, command[0], env)
            found = None if program is None else resolve(root, program)
            if program is None or found is None:
                where = env.get("PATH", "the default PATH")
                return Run(127, f"{command[0]}: not found in {image} (PATH={where})")
            argv = [self._qemu, "-L", str(root), str(started(root, program, found)), *command[1:]]
            cwd = resolve(root, workdir)
            what = f"{shlex.join(command[:1])} of {image} ({self._platform}) under {self._qemu}"
            try:
                out = capture(argv, what=what, env=env, cwd=cwd if cwd and cwd.is_dir() else root)
            except CommandFailed as exc:
                code = exc.returncode if exc.returncode is not None else 126
                return Run(code, exc.output or str(exc))
            return Run(0, out)


def runner_for(
    platform: Platform | str,
    image: BuiltImage,
    *,
    note: Callable[[str], None],
    search_path: str | None = None,
    tmp: Path | None = None,
) -> ContainerRunner:
    """The runner that smoke-checks ``image`` (built for ``platform``, which this machine
    does not run): under qemu-user when its ``qemu-<arch>-static`` is on ``search_path``
    (None: kiln's PATH), else the static check, said in one ``note`` line with the fix.
    ``functools.partial(runner_for, note=...)`` is a builder's ``ForeignRunner``."""
    machine = machine_of(platform)
    platform = str(platform)
    qemu = shutil.which(machine.qemu, path=search_path)
    if qemu is not None:
        return QemuContainers(image, platform, qemu, tmp=tmp)
    note(
        f"    {platform}: {machine.qemu} is not installed, so {image.digest} is checked "
        "without running it (its modules, its ELF files' machine and libraries, its "
        f"distributions' requirements); to import them under emulation: `{INSTALL_QEMU}`"
    )
    return StaticContainers(image, platform, tmp=tmp)


# ------------------------------------------------------------------ the static check


@dataclass(frozen=True)
class _Python:
    program: str  # the image path PATH finds (/usr/bin/python3)
    real: str  # the file it is (/usr/bin/python3.11)
    version: str  # "3.11"
    full_version: str  # "3.11.2", or the version when its bytes do not say
    stdlib: tuple[str, ...]  # image folders
    site: tuple[str, ...]  # image folders that exist, in sys.path order


def _image_path(root: Path, path: Path) -> str:
    return "/" + path.relative_to(root).as_posix()


def _read_machine(path: Path) -> int | None:
    with path.open("rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def _full_version(root: Path, python: Path, version: str, prefix: str) -> str:
    """The micro version CPython's own bytes carry (PY_VERSION, in the executable or the
    libpython beside it)."""
    pattern = re.compile(rb"\x00(" + re.escape(version.encode()) + rb"\.\d+)\x00")
    for candidate in [python, *sorted((root / prefix.lstrip("/") / "lib").glob("libpython3*.so*"))]:
        if candidate.is_file() and (match := pattern.search(candidate.read_bytes())):
            return match.group(1).decode()
    return version


def _python(root: Path, variables: Mapping[str, str], machine: Machine) -> _Python:
    program = find_program(root, "python3", variables)
    found = None if program is None else resolve(root, program)
    if program is None or found is None:
        where = variables.get("PATH", "the default")
        raise ConfigError(f"no python3 on the image's PATH ({where})")
    real = _image_path(root, found)
    match = re.fullmatch(r"python(\d+\.\d+)", posixpath.basename(real))
    if match is None:
        raise ConfigError(f"{program} is {real}, whose name does not say its version")
    if (built := _read_machine(found)) != machine.e_machine:
        raise ConfigError(f"{real} is built for ELF machine {built}, not {machine.name}")
    version = match.group(1)
    prefix = posixpath.dirname(posixpath.dirname(real))
    lib = f"{prefix}/lib/python{version}"
    extra = [p for p in variables.get("PYTHONPATH", "").split(":") if p.startswith("/")]
    site = [
        *extra,
        f"/usr/local/lib/python{version}/dist-packages",  # Debian's
        "/usr/lib/python3/dist-packages",
        f"{prefix}/lib/python{version}/dist-packages",
        f"{prefix}/lib/python{version}/site-packages",  # python.org's
    ]
    existing = [d for d in dict.fromkeys(site) if (p := resolve(root, d)) and p.is_dir()]
    return _Python(
        program, real, version, _full_version(root, found, version, prefix),
        (lib, f"{lib}/lib-dynload"), tuple(existing),
    )  # fmt: skip


def _has_module(root: Path, folders: Sequence[str], name: str, suffixes: Sequence[str]) -> bool:
    """Whether ``name`` (dotted) is a package folder or module file in one of ``folders``."""
    parts = name.split(".")
    for folder in folders:
        base = posixpath.join(folder, *parts)
        if (found := resolve(root, base)) is not None and found.is_dir():
            return True
        for suffix in suffixes:
            if (found := resolve(root, base + suffix)) is not None and found.is_file():
                return True
    return False


def _owner(rel: str) -> str:
    """The import package a file under a site folder belongs to (``numpy.libs/x.so``:
    numpy, as auditwheel names the folder of the libraries it grafts)."""
    top = rel.split("/", 1)[0]
    return top.removesuffix(".libs") if "/" in rel else top.split(".", 1)[0]


class _Libraries:
    """Where the image's loader finds a DT_NEEDED library, as ld.so searches."""

    def __init__(self, root: Path, variables: Mapping[str, str], machine: Machine) -> None:
        self._root = root
        self._machine = machine
        self._ld_path = [d for d in variables.get("LD_LIBRARY_PATH", "").split(":") if d]
        self._system = list(dict.fromkeys([*library_dirs(root), *machine.arch.system_dirs]))
        self._seen: dict[str, bool] = {}

    def folders(self, link: Linking, origin: str) -> list[str]:
        rpath = link.rpath.split(":") if link.rpath and not link.runpath else []
        runpath = link.runpath.split(":") if link.runpath else []
        found = []
        for entry in [*rpath, *self._ld_path, *runpath, *self._system]:
            folder = entry.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
            if folder.startswith("/") and "$" not in folder:  # $LIB, $PLATFORM: not guessed
                found.append(posixpath.normpath(folder))
        return list(dict.fromkeys(found))

    def find(self, name: str, folders: Sequence[str]) -> bool:
        for folder in folders:
            path = posixpath.join(folder, name)
            if path not in self._seen:
                found = resolve(self._root, path)
                self._seen[path] = (
                    found is not None
                    and found.is_file()
                    and _read_machine(found) == self._machine.e_machine
                )
            if self._seen[path]:
                return True
        return False


def _check_elf(
    root: Path, site: Sequence[str], libraries: _Libraries, machine: Machine, platform: str
) -> tuple[dict[str, list[str]], int]:
    """Problems of the ELF files under ``site`` (by the import package they belong to),
    and how many ELF files there are."""
    problems: dict[str, list[str]] = {}
    count = 0
    for folder in site:
        top = resolve(root, folder)
        if top is None:
            continue
        for here, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                path = Path(here) / name
                if path.is_symlink() or _read_machine(path) is None:
                    continue
                count += 1
                rel = path.relative_to(top).as_posix()
                image_path = f"{folder}/{rel}"
                try:
                    link = linking(path.read_bytes())
                except ValueError as exc:
                    problems.setdefault(_owner(rel), []).append(f"{image_path}: {exc}")
                    continue
                if link.machine != machine.e_machine:
                    problems.setdefault(_owner(rel), []).append(
                        f"{image_path} is built for ELF machine {link.machine}, not "
                        f"{machine.name} ({platform}): a wheel for another platform"
                    )
                    continue
                folders = libraries.folders(link, posixpath.dirname(image_path))
                for needed in link.needed:
                    if not libraries.find(needed, folders):
                        problems.setdefault(_owner(rel), []).append(
                            f"{image_path} needs {needed}, which is in none of "
                            f"{', '.join(folders)}: add the OS package that ships it to "
                            "the image's OS lock, or use a wheel that bundles it"
                        )
    return problems, count


def _distributions(root: Path, folders: Sequence[str]) -> dict[str, list[Any]]:
    """name -> [version, Requires-Dist] of every distribution in ``folders``, as
    ``importlib.metadata`` lists them (a later one of a name replaces an earlier one)."""
    found: dict[str, list[Any]] = {}
    for folder in folders:
        top = resolve(root, folder)
        if top is None or not top.is_dir():
            continue
        for entry in sorted(top.iterdir()):
            meta = entry / "METADATA" if entry.suffix == ".dist-info" else entry / "PKG-INFO"
            if entry.suffix not in (".dist-info", ".egg-info") or not meta.is_file():
                continue
            with meta.open("rb") as f:
                headers = BytesParser().parse(f, headersonly=True)
            if headers["Name"]:
                found[str(headers["Name"])] = [
                    str(headers["Version"]),
                    [str(r) for r in headers.get_all("Requires-Dist") or []],
                ]
    return found


def static_result(
    root: Path, variables: Mapping[str, str], platform: str, modules: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    """What the smoke script would print for the image unpacked at ``root`` (a summary line,
    and its result: failed modules, distributions, marker environment), found from its
    files and ``variables`` (its Env). ConfigError when there is no python3 to judge."""
    machine = machine_of(platform)
    python = _python(root, variables, machine)
    tag = python.version.replace(".", "")
    suffixes = (".py", ".pyc", f".cpython-{tag}-{machine.arch.triplet}.so", ".abi3.so", ".so")
    path = [*python.stdlib, *python.site]
    why = f"checked without running it ({machine.qemu} is not installed)"
    failed = {
        name: f"{why}: no package or module {name} in {', '.join(path)}"
        for name in modules
        if not _has_module(root, path, name, suffixes)
    }
    libraries = _Libraries(root, variables, machine)
    problems, count = _check_elf(root, python.site, libraries, machine, platform)
    for owner, lines in problems.items():
        failed[owner] = "\n".join([f"{why}:", *lines])
    uname = os.uname()
    environment = {
        "implementation_name": "cpython",
        "implementation_version": python.full_version,
        "os_name": "posix",
        "platform_machine": machine.name,
        "platform_release": uname.release,  # qemu-user would report this machine's kernel
        "platform_system": "Linux",
        "platform_version": uname.version,
        "python_full_version": python.full_version,
        "platform_python_implementation": "CPython",
        "python_version": python.version,
        "sys_platform": "linux",
    }
    summary = (
        f"static check ({platform}, not run): {python.program} is {python.real} "
        f"({machine.name}, {python.full_version}); {len(modules)} modules looked up; "
        f"{count} ELF files under {', '.join(python.site)} checked for {machine.name} "
        "and their libraries"
    )
    distributions = _distributions(root, python.site)
    return summary, {"failed": failed, "distributions": distributions, "environment": environment}


class StaticContainers:
    """A ContainerRunner that runs nothing: the smoke script's command (``python3 -c
    <script> module...``) answered from ``image``'s files (``static_result``)."""

    def __init__(self, image: BuiltImage, platform: str, *, tmp: Path | None = None) -> None:
        machine_of(platform)
        self._image = image
        self._platform = platform
        self._tmp = tmp

    def __call__(self, image: str, command: Sequence[str]) -> Run:
        if list(command[:2]) != ["python3", "-c"] or len(command) < 3:
            return Run(2, f"the static check answers the smoke script only, not {command[:2]}")
        env = image_env(self._image)
        with unpacked(self._image, image, self._tmp) as root:
            try:
                summary, result = static_result(root, env, self._platform, command[3:])
            except ConfigError as exc:
                return Run(1, f"static check of {image} ({self._platform}): {exc}")
        return Run(0, f"{summary}\n{json.dumps(result)}")
