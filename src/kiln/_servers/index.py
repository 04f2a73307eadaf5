"""The package index client: all index traffic goes through ``IndexClient``.

"Is this file already published, and with which bytes?" is answered from the
index's simple API (the ``#sha256=`` of each link), never from upload errors.
Uploads go through twine, with credentials only in its environment; simple-API
reads send the same credentials. A 401/403 is ``AuthenticationFailed``, naming
where the credentials came from.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import requests
from pypi_simple import NoSuchProjectError, PyPISimple

from kiln._errors import AuthenticationFailed, CommandFailed, ConfigError, ServiceUnavailable
from kiln._servers.credentials import Credentials, index_hint, refused
from kiln._util import http
from kiln._util.cmd import Runner, call
from kiln._util.git import strip_credentials

_TIMEOUT = 30.0
# twine needs some username; pypiserver without an htpasswd file accepts any.
_ANONYMOUS = ("kiln", "")
# How twine reports the server's answer to an upload: "HTTPError: 403 Forbidden from URL".
_TWINE_REFUSED = re.compile(r"HTTPError: (401|403)\b")


class Index(Protocol):
    """What the release needs from a package index (fakes implement this in tests)."""

    url: str

    def files(self, project: str) -> Mapping[str, str]:
        """Filename -> sha256 of every file published for ``project``."""
        ...

    def upload(self, paths: Sequence[Path]) -> None: ...


class IndexClient:
    """A PEP 503 index at ``url`` (e.g. pypiserver); uploads to ``upload_url``.

    ``credentials`` (from ``kiln._servers.credentials``) go with every request and
    upload; without them, reads are anonymous and twine uploads as ``kiln`` with an
    empty password (what an open pypiserver accepts)."""

    def __init__(
        self,
        url: str,
        *,
        upload_url: str | None = None,
        credentials: Credentials | None = None,
        runner: Runner = call,
        session: requests.Session | None = None,
        ca_bundle: Path | None = None,
    ) -> None:
        """``ca_bundle``: the CA certificates to trust (a TLS-inspecting proxy's), for the
        simple-API reads and for twine's uploads. ``session``: the reads' transport
        (tests), else ``kiln._util.http.session``'s."""
        for given in (url, upload_url or ""):
            if urlsplit(given).username or urlsplit(given).password:
                raise ConfigError(
                    f"the index URL {strip_credentials(given)} carries credentials, which "
                    f"would be logged: drop them from it and {index_hint(given)}"
                )
        self.url = url.rstrip("/")
        self.simple_url = self.url + "/simple/"
        self.upload_url = upload_url or self.url + "/"
        self._credentials = credentials
        self._runner = runner
        self._session = session or http.session(ca_bundle)
        self._session.headers["Cache-Control"] = "no-cache"
        self._ca_bundle = ca_bundle
        if credentials is not None:
            self._session.auth = credentials.basic
        self._client = PyPISimple(endpoint=self.simple_url, session=self._session)

    def _refused(self, status: int | None) -> AuthenticationFailed:
        return refused(
            f"package index {self.simple_url}",
            self._credentials,
            status=status,
            hint=index_hint(self.url),
        )

    def _unavailable(self, exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"package index {self.simple_url} is not reachable ({type(exc).__name__}); "
            "start it with `kiln stack up` or fix the index URL"
        )

    def ping(self) -> None:
        try:
            resp = self._session.get(self.simple_url, timeout=_TIMEOUT)
        except requests.RequestException as exc:
            raise self._unavailable(exc) from None
        if resp.status_code in (401, 403):
            raise self._refused(resp.status_code)
        if resp.status_code != 200:
            raise ServiceUnavailable(
                f"package index {self.simple_url} answered {resp.status_code}; "
                "fix the index URL (kiln needs its PEP 503 simple API)"
            )

    def files(self, project: str) -> dict[str, str]:
        try:
            page = self._client.get_project_page(project, timeout=_TIMEOUT)
        except NoSuchProjectError:
            return {}
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise self._refused(status) from None
            raise self._unavailable(exc) from None
        except requests.RequestException as exc:
            raise self._unavailable(exc) from None
        found = {}
        for package in page.packages:
            sha = package.digests.get("sha256")
            if sha is None:
                raise ServiceUnavailable(
                    f"{self.simple_url}{project}/: {package.filename} has no #sha256 digest; "
                    "kiln needs an index that publishes hashes (pypiserver does)"
                )
            found[package.filename] = sha
        return found

    def upload(self, paths: Sequence[Path]) -> None:
        if not paths:
            return
        username, password = self._credentials.basic if self._credentials else _ANONYMOUS
        try:
            self._runner(
                [
                    sys.executable, "-m", "twine", "upload", "--non-interactive",
                    "--disable-progress-bar", "--repository-url", self.upload_url,
                    *(["--cert", str(self._ca_bundle)] if self._ca_bundle else []),
                    *(str(p) for p in paths),
                ],
                env={"TWINE_USERNAME": username, "TWINE_PASSWORD": password},
            )  # fmt: skip
        except CommandFailed as exc:
            found = _TWINE_REFUSED.search(exc.output)
            if found:
                raise self._refused(int(found.group(1))) from None
            raise
