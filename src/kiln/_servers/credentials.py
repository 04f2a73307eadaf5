"""Credentials for the index and the registry, and where they came from.

Sources, first found wins: the environment (``KILN_INDEX_*`` / ``KILN_REGISTRY_*``);
then, for the index, the netrc file (``NETRC`` or ``~/.netrc``) and, for the
registry, docker's config (``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``: ``credHelpers``, ``credsStore``, ``auths``). Never a
command-line value. ``Credentials`` keeps the password out of ``repr``/``str``
and records its ``source``, so an error can say where to fix them without
showing them. Lookups take the environment as a mapping: library code does not
read the process environment (the CLI passes it).
"""

from __future__ import annotations

import base64
import binascii
import json
import netrc
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from kiln._errors import AuthenticationFailed, CommandFailed, ConfigError
from kiln._util.cmd import call

INDEX_USERNAME, INDEX_PASSWORD = "KILN_INDEX_USERNAME", "KILN_INDEX_PASSWORD"
REGISTRY_USERNAME, REGISTRY_PASSWORD = "KILN_REGISTRY_USERNAME", "KILN_REGISTRY_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    """A username and password; ``source`` says where they were found (never the secret)."""

    username: str
    password: str = field(repr=False)
    source: str = "given"

    @property
    def basic(self) -> tuple[str, str]:
        """For ``requests``' ``auth=``."""
        return (self.username, self.password)


class HelperRunner(Protocol):
    """Runs a credential helper (``kiln._util.cmd.call`` outside tests)."""

    def __call__(
        self, args: Sequence[str], *, echo: bool = True, stdin: str | None = None
    ) -> str: ...


# ------------------------------------------------------------------ messages
def index_hint(url: str) -> str:
    host = urlsplit(url).hostname or url
    return (
        f"set {INDEX_USERNAME} and {INDEX_PASSWORD}, or add `machine {host} login USER "
        "password SECRET` to ~/.netrc (or to the file NETRC names)"
    )


def registry_hint(host: str) -> str:
    return (
        f"set {REGISTRY_USERNAME} and {REGISTRY_PASSWORD}, or run `docker login {host}` "
        "(kiln reads docker's config.json and its credential helpers)"
    )


def refused(
    server: str, credentials: Credentials | None, *, status: int | None, hint: str
) -> AuthenticationFailed:
    """The error for a 401/403: which server, which credentials (by source), how to fix."""
    answer = f" (HTTP {status})" if status else ""
    if credentials is None:
        return AuthenticationFailed(
            f"{server} requires credentials{answer} and kiln found none; {hint}"
        )
    return AuthenticationFailed(
        f"{server} refused user {credentials.username!r}{answer}, whose credentials came from "
        f"{credentials.source}; fix them there, or {hint}"
    )


# ------------------------------------------------------------------ lookups
def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def netrc_path(env: Mapping[str, str]) -> Path:
    return Path(env["NETRC"]) if env.get("NETRC") else _home(env) / ".netrc"


def docker_config_path(env: Mapping[str, str]) -> Path:
    folder = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else _home(env) / ".docker"
    return folder / "config.json"


def _from_env(env: Mapping[str, str], user_var: str, password_var: str) -> Credentials | None:
    username, password = env.get(user_var, ""), env.get(password_var, "")
    if not username and not password:
        return None
    if not username or not password:
        unset, other = (user_var, password_var) if not username else (password_var, user_var)
        raise ConfigError(f"{other} is set but {unset} is not: set both, or neither")
    return Credentials(username, password, source=f"the environment ({user_var}/{password_var})")


def index_credentials(url: str, env: Mapping[str, str]) -> Credentials | None:
    """Credentials for the index at ``url``: the environment, else netrc for its host."""
    found = _from_env(env, INDEX_USERNAME, INDEX_PASSWORD)
    host = urlsplit(url).hostname
    if found is not None or not host:
        return found
    path = netrc_path(env)
    try:
        entries = netrc.netrc(str(path))
    except FileNotFoundError:
        return None
    except netrc.NetrcParseError as exc:
        # Not exc.msg: it quotes the offending token, which may be a password.
        raise ConfigError(
            f"{path}: line {exc.lineno} is not valid netrc syntax; fix it, or point NETRC "
            "at another file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); fix it or set NETRC") from None
    entry = entries.authenticators(host)
    if entry is None:
        return None
    login, _account, password = entry
    which = f"machine {host}" if host in entries.hosts else "default"
    if not login or not password:
        raise ConfigError(
            f"{path}: the `{which}` entry needs both `login` and `password` for {url}"
        )
    return Credentials(login, password, source=f"{path} ({which})")


