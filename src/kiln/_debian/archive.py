"""Debian's archive as `kiln lock` reads it: signed suite indexes, checked as apt does.

For each suite, ``InRelease`` is fetched from the first mirror that answers and its
signature is checked with ``gpgv`` against Debian's archive keyring (Debian's
``debian-archive-keyring`` package); the ``Packages`` file of the architecture is
then checked against the sha256 the signed ``Release`` gives it. Nothing else is
trusted: a mirror (an organisation's proxy, say) may serve anything, but it cannot
sign. The checked files are kept in kiln's cache by sha256, and the fields the
resolver needs are kept parsed beside them, so a second lock reads no 50 MB file.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from kiln._debian.config import OsConfig
from kiln._errors import (
    ArtifactAltered,
    CommandFailed,
    CommandNotFound,
    ConfigError,
    ServiceUnavailable,
)
from kiln._util import http
from kiln._util.cmd import Runner
from kiln._util.files import write_atomic

if TYPE_CHECKING:
    from debian import deb822

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_INSTALL = "sudo apt-get install gpgv debian-archive-keyring"
_TIMEOUT = 60.0
_FIELDS = (
    "Package", "Version", "Architecture", "Source", "Filename", "Size", "SHA256", "Depends",
    "Pre-Depends", "Provides", "Essential",
)  # fmt: skip
_PARSED_FORMAT = "1"


@dataclass(frozen=True)
class Candidate:
    """One version of one package, as a suite's index lists it."""

    name: str
    version: str
    architecture: str
    source: str  # the source package's name
    archive: str  # "debian" or "debian-security"
    suite: str
    path: str  # the pool path, the same on every mirror of the archive
    size: int
    sha256: str
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""


@dataclass(frozen=True)
class Suite:
    archive: str
    name: str
    version: str  # the Release's Version ("12.8"), or "" (the updates and security suites)
    packages: tuple[Candidate, ...]


class Mirrors:
    """GETs from an archive's mirrors, each tried in order: the first that serves the
    file wins. ``ca_bundle``: the CA certificates to trust (a TLS-inspecting proxy's);
    ``session``: the transport (tests). No credentials are ever sent."""

    def __init__(
        self,
        config: OsConfig,
        session: requests.Session | None = None,
        *,
        ca_bundle: Path | None = None,
    ) -> None:
        self._config = config
        self._session = session or http.session(ca_bundle)

    def get(self, archive: str, path: str, *, what: str) -> bytes:
        """The bytes of ``path`` from the first mirror of ``archive`` that has it."""
        failures = []
        for url in self._config.urls(archive):
            try:
                resp = self._session.get(f"{url}/{path}", timeout=_TIMEOUT)
            except requests.RequestException as exc:
                failures.append(f"{url}: {type(exc).__name__}")
                continue
            if resp.status_code == 200:
                return resp.content
            failures.append(f"{url}: HTTP {resp.status_code}")
        raise ServiceUnavailable(
            f"{what}: no mirror of the {archive} archive serves {path} ({'; '.join(failures)}); "
            f"check the network or the mirrors in [tool.kiln.os.mirrors]"
        )

    def has(self, archive: str, path: str) -> bool:
        """Whether a mirror of ``archive`` serves ``path`` (HEAD); a ServiceUnavailable
        when none answers either way."""
        down = []
        for url in self._config.urls(archive):
            try:
                resp = self._session.head(f"{url}/{path}", timeout=_TIMEOUT, allow_redirects=True)
            except requests.RequestException as exc:
                down.append(f"{url}: {type(exc).__name__}")
                continue
            if resp.status_code == 200:
                return True
            if resp.status_code not in (404, 410):
                down.append(f"{url}: HTTP {resp.status_code}")
        if down:
            raise ServiceUnavailable(
                f"no mirror of the {archive} archive answers for {path} ({'; '.join(down)}); "
                "check the network or the mirrors in [tool.kiln.os.mirrors]"
            )
        return False

    def fetch_to(self, archive: str, path: str, target: Path) -> str | None:
        """Stream ``path`` into ``target`` from the first mirror that has it; the mirror's
        URL, or None when every mirror answers that it has no such file. A mirror that
        cannot be reached is a ServiceUnavailable unless another one serves the file."""
        down = []
        for url in self._config.urls(archive):
            try:
                with self._session.get(f"{url}/{path}", timeout=_TIMEOUT, stream=True) as resp:
                    if resp.status_code in (404, 410):
                        continue
                    if resp.status_code != 200:
                        down.append(f"{url}: HTTP {resp.status_code}")
                        continue
                    with target.open("wb") as out:
                        for chunk in resp.iter_content(1 << 20):
                            out.write(chunk)
                    return url
            except requests.RequestException as exc:
                down.append(f"{url}: {type(exc).__name__}")
        if down:
            raise ServiceUnavailable(
                f"no mirror of the {archive} archive serves {path} ({'; '.join(down)}); check "
                "the network or the mirrors in [tool.kiln.os.mirrors]"
            )
        return None


