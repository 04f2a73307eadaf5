"""The one way kiln makes an HTTP session.

Every client of kiln's (the index, the registry, upstream simple pages, Debian's
mirrors, the base pinner) talks through a ``session``: it trusts the CA bundle kiln
was given (``Options.ca_bundle``: a TLS-inspecting proxy's CA), sends ``credentials``
with every request when given some, gives up on a request after ``timeout``
seconds unless the call names its own, and tries an idempotent read again on a
connection error or a 502/503/504 answer (a connection lost after the request was
sent: once), ``RETRIES`` times at most, backing off between tries (0, 0.5, 1 s); a 4xx
never. Writes are never sent twice by the session: a client that retries them does it
itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

TIMEOUT = 30.0
RETRIES = 3
# urllib3 retries at once, then waits _BACKOFF * 2**(n - 1) s before retry n: 0, 0.5, 1 s.
_BACKOFF = 0.25
_READ_RETRIES = 1
_RETRY_STATUSES = frozenset({502, 503, 504})
_IDEMPOTENT_READS = frozenset({"GET", "HEAD"})


class _Adapter(HTTPAdapter):
    """requests' adapter, with a timeout for every request that names none, and kiln's
    CA bundle for every request when it has one. (A session's ``verify`` is not enough:
    requests lets REQUESTS_CA_BUNDLE in the environment override it, while kiln's bundle
    was chosen from PIP_CERT first.)"""

    def __init__(self, *, timeout: float, retries: int, ca_bundle: Path | None) -> None:
        retry = Retry(
            total=retries,
            connect=retries,
            # A connection dropped or reset after the request went out: once more (only
            # reads are retried, which change nothing; once, so that a server that hangs
            # costs two timeouts, not four).
            read=_READ_RETRIES,
            status=retries,
            status_forcelist=_RETRY_STATUSES,
            allowed_methods=_IDEMPOTENT_READS,
            backoff_factor=_BACKOFF,
            raise_on_status=False,  # the last answer goes to the client, which names it
            respect_retry_after_header=False,  # a server's "come back in an hour" is a failure
        )
        super().__init__(max_retries=retry)
        self._timeout = timeout
        self._verify = str(ca_bundle) if ca_bundle is not None else None

    def send(  # type: ignore[override]  # requests' own signature, typed loosely
        self, request: requests.PreparedRequest, timeout: Any = None, **kwargs: Any
    ) -> requests.Response:
        chosen = self._timeout if timeout is None else timeout
        if self._verify is not None:
            kwargs["verify"] = self._verify
        return super().send(request, timeout=chosen, **kwargs)


def session(
    ca_bundle: Path | None = None,
    *,
    credentials: tuple[str, str] | None = None,
    retries: int = RETRIES,
    timeout: float = TIMEOUT,
) -> requests.Session:
    """A session trusting ``ca_bundle`` (None: the system's CAs), sending
    ``credentials`` (user, password) as Basic auth with every request, retrying reads
    ``retries`` times and waiting at most ``timeout`` seconds by default."""
    made = requests.Session()
    adapter = _Adapter(timeout=timeout, retries=retries, ca_bundle=ca_bundle)
    made.mount("http://", adapter)
    made.mount("https://", adapter)
    if credentials is not None:
        made.auth = credentials
    return made


def answers(url: str, *, timeout: float) -> bool:
    """Whether ``url`` answers 200 within ``timeout`` seconds, asked once (a probe that
    a caller repeats itself)."""
    with session(retries=0, timeout=timeout) as probe:
        try:
            return probe.get(url).status_code == 200
        except requests.RequestException:
            return False
