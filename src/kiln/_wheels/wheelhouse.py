"""An image's wheelhouse: every wheel the image installs.

Third-party wheels are exactly the files of the image's committed lock
(``images/<i>/requirements.lock``, written by ``kiln lock``): nothing is resolved
at release. ``pip download --no-deps --require-hashes --only-binary :all:``
fetches them for the image's Python and platform, isolated from any machine-wide
pip configuration, from the private index (where a release mirrors them) and from
upstream for what it lacks; the result is cached by the lock's bytes (and, for a
platform of the lock other than its first, by that platform: linux/arm64 fetches the
aarch64 wheels, each with a hash the lock allows for its pin). Which index
serves which file is asked of their simple pages first, so a lock whose hash no
index serves is named before anything is fetched, published or pushed. Helper
wheels are never given to pip: they come from kiln's own builds. Since pip only
downloads here, kiln may run on any Python: the lock names the image's, except for a
pin the lock builds from its sdist (``kiln._wheels.sdist``): that wheel is rebuilt, or
taken from its cache, and its sdist and build backend are mirrored like the wheels.

pypi_simple is imported where a simple page is read: it takes 0.2 s (its package imports
pydantic for PEP 691 and bs4 for HTML whichever one a page needs), which a command that
reads no page need not pay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import requests
from packaging.utils import parse_wheel_filename

from kiln._errors import CommandFailed, ConfigError, ServiceUnavailable
from kiln._lock.format import Lock, Pin, locked_name
from kiln._lock.sources import Pages, locked_source
from kiln._lock.tags import supported_tags, wheel_platforms, wheels_for
from kiln._util import http
from kiln._util.cmd import Runner, call, hermetic_pip_env
from kiln._util.files import sha256_file, sweep_stale
from kiln._wheels.build import BuiltWheel
from kiln._wheels.sdist import SdistBuilder
from kiln._wheels.sdist_cache import SourceFile
from kiln._workspace.model import Image, Workspace, helper_closure


@dataclass(frozen=True)
class WheelFile:
    name: str  # canonical project name
    version: str
    path: Path
    sha256: str
    built: bool = False  # kiln built it from the sdist: not mirrored (its sources are)

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


@dataclass(frozen=True)
class Wheelhouse:
    image: str
    requirements: tuple[str, ...]  # the third-party requirements that were resolved
    third_party: tuple[WheelFile, ...]
    helpers: tuple[BuiltWheel, ...]
    # The sdists and build-backend wheels that the built third-party wheels came from.
    sources: tuple[SourceFile, ...] = ()

    def mirror(self) -> tuple[WheelFile | SourceFile, ...]:
        """The upstream files a release puts on the private index: the downloaded wheels
        and the sources of the built ones (never a wheel kiln built)."""
        return (*(w for w in self.third_party if not w.built), *self.sources)


def _read_dir(directory: Path) -> tuple[WheelFile, ...]:
    wheels = []
    for path in sorted(directory.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(path.name)
        wheels.append(WheelFile(name, str(version), path, sha256_file(path)))
    return tuple(wheels)


class SimplePages:
    """An index's simple API at ``endpoint`` (e.g. https://pypi.org/simple), read-only."""

    def __init__(self, endpoint: str, *, ca_bundle: Path | None = None) -> None:
        """``ca_bundle``: a TLS-inspecting proxy's CA, as pip gets it with --cert."""
        from pypi_simple import PyPISimple  # noqa: PLC0415 - 0.2 s (pydantic, bs4): see the module

        self.endpoint = endpoint.rstrip("/") + "/"
        self._client = PyPISimple(endpoint=self.endpoint, session=http.session(ca_bundle))

    def files(self, project: str) -> dict[str, str]:
        from pypi_simple import NoSuchProjectError  # noqa: PLC0415 - (see the module)

        try:
            page = self._client.get_project_page(project, timeout=60.0)
        except NoSuchProjectError:
            return {}
        except requests.RequestException as exc:
            raise ServiceUnavailable(
                f"package index {self.endpoint} is not reachable ({type(exc).__name__}); "
                "check the network, or [tool.kiln] upstream-index"
            ) from None
        return {p.filename: p.digests["sha256"] for p in page.packages if "sha256" in p.digests}


class Downloader(Protocol):
    """Fetches ``pins`` (and nothing else) from ``index_url`` into ``dest``."""

    def __call__(self, lock: Lock, pins: Sequence[Pin], *, index_url: str, dest: Path) -> None: ...


