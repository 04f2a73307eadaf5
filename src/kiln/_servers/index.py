"""The package index client: all index traffic goes through ``IndexClient``.

"Is this file already published, and with which bytes?" is answered from the
index's simple API (the ``#sha256=`` of each link), never from upload errors.
Uploads go through twine, with credentials only in its environment.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import requests
from pypi_simple import NoSuchProjectError, PyPISimple

from kiln._errors import ServiceUnavailable
from kiln._util.cmd import Runner, call

_TIMEOUT = 30.0


class Index(Protocol):
    """What the release needs from a package index (fakes implement this in tests)."""

    url: str

    def files(self, project: str) -> Mapping[str, str]:
        """Filename -> sha256 of every file published for ``project``."""
        ...

    def upload(self, paths: Sequence[Path]) -> None: ...


class IndexClient:
    """A PEP 503 index at ``url`` (e.g. pypiserver); uploads to ``upload_url``."""

    def __init__(
        self,
        url: str,
        *,
        upload_url: str | None = None,
        username: str = "kiln",
        password: str = "",
        runner: Runner = call,
    ) -> None:
        self.url = url.rstrip("/")
        self.simple_url = self.url + "/simple/"
        self.upload_url = upload_url or self.url + "/"
        self._username = username
        self._password = password
        self._runner = runner
        session = requests.Session()
        session.headers["Cache-Control"] = "no-cache"
        self._client = PyPISimple(endpoint=self.simple_url, session=session)

    def _unavailable(self, exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"package index {self.simple_url} is not reachable ({type(exc).__name__}); "
            "start it with `kiln stack up` or fix the index URL"
        )

    def ping(self) -> None:
        try:
            requests.get(self.simple_url, timeout=_TIMEOUT).raise_for_status()
        except requests.RequestException as exc:
            raise self._unavailable(exc) from None

    def files(self, project: str) -> dict[str, str]:
        try:
            page = self._client.get_project_page(project, timeout=_TIMEOUT)
        except NoSuchProjectError:
            return {}
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
        self._runner(
            [
                sys.executable, "-m", "twine", "upload", "--non-interactive",
                "--disable-progress-bar", "--repository-url", self.upload_url,
                *(str(p) for p in paths),
            ],
            env={"TWINE_USERNAME": self._username, "TWINE_PASSWORD": self._password},
        )  # fmt: skip
