"""The shell-out runner, credential stripping, the engine kiln connects to, and service
errors that need no network."""

from __future__ import annotations

import gc
import http.server
import json
import signal
import socketserver
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from kiln._context import Context, Target, connect
from kiln._debian.archive import Mirrors
from kiln._debian.config import OsConfig
from kiln._errors import CommandFailed, ConfigError, ServiceUnavailable
from kiln._locking.tools import base_pinner
from kiln._options import Options
from kiln._report import Reporter
from kiln._servers.index import IndexClient
from kiln._servers.registry import RegistryClient
from kiln._servers.stack import LocalStack
from kiln._util import http as kiln_http
from kiln._util.cmd import CalledProcessError, ask, call, hook_runner
from kiln._util.docker import docker_client
from kiln._util.git import strip_credentials
from kiln._wheels.wheelhouse import PipDownload, SimplePages
from kiln._workspace.discovery import discover
from kiln._workspace.model import StackConfig
from tests import factory
from tests.unit.cli import run


def test_call_echoes_and_returns_output(capsys: pytest.CaptureFixture[str]) -> None:
    out = call([sys.executable, "-c", "print('hello')"], echo=True)
    assert out == "hello\n"
    assert "$ " in capsys.readouterr().err
    call([sys.executable, "-c", "print('quiet')"])  # library code prints nothing by default
    assert capsys.readouterr().err == ""


def test_call_never_echoes_env_values(capsys: pytest.CaptureFixture[str]) -> None:
    out = call(
        [sys.executable, "-c", "import os; print(len(os.environ['TOKEN']))"],
        env={"TOKEN": "s3cr3t-value"},
        echo=True,
    )
    assert out == "12\n"
    assert "s3cr3t-value" not in capsys.readouterr().err


def test_call_failure_carries_code_and_tail() -> None:
    script = "import sys; print('\\n'.join(f'line {i}' for i in range(100))); sys.exit(3)"
    with pytest.raises(CommandFailed) as err:
        call([sys.executable, "-c", script], echo=False)
    assert err.value.returncode == 3
    message = str(err.value)
    assert "failed with exit code 3" in message
    assert "line 99" in message
    assert "line 10\n" not in message  # only the tail


def test_call_missing_executable() -> None:
    with pytest.raises(CommandFailed, match=r"`no-such-tool-kiln` was not found on PATH"):
        call(["no-such-tool-kiln"])


def test_ask_keeps_the_streams_apart_and_leaves_the_exit_code_to_the_caller() -> None:
    script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(1)"
    done = ask([sys.executable, "-c", script])
    assert (done.returncode, done.stdout, done.stderr) == (1, "out\n", "err\n")


def test_the_build_backend_s_runner_adds_its_environment_and_fails_as_build_expects() -> None:
    # build names the failing hook for a CalledProcessError and keeps its output.
    script = "import os, sys; print(os.environ['HOOK_VALUE']); sys.exit(2)"
    with pytest.raises(CalledProcessError) as err:
        hook_runner([sys.executable, "-c", script], extra_environ={"HOOK_VALUE": "given"})
    assert (err.value.returncode, err.value.output) == (2, b"given\n")


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://user:ghp_token@github.com/acme/ml.git", "https://github.com/acme/ml.git"),
        ("https://x-access-token:abc@github.com/a/b", "https://github.com/a/b"),
        ("https://github.com/a/b", "https://github.com/a/b"),
        ("git@github.com:a/b.git", "git@github.com:a/b.git"),
    ],
)
def test_strip_credentials(url: str, clean: str) -> None:
    assert strip_credentials(url) == clean


def test_unreachable_docker_engine(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailable) as err:
        docker_client(f"unix://{tmp_path}/docker.sock")
    gc.collect()  # a leaked socket would surface here as an error (filterwarnings = error)
    assert f"Docker Engine is not reachable at unix://{tmp_path}/docker.sock" in str(err.value)
    assert "DOCKER_HOST" in str(err.value)


def test_stack_status_of_a_never_started_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No network in unit tests: every probe fails as "not answering".
    monkeypatch.setattr("kiln._servers.stack._answers", lambda url: False)
    stack = LocalStack(StackConfig(index_port=1, registry_port=2), tmp_path)
    statuses = stack.status()
    assert [(s.name, s.running, s.pid) for s in statuses] == [
        ("index", False, None),
        ("registry", False, None),
    ]
    assert [s.detail for s in statuses] == ["", ""]


def test_stack_status_names_a_server_it_did_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kiln._servers.stack._answers", lambda url: True)
    stack = LocalStack(StackConfig(index_port=1, registry_port=2), tmp_path)
    assert {s.detail for s in stack.status()} == {"not started by this checkout's kiln"}