def pip_download_args(
    lock: Lock, *, index_url: str, dest: str, requirements: str, cert: str | None = None
) -> list[str]:
    """``pip`` arguments that fetch exactly the files of ``requirements`` (hash-pinned)
    for the lock's Python and platform: no dependencies, wheels only, hermetic."""
    abi = "cp" + lock.python.replace(".", "")
    platforms = [arg for tag in wheel_platforms(lock.platform) for arg in ("--platform", tag)]
    return [
        "download", "--isolated", "--no-input", "--quiet", *(["--cert", cert] if cert else []),
        "--no-deps", "--require-hashes", "--only-binary", ":all:",
        "--python-version", lock.python, "--implementation", "cp",
        "--abi", abi, "--abi", "abi3", "--abi", "none", *platforms,
        "--index-url", index_url, "--dest", dest, "-r", requirements,
    ]  # fmt: skip


class PipDownload:
    """``pip download`` on the running interpreter (it only fetches: any Python will do).

    ``credentials``: index URL -> (user, password) for authenticated indexes. pip reads
    them from a netrc that lives in memory only (``_netrc_for``): never on its command
    line, which is logged, nor in any file a killed kiln could leave behind.
    """

    def __init__(
        self,
        runner: Runner = call,
        *,
        credentials: Mapping[str, tuple[str, str]] | None = None,
        ca_bundle: Path | None = None,
    ) -> None:
        self._runner = runner
        self._credentials = dict(credentials or {})
        self._ca_bundle = ca_bundle

    def __call__(self, lock: Lock, pins: Sequence[Pin], *, index_url: str, dest: Path) -> None:
        requirements = dest / "requirements.txt"
        requirements.write_text("".join(f"{p.lines()}\n" for p in pins))
        args = pip_download_args(
            lock,
            index_url=index_url,
            dest=str(dest),
            requirements=str(requirements),
            cert=str(self._ca_bundle) if self._ca_bundle else None,
        )
        try:
            with _netrc_for(index_url, self._credentials.get(index_url)) as netrc_env:
                self._runner(
                    [sys.executable, "-m", "pip", *args], env={**hermetic_pip_env(), **netrc_env}
                )
        finally:
            requirements.unlink()

    def fetch_file(
        self, project: str, filename: str, sha256: str, *, index_url: str, dest: Path
    ) -> Path:
        """``filename`` as ``index_url``'s page for ``project`` links it, into ``dest``;
        a ConfigError when its bytes do not have ``sha256``. (pip cannot fetch an sdist
        without building its metadata, so this is a plain HTTP download.)"""
        from pypi_simple import NoSuchProjectError, PyPISimple  # noqa: PLC0415 - (see the module)

        session = http.session(self._ca_bundle, credentials=self._credentials.get(index_url))
        target = dest / Path(filename).name
        dest.mkdir(parents=True, exist_ok=True)
        try:
            page = PyPISimple(endpoint=index_url, session=session).get_project_page(
                project, timeout=60.0
            )
            urls = [p.url for p in page.packages if p.filename == filename]
            if not urls:
                raise ConfigError(f"{index_url}: {project} has no file {filename}")
            with session.get(urls[0], stream=True, timeout=60.0) as resp:
                resp.raise_for_status()
                with target.open("wb") as out:
                    for chunk in resp.iter_content(1 << 20):
                        out.write(chunk)
        except (requests.RequestException, NoSuchProjectError) as exc:
            raise ServiceUnavailable(
                f"{index_url}: cannot download {filename} ({type(exc).__name__}); check the "
                "network and the index"
            ) from None
        got = sha256_file(target)
        if got != sha256:
            target.unlink()
            raise ConfigError(f"{index_url}: {filename} has sha256 {got}, expected {sha256}")
        return target

    def fetch_backend(
        self, requirements: Sequence[str], *, index_url: str, dest: Path, resolve: bool
    ) -> None:
        """Wheels of ``requirements`` for this interpreter (which builds) into ``dest``:
        with their dependencies (``resolve``), or exactly the pins given."""
        dest.mkdir(parents=True, exist_ok=True)
        cert = ["--cert", str(self._ca_bundle)] if self._ca_bundle else []
        args = [
            sys.executable, "-m", "pip", "download", "--isolated", "--no-input", "--quiet",
            *cert, "--only-binary", ":all:", *([] if resolve else ["--no-deps"]),
            "--index-url", index_url, "--dest", str(dest), *requirements,
        ]  # fmt: skip
        with _netrc_for(index_url, self._credentials.get(index_url)) as netrc_env:
            try:
                self._runner(args, env={**hermetic_pip_env(), **netrc_env})
            except CommandFailed as exc:
                raise CommandFailed(
                    f"fetching the build backend {' '.join(requirements)} from {index_url} "
                    f"failed (kiln installs build backends from wheels only):\n{exc}",
                    returncode=exc.returncode,
                    output=exc.output,
                ) from None


