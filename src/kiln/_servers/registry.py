"""The registry client: all registry traffic goes through ``RegistryClient``.

Identity of a pushed image is the manifest digest the registry returns
(``Docker-Content-Digest``), and its recorded inputs are the labels in its
config blob; kiln never guesses from error text.

Authentication follows the registry's 401 challenge: ``Basic`` (htpasswd) sends
the credentials with every later request; ``Bearer`` (the Docker Registry v2
token spec) gets a token from the challenge's realm with the credentials, keeps
it per scope for the client's life, and retries the request once with it.

Pushing (kiln's OCI builder): ``blob_exists`` before ``upload_blob`` (monolithic:
POST a session, PUT the bytes with their digest, which the registry checks), then
``put_manifest``. Those and every read are retried (1, 2, 4 s apart) on a connection
error or a 502/503/504, a push on any 5xx (it names its digest: idempotent; two pushes
committing one blob get a 500 from distribution), a manifest read on a 500 (the HEAD of a
tag another release is putting), never a 4xx.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode, urljoin

import requests

from kiln._errors import (
    AuthenticationFailed,
    CommandFailed,
    ConfigError,
    KilnError,
    ServiceUnavailable,
)
from kiln._servers.credentials import (
    REGISTRY_PASSWORD,
    REGISTRY_USERNAME,
    Credentials,
    refused,
    registry_hint,
)
from kiln._servers.registry_wire import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    WRITES,
    challenge,
    default_scheme,
)
from kiln._servers.registry_wire import (
    scope as scope_of,
)
from kiln._util import http

_TIMEOUT = 30.0
_TRANSIENT_STATUSES = frozenset({502, 503, 504})
_T = TypeVar("_T")


class _Transient(ServiceUnavailable):
    """A connection error or a 5xx answer: worth another try."""


class Registry(Protocol):
    host: str

    def digest(self, repository: str, tag: str) -> str | None: ...

    def labels(self, repository: str, tag: str) -> dict[str, str]: ...

    def manifest(self, repository: str, reference: str, *, lists: bool = False) -> bytes: ...

    def blob_exists(self, repository: str, digest: str) -> bool: ...


class RegistryClient:
    """A Docker Registry HTTP API v2 at ``host`` (``127.0.0.1:5765``), plain HTTP on loopback.

    ``credentials`` answer a 401 (Basic or Bearer token); without them a Bearer
    registry is asked for an anonymous token."""

    def __init__(
        self,
        host: str,
        *,
        scheme: str | None = None,
        credentials: Credentials | None = None,
        ca_bundle: Path | None = None,
        session: requests.Session | None = None,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``ca_bundle``: the CA certificates to trust (a TLS-inspecting proxy's).
        ``session``: the transport (tests), else ``kiln._util.http.session``'s, which
        retries nothing: this client retries itself, writes too (``retries``)."""
        if "@" in host or "/" in host:
            raise ConfigError(
                f"registry {host.rsplit('@', 1)[-1]!r}: give HOST[:PORT] only, without a scheme, "
                f"a path or credentials (credentials: {REGISTRY_USERNAME}/{REGISTRY_PASSWORD} "
                "or docker's config)"
            )
        self.host = host
        self._base = f"{scheme or default_scheme(host)}://{host}/v2"
        self._session = session or http.session(ca_bundle, retries=0)
        self._credentials = credentials
        self._basic = False  # the registry asked for Basic: send it with every request
        self._tokens: dict[str, str] = {}  # scope -> Bearer token
        self._retries = retries  # for pushes: tries after the first, 1 s, 2 s, 4 s... apart
        self._sleep = sleep

    # ------------------------------------------------------------ transport
    def _refused(self, status: int | None) -> AuthenticationFailed:
        return refused(
            f"registry {self.host}", self._credentials, status=status, hint=registry_hint(self.host)
        )

    def _unreachable(self, what: str, exc: Exception) -> ServiceUnavailable:
        if isinstance(exc, requests.ConnectTimeout) or "NewConnectionError" in str(exc):
            fix = "is not reachable ({}); start it with `kiln stack up` or fix the registry address"
        else:  # a connection lost midway
            fix = "failed while answering ({}): it, or the network to it, is failing; re-run"
        return _Transient(f"{what} {fix.format(type(exc).__name__)}")

    def _send(
        self, method: str, url: str, accept: str | None, token: str | None, *,
        body: Path | bytes | None = None, content_type: str | None = None, stream: bool = False,
    ) -> requests.Response:  # fmt: skip
        headers = {"Accept": accept} if accept else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        auth = self._credentials.basic if self._basic and self._credentials else None
        try:
            if isinstance(body, Path):  # opened per request: a retry sends it whole again
                with body.open("rb") as data:
                    return self._session.request(
                        method, url, headers=headers, auth=auth, data=data, timeout=_TIMEOUT
                    )
            return self._session.request(
                method,
                url,
                headers=headers,
                auth=auth,
                data=body,
                timeout=_TIMEOUT,
                stream=stream,
            )
        except requests.RequestException as exc:
            raise self._unreachable(f"registry {self.host}", exc) from None

    def _token(self, params: dict[str, str], scope: str) -> str:
        """A Bearer token from the challenge's realm, with the credentials if any."""
        realm = params.get("realm")
        if not realm:
            raise ServiceUnavailable(
                f"registry {self.host} asked for a Bearer token but named no realm to get it from"
            )
        query = {"service": params.get("service"), "scope": params.get("scope") or scope or None}
        auth = self._credentials.basic if self._credentials else None
        try:
            resp = self._session.get(realm, params=query, auth=auth, timeout=_TIMEOUT)
        except requests.RequestException as exc:
            raise self._unreachable(f"token service {realm} of registry {self.host}", exc) from None
        if resp.status_code in (401, 403):
            raise self._refused(resp.status_code)
        try:
            body = resp.json() if resp.status_code == 200 else {}
        except ValueError:
            body = {}
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ServiceUnavailable(
                f"token service {realm} of registry {self.host} answered {resp.status_code} "
                "without a token; check the registry's token service"
            )
        self._tokens[scope] = token
        return token

    def _request(
        self,
        url: str,
        *,
        method: str = "GET",
        accept: str | None = None,
        body: Path | bytes | None = None,
        content_type: str | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request, authenticated as the registry asks; never a 401/403 or a 5xx."""
        scope = scope_of(url, method)
        token = self._tokens.get(scope)

        def send(token: str | None) -> requests.Response:
            return self._send(
                method, url, accept, token, body=body, content_type=content_type, stream=stream
            )

        resp = send(token)
        if resp.status_code == 401:
            self._tokens.pop(scope, None)  # a cached token may have expired
            kind, params = challenge(resp.headers.get("WWW-Authenticate", ""))
            if kind == "bearer":
                resp = send(self._token(params, scope))
            elif kind == "basic" and self._credentials and not self._basic:
                self._basic = True
                resp = send(None)
        if resp.status_code in (401, 403):
            raise self._refused(resp.status_code)
        if resp.status_code >= 500:  # 502/503/504, any 5xx to a push, 500 to a manifest
            # read: distribution answers 500 to a HEAD of a tag another release is putting
            again = (
                resp.status_code in _TRANSIENT_STATUSES
                or method in WRITES
                or (resp.status_code == 500 and "/manifests/" in url)
            )
            error = _Transient if again else ServiceUnavailable
            raise error(str(self._unexpected(method, url, resp)))
        return resp

    def _read(self, url: str, **options: Any) -> requests.Response:  # a GET or a HEAD
        return self._retrying(lambda: self._request(url, **options))

    def _unexpected(self, method: str, url: str, resp: requests.Response) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"registry {self.host}: {method} {url} answered {resp.status_code}; "
            "check the registry's log"
        )

    # ------------------------------------------------------------ API
    def ping(self) -> None:
        """The registry answers the v2 API, with kiln's credentials when it needs them."""
        url = f"{self._base}/"
        resp = self._read(url)
        if resp.status_code != 200:
            raise ServiceUnavailable(
                f"registry {self.host} answered {url} with {resp.status_code}: not a Docker "
                "Registry v2 API; fix the registry address"
            )

    def digest(self, repository: str, tag: str) -> str | None:
        """The manifest (or image index) digest behind ``repository:tag``, or None if the
        tag does not exist."""
        url = f"{self._base}/{repository}/manifests/{tag}"
        resp = self._read(url, method="HEAD", accept=f"{MANIFEST_TYPES}, {INDEX_TYPES}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200 or "Docker-Content-Digest" not in resp.headers:
            raise ServiceUnavailable(
                f"registry {self.host}: HEAD {url} answered {resp.status_code} without a digest"
            )
        return resp.headers["Docker-Content-Digest"]

    def labels(self, repository: str, tag: str) -> dict[str, str]:
        """The labels recorded in the image config of ``repository:tag`` (of an image
        index: its first manifest's, the first platform's)."""
        manifest = json.loads(self.manifest(repository, tag, lists=True))
        if "manifests" in manifest:  # an image index
            manifest = json.loads(self.manifest(repository, manifest["manifests"][0]["digest"]))
        config_digest = manifest["config"]["digest"]
        blob_url = f"{self._base}/{repository}/blobs/{config_digest}"
        blob = self._read(blob_url)
        if blob.status_code != 200:
            raise self._unexpected("GET", blob_url, blob)
        config = json.loads(blob.content).get("config") or {}
        return dict(config.get("Labels") or {})

    def catalog(self) -> list[str]:
        url = f"{self._base}/_catalog"
        resp = self._read(url)
        if resp.status_code != 200:
            raise self._unexpected("GET", url, resp)
        return list(resp.json().get("repositories") or [])

    # ------------------------------------------------------------ pushing
    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        """``attempt()``, tried again after a connection error or a 5xx answer."""
        for tried in range(self._retries):
            try:
                return attempt()
            except _Transient:
                self._sleep(2.0**tried)
        return attempt()

    def _refused_content(self, what: str, url: str, resp: requests.Response) -> CommandFailed:
        """A 4xx answer to a push, with the registry's error codes (e.g. DIGEST_INVALID)."""
        try:
            errors = resp.json().get("errors") or []
            said = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            said = ""
        return CommandFailed(
            f"registry {self.host} refused {what} ({resp.request.method} {url} answered "
            f"{resp.status_code}{': ' + said if said else ''}); check the registry's log"
        )

    def blob_exists(self, repository: str, digest: str) -> bool:
        url = f"{self._base}/{repository}/blobs/{digest}"

        def head() -> bool:
            resp = self._request(url, method="HEAD")
            if resp.status_code not in (200, 404):
                raise self._unexpected("HEAD", url, resp)
            return resp.status_code == 200

        return self._retrying(head)

    def upload_blob(self, repository: str, digest: str, content: Path | bytes) -> None:
        """Upload ``content`` (a file or bytes) whose sha256 is ``digest``, in one PUT."""
        start = f"{self._base}/{repository}/blobs/uploads/"

        def upload() -> None:
            resp = self._request(start, method="POST")
            if resp.status_code != 202 or "Location" not in resp.headers:
                raise self._refused_content(f"an upload to {repository}", start, resp)
            location = urljoin(start, resp.headers["Location"])
            query = urlencode({"digest": digest})
            url = f"{location}{'&' if '?' in location else '?'}{query}"
            resp = self._request(
                url, method="PUT", body=content, content_type="application/octet-stream"
            )
            if resp.status_code != 201:
                raise self._refused_content(f"blob {digest} of {repository}", url, resp)

        self._retrying(upload)

    def put_manifest(
        self, repository: str, reference: str, manifest: bytes, media_type: str
    ) -> str:
        """PUT ``manifest`` (its exact bytes) as ``repository:reference``; the digest the
        registry answers (``Docker-Content-Digest``)."""
        url = f"{self._base}/{repository}/manifests/{reference}"

        def put() -> str:
            resp = self._request(url, method="PUT", body=manifest, content_type=media_type)
            if resp.status_code != 201:
                raise self._refused_content(f"the manifest of {repository}:{reference}", url, resp)
            digest = resp.headers.get("Docker-Content-Digest")
            if not digest:
                raise ServiceUnavailable(
                    f"registry {self.host}: PUT {url} answered 201 without a "
                    "Docker-Content-Digest; kiln cannot check what it stored"
                )
            return digest

        return self._retrying(put)

    def manifest(self, repository: str, reference: str, *, lists: bool = False) -> bytes:
        """The manifest bytes of ``repository:reference`` (a tag or a digest); with
        ``lists``, a manifest list (index) is accepted as well."""
        url = f"{self._base}/{repository}/manifests/{reference}"
        accept = f"{MANIFEST_TYPES}, {INDEX_TYPES}" if lists else MANIFEST_TYPES
        resp = self._read(url, accept=accept)
        if resp.status_code == 404:
            raise ConfigError(
                f"registry {self.host} has no {repository}:{reference}; check the reference "
                "(image.toml's base, or the digest its lock pins: `kiln lock` pins it again)"
            )
        if resp.status_code != 200:
            raise self._unexpected("GET", url, resp)
        return resp.content

    def download_blob(self, repository: str, digest: str, target: Path) -> int:
        """Stream blob ``digest`` into ``target`` (checked against the digest); its size."""
        url = f"{self._base}/{repository}/blobs/{digest}"

        def get() -> int:
            resp = self._request(url, stream=True)
            if resp.status_code != 200:
                raise self._unexpected("GET", url, resp)
            hasher = hashlib.sha256()
            size = 0
            try:
                with target.open("wb") as out:
                    for chunk in resp.iter_content(1 << 20):
                        hasher.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            except requests.RequestException as exc:
                raise _Transient(str(self._unreachable(f"GET {url}", exc))) from None
            if f"sha256:{hasher.hexdigest()}" != digest:
                raise CommandFailed(
                    f"registry {self.host}: blob {digest} of {repository} arrived with sha256 "
                    f"{hasher.hexdigest()}; the registry's storage is damaged or a proxy "
                    "altered it: check the registry"
                )
            return size

        return self._retrying(get)

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Ask the registry to link blob ``digest`` of ``source`` into ``repository``
        (cross-repository mount: no bytes sent); whether it did."""
        query = urlencode({"mount": digest, "from": source})
        url = f"{self._base}/{repository}/blobs/uploads/?{query}"

        def post() -> bool:
            resp = self._request(url, method="POST")
            if resp.status_code == 201:
                return True
            if resp.status_code == 202:  # no mount: an upload session was opened instead
                location = resp.headers.get("Location")
                if location:
                    with contextlib.suppress(KilnError):
                        self._request(urljoin(url, location), method="DELETE")
                return False
            raise self._refused_content(f"a mount of {digest} into {repository}", url, resp)

        return self._retrying(post)