def test_stack_refuses_a_port_taken_by_something_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kiln._servers.stack._answers", lambda url: False)
    monkeypatch.setattr("kiln._servers.stack._port_open", lambda host, port: True)
    stack = LocalStack(StackConfig(index_port=8765, registry_port=5765), tmp_path)
    with pytest.raises(ServiceUnavailable) as err:
        stack.up()
    assert "port 127.0.0.1:8765 is taken by something that is not an index" in str(err.value)
    assert "[tool.kiln.stack] index-port" in str(err.value)
    assert not (tmp_path / "state.json").exists()


def test_stack_down_stops_every_process_it_started(tmp_path: Path) -> None:
    stack = LocalStack(StackConfig(index_port=1, registry_port=2), tmp_path)
    procs = [
        subprocess.Popen(["sleep", "60"], start_new_session=True),
        subprocess.Popen(["sleep", "60"], start_new_session=True),
    ]
    state = {"index": {"pid": procs[0].pid}, "registry": {"pid": procs[1].pid}}
    (tmp_path / "state.json").write_text(json.dumps(state))

    stack.down()

    assert [p.wait(timeout=10) for p in procs] == [-signal.SIGTERM, -signal.SIGTERM]
    assert json.loads((tmp_path / "state.json").read_text()) == {}


def test_stack_up_refuses_a_server_it_did_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kiln._servers.stack._answers", lambda url: True)
    stack = LocalStack(StackConfig(index_port=8765, registry_port=5765), tmp_path)
    with pytest.raises(ServiceUnavailable) as err:
        stack.up()
    assert "http://127.0.0.1:8765/simple/ already answers, but this checkout did not start it" in (
        str(err.value)
    )