@contextlib.contextmanager
def _netrc_for(url: str, basic: tuple[str, str] | None) -> Iterator[dict[str, str]]:
    """``{"NETRC": path}`` holding ``basic`` for ``url``'s host while the block runs.

    The netrc is an anonymous in-memory file (``memfd_create``) that pip opens through
    this process's ``/proc/<pid>/fd/<n>``: nothing is written to a disk, and the kernel
    frees it when kiln ends, however it ends (SIGTERM and SIGKILL too, which no
    ``finally`` survives)."""
    host = urlsplit(url).hostname
    if basic is None or host is None:
        yield {}
        return
    if not hasattr(os, "memfd_create"):
        raise ConfigError(
            f"{url} needs credentials, which kiln hands pip in memory only, through Linux's "
            "memfd_create: run kiln on Linux (as CI does) for an authenticated index"
        )
    fd = os.memfd_create("kiln-netrc", os.MFD_CLOEXEC)
    try:
        os.write(fd, f"machine {host} login {basic[0]} password {basic[1]}\n".encode())
        yield {"NETRC": f"/proc/{os.getpid()}/fd/{fd}"}
    finally:
        os.close(fd)


def _source(lock: Lock, pin: Pin, pages: Sequence[tuple[str, Pages]]) -> str:
    """The first index (of ``pages``: url, client) serving a wheel of ``pin`` that the lock
    allows for the image's Python and platform."""
    tags = supported_tags(lock.python, lock.platform)
    url, _filename, _sha = locked_source(
        lock,
        pin,
        pages,
        lambda files: wheels_for(files, pin.name, pin.version, tags),
        missing=(
            f"serves a wheel of it for Python {lock.python} on {lock.platform}; re-lock with "
            f"`kiln lock {locked_name(lock.path)}`"
        ),
    )
    return url


def for_platform(lock: Lock, platform: str | None) -> Lock:
    """``lock`` as read for ``platform`` (uv's, "aarch64-manylinux_2_28"; None: its
    first): the wheels to fetch are that platform's. A ConfigError when the lock does not
    cover it."""
    if platform is None or platform == lock.platform:
        return lock
    if platform not in lock.platforms:
        raise ConfigError(
            f"{lock.path} is locked for {', '.join(lock.platforms)}, not {platform}; add the "
            f"platform to the image's platforms and run `kiln lock {locked_name(lock.path)}`"
        )
    return dataclasses.replace(lock, platform=platform)


def _cache_key(lock: Lock, first: str) -> str:
    """The wheelhouse folder of ``lock`` for its platform: the first platform's is named
    by the lock's bytes alone, as it always was; another's adds its architecture."""
    key = lock.sha256[:16]
    return key if lock.platform == first else f"{key}-{lock.platform.partition('-')[0]}"


def fetch_locked(
    lock: Lock,
    *,
    pages: Sequence[tuple[str, Pages]],
    cache_dir: Path,
    download: Downloader,
    note: Callable[[str], None] = lambda _line: None,
    platform: str | None = None,
) -> tuple[WheelFile, ...]:
    """The wheel of every pin of ``lock`` (but those it builds from an sdist: see
    ``build_locked``) for ``platform`` (one of the lock's; None: its first), from
    ``cache_dir`` when it was fetched before and every wheel there still has a sha256 the
    lock allows (else the folder is discarded and fetched again, with one line to
    ``note``); else from the first index of ``pages`` (the private one first) that serves
    it."""
    first = lock.platform
    lock = for_platform(lock, platform)
    target = cache_dir / _cache_key(lock, first)
    if (target / "complete").is_file():
        wheels = _read_dir(target)
        misfit = _misfit(lock, wheels)
        if misfit is None:
            return _check_fetched(lock, wheels)
        note(
            f"wheelhouse cache {target}: {misfit[1]} did not match the lock's sha256; "
            "discarded, downloading again"
        )
        _discard(target)
    sources: dict[str, list[Pin]] = {}
    for pin in (p for p in lock.pins if p.built is None):
        sources.setdefault(_source(lock, pin, pages), []).append(pin)
    # Fetched into a folder of this call's own, then renamed into place: two kilns
    # sharing the cache (`kiln release --dev` shares the checkout's) never write into
    # one folder, nor remove the other's.
    cache_dir.mkdir(parents=True, exist_ok=True)
    sweep_stale(cache_dir)  # what a SIGKILLed kiln left (~50 MB a fetch)
    with tempfile.TemporaryDirectory(prefix=f".tmp-{target.name}-", dir=cache_dir) as tmp:
        partial = Path(tmp) / "wheels"
        partial.mkdir()
        for url, pins in sources.items():
            download(lock, pins, index_url=url, dest=partial)
        (partial / "complete").write_text(lock.sha256 + "\n")
        if target.is_dir() and not (target / "complete").is_file():
            shutil.rmtree(target)  # left by an interrupted older kiln
        try:
            partial.rename(target)
        except OSError:
            if not (target / "complete").is_file():
                raise
            # another kiln fetched the same lock meanwhile: its folder is as good
    return _check_fetched(lock, _read_dir(target))


