"""The OS definition: ``[tool.kiln.os]``, one for every image of the workspace.

Every image built on kiln's OS base shares one OS layer (the registry stores it
once); an image that needs more Debian packages lists them in its image.toml
(``os-packages``), which adds a layer of their own on top.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln._errors import ConfigError
from kiln._util.git import strip_credentials
from kiln._util.toml import get_str, get_str_list

SECTION = "tool.kiln.os"

# The roots of the default OS: what a KFP component on Debian's Python needs.
DEFAULT_PACKAGES = (
    # Python: the interpreter and its standard library (ssl, sqlite3, zoneinfo, ctypes, ...)
    "python3.11-minimal",
    "libpython3.11-stdlib",
    # KFP's container command: `sh -ec`, mktemp, printf
    "dash",
    "coreutils",
    # ldconfig, which ctypes.util.find_library asks
    "libc-bin",
    "ca-certificates",
    "tzdata",
    "netbase",  # /etc/services, /etc/protocols: socket.getservbyname, getaddrinfo("x", "https")
    # what manylinux wheels (numpy, pandas) load
    "libstdc++6",
    "libgcc-s1",
    "zlib1g",
)
# Relations that only maintainer scripts need (kiln runs none; it writes what they would
# have made): left out, and each relation left out is listed in the lock.
DEFAULT_EXCLUDE = ("debconf", "debconf-2.0", "dpkg", "install-info", "openssl", "perl-base")
DEFAULT_MIRRORS = {
    "debian": ("https://deb.debian.org/debian",),
    "debian-security": ("https://deb.debian.org/debian-security",),
}
# Debian's architectures -> what the image config calls them (OCI).
ARCHITECTURES = {"amd64": "amd64", "arm64": "arm64"}
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_URL = re.compile(r"^https?://[^\s/@]+(/\S*)?$")


@dataclass(frozen=True)
class OsConfig:
    """``[tool.kiln.os]``, checked. ``mirrors``: archive name -> URLs tried in order.
    ``architectures``: the Debian architectures locked, one closure each; the first is the
    one images are built for."""

    suite: str = "bookworm"
    architectures: tuple[str, ...] = ("amd64",)
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    mirrors: tuple[tuple[str, tuple[str, ...]], ...] = tuple(DEFAULT_MIRRORS.items())
    path: Path | None = field(default=None, compare=False)  # the pyproject.toml it came from

    @property
    def architecture(self) -> str:
        """The architecture images are built for (the first locked)."""
        return self.architectures[0]

    def suites(self) -> tuple[tuple[str, str], ...]:
        """(archive, suite) of every index the closure is resolved from: the suite and its
        updates from Debian's archive, its security updates from the security archive."""
        return (
            ("debian", self.suite),
            ("debian", f"{self.suite}-updates"),
            ("debian-security", f"{self.suite}-security"),
        )

    def urls(self, archive: str) -> tuple[str, ...]:
        return dict(self.mirrors)[archive]

    def inputs(self, extras: dict[str, tuple[str, ...]]) -> str:
        """What a lock is made from (mirrors aside: any mirror serves the same files);
        ``extras``: image -> its os-packages."""
        doc: dict[str, object] = {
            "suite": self.suite,
            "architecture": self.architecture,
            "packages": sorted(self.packages),
            "exclude": sorted(self.exclude),
            "extras": {k: sorted(v) for k, v in sorted(extras.items()) if v},
        }
        if len(self.architectures) > 1:  # one architecture: the inputs of a single-arch lock
            doc["architectures"] = list(self.architectures)
        return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def check_packages(names: tuple[str, ...], where: str) -> tuple[str, ...]:
    for name in names:
        if not _PACKAGE.match(name):
            raise ConfigError(
                f"{where}: {name!r} is not a Debian package name (lowercase letters, digits, "
                "+ - .); use the name `apt-cache show` knows, e.g. 'libgomp1'"
            )
    return names


