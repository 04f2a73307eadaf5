"""The package index client: all index traffic goes through ``IndexClient``.

"Is this file already published, and with which bytes?" is answered from the
index's simple API (the ``#sha256=`` of each link), never from upload errors.
Uploads go through twine, with credentials only in its environment; simple-API
reads send the same credentials. A 401/403 is ``AuthenticationFailed``, naming
where the credentials came from.

Transient faults are tried again, boundedly, and never a 4xx: reads by the session
(``kiln._util.http``), uploads here (twine itself tries a 5xx answer again at once; a
connection error or a 502/503/504 that outlasts that is tried ``UPLOAD_TRIES`` times in
all, 1 s then 2 s apart, the later tries leaving out files the index lists by then). A
server still failing is ``ServiceUnavailable`` naming the URL and its answer.

``files_of`` asks for many projects' pages at once (a bounded pool of threads): a
release or a check of N helpers reads N pages, and one at a time their round trips add
up (200 pages: 2.6 s of a 6.3 s `kiln check`). When the caller names the files it will
look up and the index lists all its files on one page (pypiserver's ``/packages/``, which
carries the same ``#sha256=`` as its simple pages), that one page answers for every file
it lists; a file it does not list is asked for on its project's simple page, so "not
published" is always the simple API's answer (500 pages: 1.3-1.9 s; the listing: one
request).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import urlsplit

import requests

from kiln._errors import AuthenticationFailed, CommandFailed, ConfigError, ServiceUnavailable
from kiln._servers.credentials import Credentials, index_hint, refused
from kiln._util import http
from kiln._util.cmd import Runner, call
from kiln._util.git import strip_credentials

if TYPE_CHECKING:
    from pypi_simple import ProjectPage

_TIMEOUT = 30.0
# twine needs some username; pypiserver without an htpasswd file accepts any.
_ANONYMOUS = ("kiln", "")
# How twine reports the server's answer to an upload: "HTTPError: 403 Forbidden from URL".
_TWINE_REFUSED = re.compile(r"HTTPError: (401|403)\b")
# What twine prints when the server, or the way to it, failed rather than refused.
_TWINE_TRANSIENT = re.compile(
    r"HTTPError: (50[234])\b|(ConnectionError|Connection aborted|RemoteDisconnected"
    r"|Connection reset|ConnectionResetError|ProtocolError|IncompleteRead|BrokenPipe)"
)
UPLOAD_TRIES = 3
PAGE_TRIES = 3
# Simple pages asked for at once by ``files_of``: below requests' pool of 10 connections
# per host, so none is opened and dropped.
PAGE_WORKERS = 8
# From this many projects on, ``files_of`` reads the index's one-page listing first (if it
# has one): fewer, and the few pages cost less than a large index's listing.
LISTING_MIN_PROJECTS = 32
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _unreachable(exc: requests.RequestException) -> bool:
    """Whether ``exc`` is a connection that never opened (no server there), not one lost
    midway."""
    return isinstance(exc, requests.ConnectTimeout) or "NewConnectionError" in str(exc)


class Index(Protocol):
    """What the release needs from a package index (fakes implement this in tests)."""

    url: str

    def files(self, project: str) -> Mapping[str, str]:
        """Filename -> sha256 of every file published for ``project``."""
        ...

    def upload(self, paths: Sequence[Path]) -> None: ...


@runtime_checkable
class Listing(Protocol):
    """An index that may list every file it holds on one page."""

    def listing(self) -> Mapping[str, str] | None:
        """Filename -> sha256 of every file the index holds, or None (no such page)."""
        ...


def files_of(
    index: Index,
    projects: Iterable[str],
    *,
    wanted: Iterable[tuple[str, str]] = (),
    workers: int = PAGE_WORKERS,
) -> dict[str, Mapping[str, str]]:
    """Project -> ``index.files(project)`` for each of ``projects`` (each asked once),
    ``workers`` pages at a time. An error is the first failing project's, in the order
    given, as asking one at a time would raise it.

    ``wanted``: the (project, filename) pairs the caller will look up, and nothing else
    of those projects' pages. From ``LISTING_MIN_PROJECTS`` such projects on, an index
    with a one-page listing (``Listing``) is asked for that first: a project whose wanted
    files it lists, every one, gets them from it (those files only) and no page read."""
    names = list(dict.fromkeys(projects))
    found = _from_listing(index, names, wanted)
    rest = [name for name in names if name not in found]
    if len(rest) < 2 or workers < 2:
        found |= {name: index.files(name) for name in rest}
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(rest))) as pool:
            found |= dict(zip(rest, pool.map(index.files, rest), strict=True))
    return {name: found[name] for name in names}


def files_for(index: Index, files: Iterable[tuple[str, str]]) -> dict[str, Mapping[str, str]]:
    """``files_of`` for the (project, filename) pairs ``files``, when the caller looks up
    those files alone: their projects in the order given, each a wanted file of its own."""
    pairs = list(files)
    return files_of(index, (project for project, _ in pairs), wanted=pairs)


def _from_listing(
    index: Index, names: Sequence[str], wanted: Iterable[tuple[str, str]]
) -> dict[str, Mapping[str, str]]:
    """The projects of ``names`` whose wanted files the index's listing holds, each with
    those files (filename -> sha256)."""
    by_project: dict[str, set[str]] = {}
    for project, filename in wanted:
        by_project.setdefault(project, set()).add(filename)
    asked = set(names)
    by_project = {p: f for p, f in by_project.items() if p in asked}
    if len(by_project) < LISTING_MIN_PROJECTS or not isinstance(index, Listing):
        return {}
    listed = index.listing()
    if listed is None:
        return {}
    return {
        project: {f: listed[f] for f in filenames}
        for project, filenames in by_project.items()
        if filenames <= listed.keys()
    }


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
        sleep: Callable[[float], None] = time.sleep,
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
        self._sleep = sleep
        if credentials is not None:
            self._session.auth = credentials.basic
        from pypi_simple import PyPISimple  # noqa: PLC0415 - 0.2 s: see kiln._wheels.wheelhouse

        self._client = PyPISimple(endpoint=self.simple_url, session=self._session)
        self._has_listing = True  # until the index shows it has none

    def _refused(self, status: int | None) -> AuthenticationFailed:
        return refused(
            f"package index {self.simple_url}",
            self._credentials,
            status=status,
            hint=index_hint(self.url),
        )

    def _unavailable(
        self, exc: requests.RequestException, url: str | None = None
    ) -> ServiceUnavailable:
        """No server at the URL, or (the connection lost midway) one failing."""
        if _unreachable(exc):
            return ServiceUnavailable(
                f"package index {self.simple_url} is not reachable ({type(exc).__name__}); "
                "start it with `kiln stack up` or fix the index URL"
            )
        return ServiceUnavailable(
            f"package index {url or self.simple_url} failed while answering "
            f"({type(exc).__name__}), again after retries: the server or the network to it "
            "is failing; re-run when it answers (what is published is kept)"
        )

    def _answered(self, url: str, status: int | None) -> ServiceUnavailable:
        """An answer that is neither the page nor a refusal: a 5xx is the server failing
        (the session tried again already), anything else a URL that is no simple API."""
        if status is not None and status >= 500:
            return ServiceUnavailable(
                f"package index {url} answered {status}, again after {http.RETRIES} retries: "
                "the server is failing; re-run when it answers (what is published is kept)"
            )
        return ServiceUnavailable(
            f"package index {url} answered {status}; "
            "fix the index URL (kiln needs its PEP 503 simple API)"
        )

    def ping(self) -> None:
        try:
            resp = self._session.get(self.simple_url, timeout=_TIMEOUT)
        except requests.RequestException as exc:
            raise self._unavailable(exc) from None
        if resp.status_code in (401, 403):
            raise self._refused(resp.status_code)
        if resp.status_code != 200:
            raise self._answered(self.simple_url, resp.status_code)

    def _page(self, project: str) -> ProjectPage | None:
        """``project``'s simple page (None: no such project). A page cut short, or a
        connection lost after the request, is asked for again (``PAGE_TRIES`` in all):
        the session retries only what fails before an answer begins."""
        from pypi_simple import NoSuchProjectError  # noqa: PLC0415 - (see __init__)

        url = f"{self.simple_url}{project}/"
        for tried in range(PAGE_TRIES):
            try:
                return self._client.get_project_page(project, timeout=_TIMEOUT)
            except NoSuchProjectError:
                return None
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in (401, 403):
                    raise self._refused(status) from None
                raise self._answered(url, status) from None
            except requests.RequestException as exc:
                if _unreachable(exc) or tried + 1 == PAGE_TRIES:
                    raise self._unavailable(exc, url) from None
                self._sleep(0.5 * 2.0**tried)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def listing(self) -> dict[str, str] | None:
        """Filename -> sha256 of every file the index holds, from pypiserver's one-page
        listing (``/packages/``), or None: no such page (asked for once per client), an
        answer that is not such a listing, or a failure (the simple pages then answer,
        and report it). A filename listed twice with different digests is left out."""
        from pypi_simple import ProjectPage  # noqa: PLC0415 - (see __init__)

        if not self._has_listing:
            return None
        url = self.url + "/packages/"
        try:
            resp = self._session.get(url, timeout=_TIMEOUT)
        except requests.RequestException:
            return None
        if resp.status_code != 200 or "html" not in resp.headers.get("Content-Type", ""):
            # none there (404, another kind of page); a refusal or a failure may pass
            self._has_listing = resp.status_code in (401, 403, 429) or resp.status_code >= 500
            return None
        page = ProjectPage.from_html("", resp.content, base_url=url, from_encoding=resp.encoding)
        found: dict[str, str] = {}
        doubtful = set()
        for package in page.packages:
            sha = package.digests.get("sha256", "")
            name = PurePosixPath(package.filename).name
            if not _SHA256.fullmatch(sha):
                self._has_listing = False  # links without digests: not a listing kiln can use
                return None
            if found.setdefault(name, sha) != sha:
                doubtful.add(name)
        return {name: sha for name, sha in found.items() if name not in doubtful}

    def files(self, project: str) -> dict[str, str]:
        page = self._page(project)
        if page is None:
            return {}
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
        for tried in range(UPLOAD_TRIES):
            if tried:  # what an earlier try stored is not sent again (the caller checks it)
                paths = [p for p in paths if not self._stored(p)]
                if not paths:
                    return
            try:
                self._twine(paths)
            except CommandFailed as exc:
                found = _TWINE_REFUSED.search(exc.output)
                if found:
                    raise self._refused(int(found.group(1))) from None
                transient = _TWINE_TRANSIENT.search(exc.output)
                if transient is None:
                    raise
                if tried + 1 == UPLOAD_TRIES:
                    what = (
                        f"answered {transient.group(1)}"
                        if transient.group(1)
                        else f"failed ({transient.group(2)})"
                    )
                    raise ServiceUnavailable(
                        f"package index {self.upload_url} {what} to the upload, "
                        f"{UPLOAD_TRIES} times: the server is failing; re-run when it answers "
                        "(files it stored are kept and skipped)"
                    ) from None
                self._sleep(2.0**tried)
            else:
                return

    def _stored(self, path: Path) -> bool:
        """Whether the index lists a file named as ``path`` (a wheel, or an sdist)."""
        name = path.name
        project = name.split("-")[0] if name.endswith(".whl") else name.rsplit("-", 1)[0]
        return name in self.files(project)

    def _twine(self, paths: Sequence[Path]) -> None:
        """One `twine upload` of ``paths``."""
        username, password = self._credentials.basic if self._credentials else _ANONYMOUS
        self._runner(
            [
                sys.executable, "-m", "twine", "upload", "--non-interactive",
                "--disable-progress-bar", "--repository-url", self.upload_url,
                *(["--cert", str(self._ca_bundle)] if self._ca_bundle else []),
                *(str(p) for p in paths),
            ],
            env={"TWINE_USERNAME": username, "TWINE_PASSWORD": password},
        )  # fmt: skip