def _read_docker_config(path: Path) -> dict[str, object] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror}); fix it or set DOCKER_CONFIG"
        ) from None
    try:
        config = json.loads(text)
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise ConfigError(
            f"{path}: not a JSON object as docker writes it; fix it (or `docker login` again), "
            "or point DOCKER_CONFIG at another folder"
        )
    return config


def _section(config: Mapping[str, object], name: str, path: Path) -> dict[str, object]:
    value = config.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: `{name}` must be an object keyed by registry host")
    return value


def _hostname(key: str) -> str:
    """A config key (``host:port``, ``https://host/v1/``) as ``host[:port]``."""
    return key.split("://", 1)[-1].split("/", 1)[0].lower()


def _match(entries: Mapping[str, object], host: str) -> str | None:
    return next((key for key in entries if _hostname(key) == host.lower()), None)


_NOT_FOUND = "credentials not found"  # what every docker credential helper says, by protocol
_IDENTITY_TOKEN = "<token>"  # noqa: S105 - the protocol's marker, not a secret


def _from_helper(
    name: str, host: str, where: str, env: Mapping[str, str], runner: HelperRunner
) -> Credentials | None:
    """``docker-credential-NAME get`` with ``host`` on stdin; its answer never logged."""
    program = f"docker-credential-{name}"
    exe = shutil.which(program, path=env.get("PATH"))
    if exe is None:
        raise ConfigError(
            f"{where} names the credential helper `{name}`, but {program} is not on PATH; "
            f"install it, or remove that entry and use {REGISTRY_USERNAME}/{REGISTRY_PASSWORD}"
        )
    # echo=False: the command is harmless, but its output is a secret.
    try:
        out = runner([exe, "get"], echo=False, stdin=host)
    except CommandFailed as exc:
        if _NOT_FOUND in exc.output.lower():
            return None
        first = (exc.output.strip().splitlines() or ["no output"])[0][:200]
        raise CommandFailed(
            f"{program} get for {host} failed (exit {exc.returncode}): {first}; "
            f"fix the helper (or `docker login {host}`), or use "
            f"{REGISTRY_USERNAME}/{REGISTRY_PASSWORD}",
            returncode=exc.returncode,
        ) from None
    try:
        answer = json.loads(out)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        answer = None
    if answer is None or not isinstance(username, str) or not isinstance(secret, str):
        raise CommandFailed(f"{program} get for {host} did not answer JSON with Username/Secret")
    if username == _IDENTITY_TOKEN:
        raise ConfigError(
            f"{program} holds an identity token for {host}, which kiln cannot use; set "
            f"{REGISTRY_USERNAME}/{REGISTRY_PASSWORD} (a username and password or access token)"
        )
    if not username or not secret:
        return None
    return Credentials(username, secret, source=f"{where} ({program})")


def _from_auths(entry: object, key: str, path: Path) -> Credentials | None:
    where = f"{path} (auths[{key!r}])"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be an object; `docker login {_hostname(key)}` again")
    encoded = entry.get("auth")
    if not encoded:
        return None  # a placeholder for a credsStore entry, or an identity token only
    try:
        username, sep, password = (
            base64.b64decode(str(encoded), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if not sep or not username:
        raise ConfigError(
            f"{where}: `auth` is not base64 of USER:PASSWORD; `docker login {_hostname(key)}` "
            "again, or fix the entry"
        )
    return Credentials(username, password, source=where)


def registry_credentials(
    host: str, env: Mapping[str, str], *, runner: HelperRunner = call
) -> Credentials | None:
    """Credentials for the registry ``host[:port]``: the environment, else docker's config
    (``credHelpers[host]``, else ``credsStore``, else ``auths[host].auth``)."""
    found = _from_env(env, REGISTRY_USERNAME, REGISTRY_PASSWORD)
    if found is not None:
        return found
    path = docker_config_path(env)
    config = _read_docker_config(path)
    if config is None:
        return None
    helpers = _section(config, "credHelpers", path)
    key = _match(helpers, host)
    helper, where = (helpers[key], f"{path} (credHelpers[{key!r}])") if key else (None, "")
    if helper is None and config.get("credsStore"):
        helper, where = config["credsStore"], f"{path} (credsStore)"
    if helper is not None:
        if not isinstance(helper, str) or not helper:
            raise ConfigError(f"{where}: a credential helper is named by a non-empty string")
        found = _from_helper(helper, host, where, env, runner)
        if found is not None:
            return found
    auths = _section(config, "auths", path)
    key = _match(auths, host)
    return _from_auths(auths[key], key, path) if key else None