def _mirrors(table: Any, pyproject: Path) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if table is None:
        return tuple(DEFAULT_MIRRORS.items())
    where = f"{pyproject}: [{SECTION}.mirrors]"
    if not isinstance(table, dict):
        raise ConfigError(f'{where} must be a table, e.g. debian = ["https://proxy/debian"]')
    unknown = sorted(set(table) - set(DEFAULT_MIRRORS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown archive {', '.join(unknown)}; the archives are "
            f"{' and '.join(DEFAULT_MIRRORS)}"
        )
    found = dict(DEFAULT_MIRRORS)
    for archive, urls in table.items():
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise ConfigError(f"{where} {archive} must be a non-empty list of URLs")
        for url in urls:
            if not _URL.match(url):
                raise ConfigError(
                    f"{where} {archive}: {strip_credentials(url)!r} must be an http(s) URL "
                    "without credentials "
                    "(a proxy's credentials come from netrc), e.g. 'https://deb.debian.org/debian'"
                )
        found[archive] = tuple(u.rstrip("/") for u in urls)
    return tuple(sorted(found.items()))


def _architectures(table: dict[str, Any], pyproject: Path) -> tuple[str, ...]:
    """``architectures = ["amd64", "arm64"]``, or ``architecture = "amd64"`` (the same as a
    list of one); not both. Each one kiln builds, once."""
    where = f"{pyproject}: [{SECTION}]"
    if "architecture" in table and "architectures" in table:
        raise ConfigError(
            f"{where} sets both architecture and architectures: keep architectures only "
            '(architecture = "amd64" is architectures = ["amd64"])'
        )
    if "architectures" in table:
        found = tuple(get_str_list(table, "architectures", pyproject, SECTION))
        if not found:
            raise ConfigError(f'{where} architectures is empty: list them, e.g. ["amd64"]')
        key = "architectures"
    else:
        found = (get_str(table, "architecture", pyproject, SECTION, default="amd64"),)
        key = "architecture"
    for arch in found:
        if arch not in ARCHITECTURES:
            raise ConfigError(
                f"{where} {key}: {arch!r} is not one kiln builds: kiln builds "
                f"{' and '.join(ARCHITECTURES)}"
            )
    twice = sorted({a for a in found if found.count(a) > 1})
    if twice:
        raise ConfigError(f"{where} architectures lists {', '.join(twice)} twice: list it once")
    return found


def read_os(kiln: dict[str, Any], pyproject: Path) -> OsConfig:
    """``[tool.kiln.os]`` of a workspace's pyproject.toml (defaults for what it omits)."""
    table = kiln.get("os", {})
    if not isinstance(table, dict):
        raise ConfigError(f'{pyproject}: [{SECTION}] must be a table, e.g. suite = "bookworm"')
    known = {"suite", "architecture", "architectures", "packages", "exclude", "mirrors"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{pyproject}: [{SECTION}] has no setting {', '.join(unknown)} (known: "
            f"{', '.join(sorted(known))})"
        )
    where = f"{pyproject}: [{SECTION}]"
    suite = get_str(table, "suite", pyproject, SECTION, default="bookworm")
    if not re.fullmatch(r"[a-z]+", suite):
        raise ConfigError(f"{where} suite = {suite!r}: use a codename such as 'bookworm'")
    architectures = _architectures(table, pyproject)
    packages = (
        check_packages(get_str_list(table, "packages", pyproject, SECTION), where)
        if "packages" in table
        else DEFAULT_PACKAGES
    )
    if not packages:
        raise ConfigError(f"{where} packages is empty: list the roots, e.g. python3.11-minimal")
    exclude = (
        check_packages(get_str_list(table, "exclude", pyproject, SECTION), where)
        if "exclude" in table
        else DEFAULT_EXCLUDE
    )
    both = sorted(set(packages) & set(exclude))
    if both:
        raise ConfigError(f"{where}: {', '.join(both)} is both in packages and in exclude")
    return OsConfig(
        suite=suite,
        architectures=architectures,
        packages=tuple(packages),
        exclude=tuple(exclude),
        mirrors=_mirrors(table.get("mirrors"), pyproject),
        path=pyproject,
    )


def python_of(packages: tuple[str, ...]) -> str | None:
    """The Python minor version the roots install (``python3.11-minimal`` -> "3.11")."""
    for name in packages:
        match = re.fullmatch(r"python(3\.\d+)-minimal", name)
        if match:
            return match.group(1)
    return None


def read_os_packages(table: dict[str, Any], config: Path) -> tuple[str, ...]:
    """image.toml ``os-packages``: extra Debian packages, a layer of their own."""
    return check_packages(
        get_str_list(table, "os-packages", config, "image"), f"{config}: os-packages"
    )