@dataclass
class _Transport:
    """Every request kiln's HTTP clients send, answered at the transport (no socket): 404,
    or from a host in ``basic`` a Basic challenge while it brings no credentials. Per
    URL, what the request was sent with."""

    sent: dict[str, dict[str, object]] = field(default_factory=dict)
    basic: frozenset[str] = frozenset()
    found: frozenset[str] = frozenset()  # URLs answered 200

    def __call__(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        auth = request.headers.get("Authorization")
        self.sent[str(request.url)] = {**kwargs, "auth": auth}
        answer = requests.Response()
        answer.url, answer.request = str(request.url), request
        answer.status_code = 200 if request.url in self.found else 404
        if urlsplit(str(request.url)).hostname in self.basic and auth is None:
            answer.status_code = 401
            answer.headers["WWW-Authenticate"] = 'Basic realm="registry"'
        answer._content = b""
        return answer


def test_the_ca_bundle_reaches_every_https_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind a TLS-inspecting proxy, PIP_CERT names its CA; requests and twine must hear it too.
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    # kiln chose PIP_CERT's bundle; requests alone would let this one override it.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "system-ca.pem"))
    transport = _Transport(basic=frozenset({"base.invalid"}))
    monkeypatch.setattr(HTTPAdapter, "send", transport)
    uploads: list[list[str]] = []

    def runner(args: Sequence[str], **_: object) -> str:
        uploads.append(list(args))
        return ""

    index = IndexClient("https://index.invalid", runner=runner, ca_bundle=bundle)
    assert index.files("a") == {}
    index.upload([tmp_path / "a-1.0-py3-none-any.whl"])
    (argv,) = uploads
    assert argv[argv.index("--cert") + 1] == str(bundle)
    assert SimplePages("https://pypi.invalid/simple", ca_bundle=bundle).files("a") == {}
    registry = RegistryClient("registry.invalid", ca_bundle=bundle)
    assert registry.digest("a/b", "1.0") is None
    mirrors = Mirrors(
        OsConfig(mirrors=(("debian", ("https://deb.invalid/debian",)),)), ca_bundle=bundle
    )
    assert mirrors.has("debian", "dists/bookworm/InRelease") is False
    download = PipDownload(
        ca_bundle=bundle, credentials={"https://own.invalid/simple/": ("u", "p")}
    )
    with pytest.raises(ServiceUnavailable):
        download.fetch_file(
            "a", "a-1.0.tar.gz", "0" * 64, index_url="https://own.invalid/simple/", dest=tmp_path
        )

    # kiln lock's base pinner: the base's registry, asked with its credentials.
    options = Options(
        ca_bundle=bundle, docker_host=f"unix://{tmp_path}/no-engine.sock",
        env={"KILN_REGISTRY_USERNAME": "u", "KILN_REGISTRY_PASSWORD": "p"},
    )  # fmt: skip
    with pytest.raises(ConfigError):  # no such base here, nor an engine to ask
        base_pinner(options, Reporter.null()).pin("base.invalid/a/b:1.0", "images/b/image.toml")

    hosts = {urlsplit(url).hostname for url in transport.sent}
    assert hosts == {
        "index.invalid", "pypi.invalid", "registry.invalid", "deb.invalid", "own.invalid",
        "base.invalid",
    }  # fmt: skip
    for url, sent in transport.sent.items():
        assert sent["verify"] == str(bundle), url
        assert sent["timeout"] is not None, url  # no request may wait forever
    # u:p, the private index's and the base registry's credentials
    assert transport.sent["https://own.invalid/simple/a/"]["auth"] == "Basic dTpw"
    assert transport.sent["https://base.invalid/v2/a/b/manifests/1.0"]["auth"] == "Basic dTpw"


def _retry_of(session: requests.Session) -> Retry:
    adapter = session.get_adapter("https://any.invalid/")
    assert isinstance(adapter, HTTPAdapter)
    return adapter.max_retries


def test_the_wiring_gives_the_clients_the_ca_bundle_and_options_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = discover(factory.sample(tmp_path / "repo"))
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    found = {"https://index.invalid/simple/", "https://registry.invalid/v2/"}
    transport = _Transport(found=frozenset(found))
    monkeypatch.setattr(HTTPAdapter, "send", transport)
    monkeypatch.setenv("KILN_INDEX_USERNAME", "not-read")  # the process's: Options has its own
    env = {"KILN_INDEX_USERNAME": "u", "KILN_INDEX_PASSWORD": "p", "HOME": str(tmp_path)}
    ctx = Context(Options(ca_bundle=bundle, env=env), Reporter.null())
    target = Target(local=False, index="https://index.invalid", registry="registry.invalid")

    services = connect(ws, ctx, target, images=False)
    assert services.upstream_pages("https://pypi.invalid/simple").files("a") == {}

    assert {url: (sent["verify"], sent["auth"]) for url, sent in transport.sent.items()} == {
        "https://index.invalid/simple/": (str(bundle), "Basic dTpw"),  # u:p
        "https://registry.invalid/v2/": (str(bundle), None),  # asked for none
        "https://pypi.invalid/simple/a/": (str(bundle), None),
    }


def test_the_http_session_retries_idempotent_reads_only() -> None:
    retry = _retry_of(kiln_http.session())
    assert retry.total == kiln_http.RETRIES
    assert [retry.is_retry(m, s) for m, s in (("GET", 503), ("HEAD", 502), ("GET", 504))] == [
        True, True, True,
    ]  # fmt: skip
    # Not a server error another try will not mend, nor a write (a client retries its own).
    assert [retry.is_retry(m, s) for m, s in (("GET", 500), ("POST", 503), ("PUT", 504))] == [
        False, False, False,
    ]  # fmt: skip
    assert _retry_of(kiln_http.session(retries=0)).total == 0


def test_the_http_session_gives_every_request_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = _Transport()
    monkeypatch.setattr(HTTPAdapter, "send", transport)
    made = kiln_http.session(timeout=7.0)
    made.get("https://a.invalid/")
    made.get("https://b.invalid/", timeout=2.0)
    assert transport.sent["https://a.invalid/"]["timeout"] == 7.0
    assert transport.sent["https://b.invalid/"]["timeout"] == 2.0


class _Engine(http.server.BaseHTTPRequestHandler):
    """Docker Engine's API as far as connecting asks: /_ping and /version."""

    seen: ClassVar[list[str]] = []

    def address_string(self) -> str:  # a unix socket has no client address
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        _Engine.seen.append(self.path)
        body = b"OK" if self.path.endswith("/_ping") else b'{"ApiVersion": "1.41"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Api-Version", "1.41")
        self.end_headers()
        self.wfile.write(body)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def test_the_engine_asked_is_the_one_named_not_docker_s_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Options.docker_host wins: DOCKER_HOST naming another engine is not followed."""
    socket_path = tmp_path / "engine.sock"
    server = _UnixServer(str(socket_path), _Engine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/elsewhere.sock")
    _Engine.seen.clear()
    try:
        client = docker_client(f"unix://{socket_path}")
        try:
            assert client.ping()
        finally:
            client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert any(path.endswith("/_ping") for path in _Engine.seen), _Engine.seen


def test_kiln_run_without_an_engine_is_service_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = factory.sample(tmp_path / "repo")
    generated = root / "pipelines" / "components" / "generated"
    generated.mkdir(parents=True)
    (generated / "double.yaml").write_text("# a generated component stands here\n")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    code, _out, err = run(capsys, "run", "demo", "--repo", str(root))
    assert code == 5, err  # the service, not the pipeline (7)
    assert f"Docker Engine is not reachable at unix://{tmp_path}/no-engine.sock" in err
