"""Transient faults (a connection error, a 502/503/504) are tried again, boundedly and
with backoff; a 4xx never is; a server that keeps failing is a service fault (exit 5)
naming the URL and its answer, never "fix the URL". Fake transports and runners: the
real servers behind a faulty proxy are tests/e2e/faults."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import requests

from kiln._errors import CommandFailed, ServiceUnavailable
from kiln._servers.index import UPLOAD_TRIES, IndexClient
from kiln._servers.registry import RegistryClient
from kiln._util import http
from tests.unit.test_credentials import FakeTransport, session_with
from tests.unit.test_seams import _retry_of

DIGEST = "sha256:" + "ab" * 32


class FlakyTwine:
    """twine failing with each of ``outputs`` in turn, then succeeding."""

    def __init__(self, *outputs: str) -> None:
        self.outputs = list(outputs)
        self.args: list[list[str]] = []

    def __call__(
        self, args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        self.args.append(list(args))
        if self.outputs:
            raise CommandFailed("twine failed", returncode=1, output=self.outputs.pop(0))
        return ""


UNAVAILABLE = "ERROR    HTTPError: 503 Service Unavailable from http://index.test/\n"
RESET = "ERROR    ConnectionError: ('Connection aborted.', ConnectionResetError(104))\n"


def _index(twine: FlakyTwine, listed: str = "", sleeps: list[float] | None = None) -> IndexClient:
    """An index whose simple pages list ``listed`` (a filename), uploading with ``twine``."""

    def page(_request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if not listed:
            return 404, {}, b""
        link = f'<a href="../../packages/{listed}#sha256={"ab" * 32}">{listed}</a>'
        return 200, {"Content-Type": "text/html"}, f"<html><body>{link}</body></html>".encode()

    return IndexClient(
        "http://index.test",
        runner=twine,
        session=session_with(FakeTransport(page)),
        sleep=(sleeps if sleeps is not None else []).append,
    )


def test_a_transient_upload_failure_is_tried_again_with_what_is_not_stored(
    tmp_path: Path,
) -> None:
    twine = FlakyTwine(UNAVAILABLE, RESET)
    sleeps: list[float] = []
    _index(twine, sleeps=sleeps).upload([tmp_path / "acme_a-1.0-py3-none-any.whl"])
    assert len(twine.args) == 3
    assert sleeps == [1.0, 2.0]
    # a try that stored the file, though its answer was lost: not sent again
    stored = FlakyTwine(RESET)
    _index(stored, listed="acme_a-1.0-py3-none-any.whl").upload(
        [tmp_path / "acme_a-1.0-py3-none-any.whl", tmp_path / "acme_b-1.0-py3-none-any.whl"]
    )
    a, b = (str(tmp_path / f"acme_{n}-1.0-py3-none-any.whl") for n in "ab")
    assert [arg for arg in stored.args[0] if arg.endswith(".whl")] == [a, b]
    assert [arg for arg in stored.args[1] if arg.endswith(".whl")] == [b]


def test_an_upload_failing_every_time_is_a_service_fault_naming_url_and_status(
    tmp_path: Path,
) -> None:
    twine = FlakyTwine(*[UNAVAILABLE] * 30)
    with pytest.raises(ServiceUnavailable) as err:
        _index(twine).upload([tmp_path / "acme_a-1.0-py3-none-any.whl"])
    assert len(twine.args) == UPLOAD_TRIES
    assert "package index http://index.test/ answered 503 to the upload" in str(err.value)
    assert "fix the index URL" not in str(err.value)
    assert err.value.exit_code == 5


def test_a_4xx_upload_is_never_tried_again(tmp_path: Path) -> None:
    twine = FlakyTwine("ERROR    HTTPError: 409 Conflict from http://index.test/\n")
    with pytest.raises(CommandFailed):
        IndexClient("http://index.test", runner=twine, sleep=lambda _s: None).upload(
            [tmp_path / "a.whl"]
        )
    assert len(twine.args) == 1


def test_an_index_answering_5xx_is_a_service_fault_without_url_advice() -> None:
    transport = FakeTransport(lambda _r: (503, {}, b""))
    index = IndexClient("http://index.test", session=session_with(transport))
    for call in (index.ping, lambda: index.files("acme-x")):
        with pytest.raises(ServiceUnavailable) as err:
            call()
        assert "answered 503" in str(err.value)
        assert "fix the index URL" not in str(err.value)
    with pytest.raises(ServiceUnavailable, match="answered 404; fix the index URL"):
        IndexClient(
            "http://index.test", session=session_with(FakeTransport(lambda _r: (404, {}, b"")))
        ).ping()


def _answers(*statuses: int) -> FakeTransport:
    left = list(statuses)

    def handle(_request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        status = left.pop(0) if left else 200
        return status, ({"Docker-Content-Digest": DIGEST} if status == 200 else {}), b""

    return FakeTransport(handle)


def test_registry_reads_are_tried_again_on_502_503_504() -> None:
    transport = _answers(503, 502, 504)
    sleeps: list[float] = []
    reg = RegistryClient("reg.test", session=session_with(transport), sleep=sleeps.append)
    assert reg.digest("acme/base", "1.0") == DIGEST
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(transport.seen) == 4


def test_a_manifest_read_answered_500_is_tried_again() -> None:
    """Two releases of one tag at once: distribution answered one's HEAD of the tag the
    other was putting (an index) with 500 (CI saw it); a moment later it answers."""
    transport = _answers(500)
    sleeps: list[float] = []
    reg = RegistryClient("reg.test", session=session_with(transport), sleep=sleeps.append)
    assert reg.digest("acme/base", "1.0") == DIGEST
    assert sleeps == [1.0]


@pytest.mark.parametrize("status", [400, 404])
def test_registry_reads_are_not_tried_again_on_other_answers(status: int) -> None:
    transport = _answers(status)
    sleeps: list[float] = []
    reg = RegistryClient("reg.test", session=session_with(transport), sleep=sleeps.append)
    with contextlib.suppress(ServiceUnavailable):  # 404: no such tag; the others: a fault
        reg.digest("acme/base", "1.0")
    assert sleeps == []
    assert len(transport.seen) == 1


def test_the_session_tries_a_read_again_after_a_lost_connection_boundedly() -> None:
    retry = _retry_of(http.session())
    assert retry.read == 1  # a dropped or reset connection: once more, GET/HEAD only
    assert retry.total == retry.connect == retry.status == http.RETRIES == 3
    assert retry.backoff_factor > 0
    assert not retry.is_retry("GET", 429)
    assert not retry.is_retry("GET", 404)


def test_a_push_answered_500_is_tried_again_a_read_is_not() -> None:
    """Two releases pushing one blob at once: distribution answers the loser's PUT 500.
    A push names its digest (idempotent), so it is tried again (so is a manifest read:
    ``test_a_manifest_read_answered_500_is_tried_again``)."""
    sleeps: list[float] = []
    answers = iter([500, 201])

    def handle(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        return next(answers), {"Docker-Content-Digest": DIGEST}, b""

    transport = FakeTransport(handle)
    reg = RegistryClient("reg.test", session=session_with(transport), sleep=sleeps.append)
    assert reg.put_manifest("acme/base", "1.0", b"{}", "application/json") == DIGEST
    assert [r.method for r in transport.seen] == ["PUT", "PUT"]
    assert sleeps == [1.0]
