"""Settings, computed once: command line + environment -> one typed ``Options``.

Library code never reads the environment: the CLI builds ``Options`` here and
passes the values down. This module is the one that reads ``os.environ``
(``process_environment``). Every variable kiln reads is listed in ``ENVIRONMENT``,
which is also what ``kiln --help`` prints, so the two cannot drift apart.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kiln._errors import ConfigError


@dataclass(frozen=True)
class EnvVar:
    name: str
    help: str


ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar("KILN_NO_WHEEL_CACHE", "1: build every helper wheel again instead of reusing"),
    EnvVar("KILN_INDEX_USERNAME", "user name for the package index (not --local)"),
    EnvVar("KILN_INDEX_PASSWORD", "password or token for the package index; never logged"),
    EnvVar("KILN_REGISTRY_USERNAME", "user name for the registry (not --local)"),
    EnvVar("KILN_REGISTRY_PASSWORD", "password or token for the registry; never logged"),
    EnvVar("NETRC", "the netrc file with index credentials (default ~/.netrc)"),
    EnvVar("DOCKER_CONFIG", "docker's config folder with registry credentials (~/.docker)"),
    EnvVar("HOME", "where ~/.netrc and ~/.docker are looked for"),
    EnvVar("PATH", "where docker-credential-* helpers named in docker's config are found"),
    EnvVar("DOCKER_HOST", "the Docker Engine to build and run with"),
    EnvVar("GITHUB_ACTIONS", "true: fold each stage's output into a log group"),
    EnvVar(
        "KILN_OFFLINE",
        "1: ask no registry but the target (and loopback ones): `kiln lock` pins a "
        "registry base from the local Docker Engine's copy only",
    ),
    EnvVar(
        "PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE",
        "the CA bundle to trust (a TLS-inspecting proxy's CA): given to pip as --cert and "
        "to uv and to kiln's own HTTPS clients (the Debian mirrors too); the first that "
        "names a file wins",
    ),
)

CA_BUNDLE_VARS = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"  # as docker's own clients assume
_TRUE = ("1", "true", "yes")


def environment_help() -> str:
    """The ``environment:`` section of ``kiln --help``."""
    lines = ["environment:"]
    for var in ENVIRONMENT:
        lines.append(f"  {var.name}")
        lines += textwrap.wrap(
            var.help, width=78, initial_indent=" " * 6, subsequent_indent=" " * 6
        )
    return "\n".join(lines)


def process_environment() -> dict[str, str]:
    """The environment kiln runs in: what ``Options`` is read from by default, and
    what every program kiln starts inherits."""
    return dict(os.environ)


@dataclass(frozen=True)
class Options:
    """What the environment says, checked. Command-line values are passed alongside."""

    wheel_cache: bool = True
    github_actions: bool = False
    ca_bundle: Path | None = None
    docker_host: str = DEFAULT_DOCKER_HOST
    offline: bool = False
    # The environment itself, for the credential lookups (kiln._servers.credentials:
    # KILN_*_USERNAME/PASSWORD, NETRC, HOME, DOCKER_CONFIG, PATH). It holds passwords:
    # never shown.
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Options:
        """``env``: the environment to read (default: the process's)."""
        env = process_environment() if env is None else dict(env)
        return cls(
            wheel_cache=not _flag(env, "KILN_NO_WHEEL_CACHE"),
            github_actions=env.get("GITHUB_ACTIONS", "").lower() == "true",
            ca_bundle=_ca_bundle(env),
            docker_host=env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST,
            offline=_flag(env, "KILN_OFFLINE"),
            env=env,
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").lower()
    if value not in ("", "0", "false", "no", *_TRUE):
        raise ConfigError(f"{name}={value!r}: use 1 or 0")
    return value in _TRUE


def _ca_bundle(env: Mapping[str, str]) -> Path | None:
    for var in CA_BUNDLE_VARS:
        value = env.get(var)
        if value and Path(value).is_file():
            return Path(value).resolve()
    return None
