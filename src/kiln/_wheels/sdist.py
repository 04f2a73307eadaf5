"""Wheels kiln builds from sdists, reproducibly.

A locked version with no wheel for the image's Python and platform, but an sdist, is
built into a wheel here. The sdist (hash-checked against the lock) is unpacked in a
fresh folder; a fresh venv of the running interpreter, which must be the image's
Python, gets exactly the build backend: the sdist's ``[build-system] requires`` (and
what the backend asks for on top), resolved once by ``kiln lock`` from the upstream
index, wheels only, and recorded in the lock as exact pins. The backend's PEP 517
``build_wheel`` then runs there (through pypa/build, as for helpers) with
``SOURCE_DATE_EPOCH`` and ``PYTHONHASHSEED`` fixed. pip runs hermetic: ``--isolated``,
no config file, an explicit index, the CA bundle kiln was given.

``kiln lock`` builds twice, in two folders and two venvs, and requires byte-identical
wheels; the lock records the wheel's name, sha256 and backend. A release rebuilds it
once and requires that sha256. Built wheels are cached by the pin's locked hashes (its
sdist's), the Python and the backend, with the files they came from (the sdist and the
backend's wheels), which a release mirrors to the private index: a second clone then
rebuilds from the private index alone.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import build
import pyproject_hooks
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from kiln._errors import CommandFailed, ConfigError
from kiln._lock.format import Built, Lock, Pin, locked_name
from kiln._lock.sources import Pages, locked_source, sdists_for
from kiln._lock.tags import supported_tags
from kiln._report import Reporter
from kiln._util.cmd import Runner, hermetic_pip_env
from kiln._util.epoch import SOURCE_DATE_EPOCH
from kiln._util.files import sha256_file
from kiln._wheels.sdist_cache import BUILD_ENV, SdistCache, SdistWheel, cache_key
from kiln._wheels.sdist_files import differences, pins_in, satisfied, unpack


class SourceFetch(Protocol):
    """The network side of a build: ``PipDownload`` in kiln, fakes in tests."""

    def fetch_file(
        self, project: str, filename: str, sha256: str, *, index_url: str, dest: Path
    ) -> Path:
        """``filename`` of ``project`` from ``index_url`` into ``dest``, its sha256 checked."""
        ...

    def fetch_backend(
        self, requirements: Sequence[str], *, index_url: str, dest: Path, resolve: bool
    ) -> None:
        """Wheels for the running interpreter into ``dest``: ``requirements`` with their
        dependencies (``resolve``), or exactly the ``name==version`` pins given."""
        ...


def sdist_cache_dir(state_dir: Path) -> Path:
    return state_dir / "cache" / "sdist-wheels"


def running_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


class SdistBuilder:
    """Builds pins' sdists into wheels: ``lock`` for ``kiln lock``, ``rebuild`` at release.

    ``index_url``: the upstream index ``kiln lock`` resolves from. ``executable``: the
    interpreter that builds; it must be the image's Python."""

    def __init__(
        self,
        fetch: SourceFetch,
        runner: Runner,
        *,
        cache_dir: Path,
        index_url: str = "",
        executable: str = sys.executable,
        python: str | None = None,
        report: Reporter | None = None,
    ) -> None:
        self._fetch = fetch
        self._runner = runner
        self._index_url = index_url
        self._executable = executable
        self._python = python or running_python()
        self._report = report or Reporter.null()
        self._cache = SdistCache(cache_dir, note=self._report.step)
        self.builds = 0  # how many times a backend built a wheel (the cache saves some)

    # ---------------------------------------------------------------- kiln lock
    def lock(
        self, lock_file: Path, pin: Pin, sdist: tuple[str, str], *, python: str, platform: str,
        backend: tuple[str, ...] | None,
    ) -> Built:  # fmt: skip
        """Build ``sdist`` (filename, sha256 from the upstream index) twice and require
        identical wheels; ``backend`` None: resolve the sdist's build requirements."""
        if backend is not None:
            hit = self._cache.get(cache_key(pin, python, backend))
            if hit is not None:
                self._report.detail(f"    {pin.requirement}: {hit.path.name} from the cache")
                return Built(hit.path.name, hit.sha256, backend)
        self._check_python(lock_file, pin, python)
        self._report.stage("sdist", f"sdist {pin.requirement}: building a wheel, twice")
        with tempfile.TemporaryDirectory(prefix="kiln-sdist-") as tmp:
            folder = Path(tmp)
            path = self._fetch.fetch_file(
                pin.name, sdist[0], sdist[1], index_url=self._index_url, dest=folder / "sdist"
            )
            wheels, env = self._backend_for(lock_file, pin, path, folder, backend)
            first = self._build(lock_file, pin, path, wheels, folder / "first", env=env)
            second = self._build(lock_file, pin, path, wheels, folder / "second")
            if first.read_bytes() != second.read_bytes():
                raise ConfigError(
                    f"{lock_file}: {pin.requirement}: its build is not reproducible: two "
                    f"builds of {sdist[0]} (same backend, SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}) "
                    f"gave different wheels ({'; '.join(differences(first, second))}). kiln "
                    "installs only a wheel it can rebuild bit for bit at release: pin a version "
                    f"of {pin.name} that ships a wheel for the image, or drop it"
                )
            self._check_wheel(lock_file, pin, first, python, platform)
            backend = pins_in(wheels)
            key = cache_key(pin, python, backend)
            kept = self._cache.store(key, first, [path, *wheels.glob("*.whl")])
        return Built(kept.path.name, kept.sha256, backend)

    def _backend_for(
        self, lock_file: Path, pin: Pin, sdist: Path, folder: Path, backend: tuple[str, ...] | None
    ) -> tuple[Path, Path | None]:
        """The folder of the backend's wheels: ``backend`` exactly, or resolved from the
        sdist's build requirements plus what its backend asks for on top; and the venv
        that was asked (its python), ready for the first build."""
        wheels = folder / "backend"
        if backend is not None:
            fetch = self._fetch.fetch_backend
            fetch(backend, index_url=self._index_url, dest=wheels, resolve=False)
            return wheels, None
        project = unpack(sdist, folder / "requires")
        requires = sorted(self._static_requires(lock_file, pin, project))
        extra: set[str] = set()
        for _round in range(2):
            shutil.rmtree(wheels, ignore_errors=True)
            shutil.rmtree(folder / "first", ignore_errors=True)
            if requires:
                fetch = self._fetch.fetch_backend
                fetch(requires, index_url=self._index_url, dest=wheels, resolve=True)
            wheels.mkdir(exist_ok=True)
            env = self._venv(folder / "first" / "env", wheels)
            extra = self._dynamic_requires(lock_file, pin, project, env)
            if all(satisfied(r, pins_in(wheels)) for r in extra):
                return wheels, env
            requires = sorted({*requires, *extra})
        raise ConfigError(
            f"{lock_file}: {pin.requirement}: its build backend keeps asking for more "
            f"({', '.join(sorted(extra))}); pin a version of {pin.name} that ships a wheel, "
            "or drop it"
        )

    # ---------------------------------------------------------------- release
    def rebuild(self, lock: Lock, pin: Pin, pages: Sequence[tuple[str, Pages]]) -> SdistWheel:
        """The wheel ``lock`` records for ``pin`` (from the cache, else rebuilt from the
        first index of ``pages`` serving its sdist), or a ConfigError naming the fix."""
        if pin.built is None:
            raise ValueError(f"{pin.requirement} is not built from an sdist")
        built = pin.built
        key = cache_key(pin, lock.python, built.backend)
        hit = self._cache.get(key)
        if hit is not None and (hit.path.name, hit.sha256) == (built.filename, built.sha256):
            self._report.detail(f"    {pin.requirement}: {hit.path.name} from the cache")
            return hit
        self._check_python(lock.path, pin, lock.python)
        self._report.detail(f"    {pin.requirement}: rebuilding {built.filename} from its sdist")
        with tempfile.TemporaryDirectory(prefix="kiln-sdist-") as tmp:
            folder = Path(tmp)
            url, filename, sha = _sdist_source(lock, pin, pages)
            fetch = self._fetch.fetch_file
            path = fetch(pin.name, filename, sha, index_url=url, dest=folder / "sdist")
            wheels = folder / "backend"
            for index_url, group in _backend_sources(lock, pin, pages).items():
                self._fetch.fetch_backend(group, index_url=index_url, dest=wheels, resolve=False)
            wheels.mkdir(exist_ok=True)
            if pins_in(wheels) != tuple(sorted(built.backend)):
                raise ConfigError(
                    f"{lock.path}: {pin.requirement}: its build backend "
                    f"({' '.join(built.backend)}) was fetched as {' '.join(pins_in(wheels))}; "
                    f"re-lock with `kiln lock {locked_name(lock.path)} --upgrade {pin.name}`"
                )
            wheel = self._build(lock.path, pin, path, wheels, folder / "build")
            sha256 = sha256_file(wheel)
            if (wheel.name, sha256) != (built.filename, built.sha256):
                raise ConfigError(
                    f"{lock.path}: {pin.requirement}: rebuilding it from {filename} gave "
                    f"{wheel.name} with sha256 {sha256}, but the lock records {built.filename} "
                    f"with sha256 {built.sha256}: its build is not reproducible here, or the "
                    f"lock was edited. Re-lock it with `kiln lock {locked_name(lock.path)} "
                    f"--upgrade {pin.name}` (and commit the lock)"
                )
            return self._cache.store(key, wheel, [path, *wheels.glob("*.whl")])

    # ---------------------------------------------------------------- building
    def _check_python(self, lock_file: Path, pin: Pin, python: str) -> None:
        if self._python == python:
            return
        raise ConfigError(
            f"{lock_file}: {pin.requirement} has no wheel for Python {python}, only an sdist, "
            f"which kiln builds into a wheel with Python {python} itself; kiln runs on Python "
            f"{self._python} ({self._executable}). Get Python {python} (e.g. `uv python install "
            f"{python}`), make a venv with it (`uv venv --seed --python {python} .venv-{python}`)"
            f", install kiln there and run this kiln command with it"
        )

    def _venv(self, folder: Path, wheels: Path) -> Path:
        """A fresh venv in ``folder`` holding exactly the wheels of ``wheels``; its python."""
        self._runner([self._executable, "-m", "venv", "--without-pip", str(folder)])
        python = folder / "bin" / "python"
        files = sorted(str(p) for p in wheels.glob("*.whl"))
        if files:
            self._runner(
                [self._executable, "-m", "pip", "--python", str(python), "install", "--isolated",
                 "--no-input", "--quiet", "--no-index", "--no-deps", *files],
                env=hermetic_pip_env(),
            )  # fmt: skip
        return python

    def _hook_runner(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        where = Path(cwd) if cwd else None
        self._runner(list(cmd), cwd=where, env={**(extra_environ or {}), **BUILD_ENV})

    @contextlib.contextmanager
    def _backend(self, lock_file: Path, pin: Pin) -> Iterator[None]:
        """Backend failures as a CommandFailed naming ``pin``; the backend's warnings (which
        pyproject_hooks re-raises in this process) to the log, not the terminal."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pyproject_hooks.BuildBackendWarning)
            try:
                yield
            except (build.BuildException, build.BuildBackendException) as exc:
                raise self._failed(lock_file, pin, exc) from None
        for warning in caught:
            self._report.detail(f"    {pin.requirement}: the backend warns: {warning.message}")

    def _static_requires(self, lock_file: Path, pin: Pin, project: Path) -> set[str]:
        with self._backend(lock_file, pin):
            return set(build.ProjectBuilder(project).build_system_requires)

    def _dynamic_requires(self, lock_file: Path, pin: Pin, project: Path, python: Path) -> set[str]:
        with self._backend(lock_file, pin):
            hooks = build.ProjectBuilder(project, str(python), self._hook_runner)
            return set(hooks.get_requires_for_build("wheel"))

    def _build(
        self, lock_file: Path, pin: Pin, sdist: Path, wheels: Path, folder: Path,
        *, env: Path | None = None,
    ) -> Path:  # fmt: skip
        """Unpack ``sdist`` and build its wheel in a venv of ``wheels`` (``env``, when one
        was made already), all in ``folder``."""
        project = unpack(sdist, folder / "src")
        python = env or self._venv(folder / "env", wheels)
        with self._backend(lock_file, pin):
            hooks = build.ProjectBuilder(project, str(python), self._hook_runner)
            built = Path(hooks.build("wheel", folder / "out"))
        self.builds += 1
        return built

    @staticmethod
    def _failed(lock_file: Path, pin: Pin, exc: Exception) -> CommandFailed:
        cause = getattr(exc, "exception", None)
        output = getattr(cause, "output", "") or ""
        tail = "\n".join(f"    {line}" for line in str(output).rstrip().splitlines()[-20:])
        return CommandFailed(
            f"{lock_file}: building {pin.requirement} from its sdist failed: {exc}"
            + (f"; its output ends:\n{tail}\n" if tail else "; ")
            + f"pin a version of {pin.name} that ships a wheel for the image, or drop it"
        )

    @staticmethod
    def _check_wheel(lock_file: Path, pin: Pin, wheel: Path, python: str, platform: str) -> None:
        name, version, _build, tags = parse_wheel_filename(wheel.name)
        if (name, str(version)) != (pin.name, pin.version):
            raise ConfigError(
                f"{lock_file}: {pin.requirement}: its sdist builds {wheel.name}, a wheel of "
                f"another project or version; pin another version of {pin.name}, or drop it"
            )
        if not tags & supported_tags(python, platform):
            raise ConfigError(
                f"{lock_file}: {pin.requirement}: its sdist builds {wheel.name}, which Python "
                f"{python} on {platform} does not install: kiln builds sdists on this machine, "
                f"so only pure-Python ones fit. Pin a version of {pin.name} that ships a "
                f"wheel for the image, or drop it"
            )


def _sdist_source(lock: Lock, pin: Pin, pages: Sequence[tuple[str, Pages]]) -> tuple[str, str, str]:
    """(index URL, filename, sha256) of the first index serving the locked sdist of ``pin``."""
    return locked_source(
        lock,
        pin,
        pages,
        lambda files: sdists_for(files, pin),
        missing=(
            f"serves its locked sdist; re-lock with `kiln lock {locked_name(lock.path)} "
            f"--upgrade {pin.name}`"
        ),
    )


def _backend_sources(
    lock: Lock, pin: Pin, pages: Sequence[tuple[str, Pages]]
) -> dict[str, list[str]]:
    """index URL -> the backend pins of ``pin`` it serves a wheel of (first index first)."""
    assert pin.built is not None  # noqa: S101 - rebuild() checked it
    found: dict[str, list[str]] = {}
    for requirement in pin.built.backend:
        name, _, version = requirement.partition("==")
        for url, client in pages:
            files = client.files(name)
            if any(f.endswith(".whl") and parse_wheel_filename(f)[:2] == (
                canonicalize_name(name), Version(version)) for f in files):  # fmt: skip
                found.setdefault(url, []).append(requirement)
                break
        else:
            raise ConfigError(
                f"{lock.path}: {pin.requirement}: no index serves a wheel of {requirement}, "
                f"its build backend; re-lock with `kiln lock {locked_name(lock.path)} --upgrade "
                f"{pin.name}`"
            )
    return found