def verify_release(inrelease: bytes, runner: Runner, *, where: str, keyring: Path = KEYRING) -> str:
    """The signed text of an ``InRelease`` file whose signature ``gpgv`` accepts against
    Debian's archive keyring; an ArtifactAltered naming ``where`` when it does not."""
    if not keyring.is_file():
        raise ConfigError(
            f"Debian's archive keyring ({keyring}) is missing: kiln checks the signatures of "
            f"Debian's indexes with it before it locks anything; install it: {_INSTALL}"
        )
    with tempfile.TemporaryDirectory(prefix="kiln-release-") as tmp:
        signed, text = Path(tmp) / "InRelease", Path(tmp) / "Release"
        signed.write_bytes(inrelease)
        try:
            runner(["gpgv", "--keyring", str(keyring), "--output", str(text), str(signed)])
        except CommandNotFound:
            raise ConfigError(f"`gpgv` is not installed; kiln needs it: {_INSTALL}") from None
        except CommandFailed as exc:
            raise ArtifactAltered(
                f"{where}: its signature does not verify against Debian's archive keyring "
                f"({keyring}); the mirror serves an altered or foreign index: use another "
                f"mirror. gpgv said:\n{exc.output.strip()}"
            ) from None
        return text.read_text(encoding="utf-8", errors="replace")


def _check_release(
    release: deb822.Release,
    archive: str,
    suite: str,
    architecture: str,
    *,
    where: str,
    now: float,
) -> None:
    """The Release names ``suite``, still valid, for ``architecture``: a mirror replaying
    an old or another suite's signed index is refused as apt refuses it."""
    names = {release.get("Codename", ""), release.get("Suite", "")} - {""}
    if suite not in names:
        named = " / ".join(sorted(names)) or "no suite at all"
        raise ArtifactAltered(
            f"{where}: the signed index is for {named}, not {suite}; the mirror serves "
            "another suite under this name: use another mirror"
        )
    until = release.get("Valid-Until")
    try:
        expires = parsedate_to_datetime(until).timestamp() if until else None
    except (TypeError, ValueError):
        raise ArtifactAltered(
            f"{where}: its Valid-Until ({until!r}) is not a date; the index is malformed: use "
            "another mirror"
        ) from None
    if expires is not None and expires < now:
        raise ServiceUnavailable(
            f"{where}: the signed index expired on {until} (Valid-Until); the mirror is stale "
            "or replays an old index: use another mirror, or try again later"
        )
    offered = release.get("Architectures", "").split()
    if architecture not in offered:
        raise ConfigError(
            f"[tool.kiln.os] architectures: {archive} {suite} has no {architecture!r} "
            f"(it offers {', '.join(offered) or 'none'}); lock only those"
        )


def _split(field: str) -> str:
    return " ".join(field.split())