def _discard(folder: Path) -> None:
    """Remove ``folder`` (renamed aside first: a kiln reading it meanwhile sees it whole
    or not at all)."""
    aside = folder.with_name(f".tmp-discarded-{folder.name}-{os.getpid()}")
    with contextlib.suppress(OSError):
        folder.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)


def _misfit(lock: Lock, wheels: tuple[WheelFile, ...]) -> tuple[Pin, str] | None:
    """The first pin of ``lock`` without exactly one wheel among ``wheels`` with a hash
    the lock allows, and what was found for it."""
    by_name: dict[str, list[WheelFile]] = {}
    for w in wheels:
        by_name.setdefault(w.name, []).append(w)
    for pin in (p for p in lock.pins if p.built is None):
        found = [w for w in by_name.get(pin.name, []) if w.version == pin.version]
        if len(found) != 1 or found[0].sha256 not in pin.hashes:
            got = ", ".join(f"{w.filename} (sha256 {w.sha256})" for w in found) or "nothing"
            return pin, got
    return None


def _check_fetched(lock: Lock, wheels: tuple[WheelFile, ...]) -> tuple[WheelFile, ...]:
    """Exactly one wheel per pin, with a hash the lock allows (fetched just now: a
    mismatch is the lock's, or the index's)."""
    misfit = _misfit(lock, wheels)
    if misfit is not None:
        pin, got = misfit
        raise ConfigError(
            f"{lock.path}: {pin.requirement}: fetched {got}, which the lock does not allow; "
            f"restore the lock or run `kiln lock {locked_name(lock.path)} --upgrade {pin.name}`"
        )
    pinned = {(p.name, p.version) for p in lock.pins if p.built is None}
    chosen = [w for w in wheels if (w.name, w.version) in pinned]
    return tuple(sorted(chosen, key=lambda w: w.name))


def build_locked(
    lock: Lock, *, pages: Sequence[tuple[str, Pages]], sdists: SdistBuilder | None
) -> tuple[tuple[WheelFile, ...], tuple[SourceFile, ...]]:
    """The wheels ``lock`` builds from sdists (rebuilt, or from their cache, each with the
    sha256 the lock records), and the files they came from (sdists, backend wheels)."""
    wheels: list[WheelFile] = []
    sources: dict[str, SourceFile] = {}
    for pin in (p for p in lock.pins if p.built is not None):
        if sdists is None:
            raise ValueError(f"{lock.path} builds {pin.requirement} from its sdist: pass sdists")
        got = sdists.rebuild(lock, pin, pages)
        wheels.append(WheelFile(got.name, got.version, got.path, got.sha256, built=True))
        sources.update((s.filename, s) for s in got.sources)
    return tuple(wheels), tuple(sources[k] for k in sorted(sources))


def resolve_wheelhouse(
    workspace: Workspace,
    image: Image,
    built: Sequence[BuiltWheel],
    *,
    lock: Lock,
    pages: Sequence[tuple[str, Pages]],
    download: Downloader,
    sdists: SdistBuilder | None = None,
    note: Callable[[str], None] = lambda _line: None,
    platform: str | None = None,
) -> Wheelhouse:
    """``image``'s wheelhouse for ``platform`` (uv's, one of the lock's; None: its
    first): the locked third-party wheels (fetched, or built from their sdists by
    ``sdists``: pure wheels, the lock checked, that serve every platform) and its helpers'
    builds; ``note``: one line a person reads (a damaged cache discarded)."""
    fetched = fetch_locked(
        lock,
        pages=pages,
        cache_dir=workspace.state_dir / "wheelhouse",
        download=download,
        note=note,
        platform=platform,
    )
    from_sdists, sources = build_locked(lock, pages=pages, sdists=sdists)
    wanted = set(helper_closure(workspace, image.helpers))
    return Wheelhouse(
        image=image.name,
        requirements=tuple(p.requirement for p in lock.pins),
        third_party=tuple(sorted((*fetched, *from_sdists), key=lambda w: w.name)),
        helpers=tuple(sorted((w for w in built if w.helper in wanted), key=lambda w: w.helper)),
        sources=sources,
    )