def _candidates(text: bytes, archive: str, suite: str) -> Iterator[Candidate]:
    from debian import deb822  # noqa: PLC0415 - python-debian: only to read an index or a .deb

    for para in deb822.Packages.iter_paragraphs(
        io.BytesIO(text), use_apt_pkg=False, fields=list(_FIELDS)
    ):
        name = para["Package"]
        yield Candidate(
            name=name,
            version=para["Version"],
            architecture=para["Architecture"],
            source=para.get("Source", name).split(" ", 1)[0],
            archive=archive,
            suite=suite,
            path=para["Filename"],
            size=int(para["Size"]),
            sha256=para["SHA256"],
            depends=_split(para.get("Depends", "")),
            pre_depends=_split(para.get("Pre-Depends", "")),
            provides=_split(para.get("Provides", "")),
        )


class Indexes:
    """Every suite of an OS definition, fetched, checked and parsed (``load``)."""

    def __init__(
        self,
        config: OsConfig,
        mirrors: Mirrors,
        runner: Runner,
        cache: Path,
        *,
        log: Callable[[str], None] = lambda _line: None,
        keyring: Path = KEYRING,
        now: Callable[[], float] | None = None,
    ) -> None:
        self._config = config
        self._mirrors = mirrors
        self._runner = runner
        self._cache = cache
        self._log = log
        self._keyring = keyring
        self._now = now

    def _suite(self, archive: str, suite: str, now: float, arch: str) -> Suite:
        from debian import deb822  # noqa: PLC0415 - (see _candidates)

        where = f"{archive} {suite} (dists/{suite}/InRelease)"
        inrelease = self._mirrors.get(archive, f"dists/{suite}/InRelease", what=where)
        text = verify_release(inrelease, self._runner, where=where, keyring=self._keyring)
        release = deb822.Release(text)
        _check_release(release, archive, suite, arch, where=where, now=now)
        name = f"main/binary-{arch}/Packages.xz"
        listed = {entry["name"]: entry for entry in release.get("SHA256", [])}
        if name not in listed:
            raise ConfigError(f"{where}: lists no {name}; the suite has no {arch} packages in main")
        sha256 = listed[name]["sha256"]
        parsed = self._cache / "parsed" / f"{sha256}.v{_PARSED_FORMAT}.json"
        try:
            rows = json.loads(parsed.read_text(encoding="utf-8"))
            packages = tuple(Candidate(**row) for row in rows)
        except (OSError, ValueError, TypeError):
            compressed = self._mirrors.get(archive, f"dists/{suite}/{name}", what=where)
            if hashlib.sha256(compressed).hexdigest() != sha256:
                raise ArtifactAltered(
                    f"{where}: {name} has another sha256 than its signed Release lists "
                    f"({sha256}); the mirror serves an altered or half-updated index: use "
                    "another mirror, or try again in a few minutes"
                ) from None
            self._keep(archive, f"dists/{suite}/{name}", compressed)
            text_bytes = lzma.decompress(compressed)
            packages = tuple(_candidates(text_bytes, archive, suite))
            write_atomic(parsed, json.dumps([asdict(p) for p in packages]).encode())
        self._keep(archive, f"dists/{suite}/InRelease", inrelease)
        which = "" if arch == self._config.architecture else f" {arch}"
        self._log(
            f"    {archive} {suite}{which}: {len(packages)} packages ({release.get('Date', '')})"
        )
        return Suite(archive, suite, str(release.get("Version", "")), packages)

    def _keep(self, archive: str, path: str, data: bytes) -> None:
        """Keep a checked index file in the archive's own layout (``mirror/<archive>/``):
        the newest copy of what kiln read, which a local mirror can serve again."""
        write_atomic(self._cache / "mirror" / archive / path, data)

    def load(self, architecture: str | None = None) -> tuple[Suite, ...]:
        """The suites' packages for ``architecture`` (default: the first of the config)."""
        now = self._now() if self._now else time.time()
        arch = architecture or self._config.architecture
        return tuple(
            self._suite(archive, suite, now, arch) for archive, suite in self._config.suites()
        )


def by_name(suites: Sequence[Suite]) -> Mapping[str, list[Candidate]]:
    """Every package name -> its candidates across ``suites``, in suite order."""
    found: dict[str, list[Candidate]] = {}
    for suite in suites:
        for candidate in suite.packages:
            found.setdefault(candidate.name, []).append(candidate)
    return found
