"""Credentials: where they are found, that they never show, and how the clients use them.

HTTP goes through a fake ``requests`` transport mounted on the clients' sessions: no sockets.
"""

from __future__ import annotations

import base64
import io
import json
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests
from requests.adapters import BaseAdapter

from kiln._cli import main
from kiln._errors import AuthenticationFailed, CommandFailed, ConfigError, ServiceUnavailable
from kiln._servers.credentials import Credentials, index_credentials, registry_credentials
from kiln._servers.index import IndexClient
from kiln._servers.registry import RegistryClient
from tests import factory

SECRET = "canary-s3cr3t"  # noqa: S105 - a test value that must never show up anywhere


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# ------------------------------------------------------------------ Credentials
def test_repr_and_str_never_show_the_password() -> None:
    creds = Credentials("ci-bot", SECRET, source="the environment")
    for shown in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert SECRET not in shown
        assert "ci-bot" in shown
        assert "the environment" in shown
    assert creds.basic == ("ci-bot", SECRET)


# ------------------------------------------------------------------ index: env, netrc
def write_netrc(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


def test_index_environment_wins_over_netrc(tmp_path: Path) -> None:
    netrc = write_netrc(tmp_path / "netrc", "machine index.test login n password from-netrc\n")
    env = {
        "NETRC": str(netrc),
        "KILN_INDEX_USERNAME": "e",
        "KILN_INDEX_PASSWORD": "from-env",
    }
    creds = index_credentials("https://index.test/", env)
    assert creds is not None
    assert creds.basic == ("e", "from-env")
    assert "KILN_INDEX_USERNAME" in creds.source


def test_index_netrc_entry_for_the_urls_host(tmp_path: Path) -> None:
    netrc = write_netrc(
        tmp_path / "netrc",
        "machine other.test login o password other\n"
        "machine index.test login n password from-netrc\n",
    )
    creds = index_credentials("http://index.test:8080/private", {"NETRC": str(netrc)})
    assert creds is not None
    assert creds.basic == ("n", "from-netrc")
    assert creds.source == f"{netrc} (machine index.test)"
    assert index_credentials("http://nowhere.test/", {"NETRC": str(netrc)}) is None


def test_index_netrc_default_is_home(tmp_path: Path) -> None:
    write_netrc(tmp_path / ".netrc", "default login d password dflt\n")
    creds = index_credentials("https://any.test/", {"HOME": str(tmp_path)})
    assert creds is not None
    assert creds.basic == ("d", "dflt")
    assert creds.source.endswith("(default)")


def test_no_netrc_file_means_no_credentials(tmp_path: Path) -> None:
    assert index_credentials("https://index.test/", {"NETRC": str(tmp_path / "none")}) is None


def test_a_malformed_netrc_names_the_file_not_its_tokens(tmp_path: Path) -> None:
    # Python's netrc quotes the bad token in its message: here, a stray password.
    netrc = write_netrc(tmp_path / "netrc", f"machine index.test login n password p\n{SECRET}\n")
    with pytest.raises(ConfigError) as err:
        index_credentials("https://index.test/", {"NETRC": str(netrc)})
    assert str(netrc) in str(err.value)
    assert "NETRC" in str(err.value)
    assert SECRET not in str(err.value)


def test_half_set_environment_is_an_error() -> None:
    with pytest.raises(ConfigError, match="KILN_INDEX_PASSWORD is set but KILN_INDEX_USERNAME"):
        index_credentials("https://index.test/", {"KILN_INDEX_PASSWORD": SECRET})


# ------------------------------------------------------------------ registry: env, docker config
def docker_config(tmp_path: Path, config: object) -> dict[str, str]:
    (tmp_path / "docker").mkdir(exist_ok=True)
    (tmp_path / "docker" / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(tmp_path / "docker"), "PATH": str(tmp_path / "bin")}


def auth(username: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}


class FakeRunner:
    """Stands in for ``call``: answers a credential helper's ``get`` from ``store``."""

    def __init__(self, store: Mapping[str, tuple[str, str]]) -> None:
        self.store = store
        self.calls: list[tuple[list[str], bool]] = []

    def __call__(self, args: Sequence[str], *, echo: bool = True, stdin: str | None = None) -> str:
        self.calls.append((list(args), echo))
        host = stdin or ""  # the protocol: the server's host on the helper's stdin
        if host not in self.store:
            raise CommandFailed("failed", returncode=1, output="credentials not found in store\n")
        username, secret = self.store[host]
        return json.dumps({"ServerURL": host, "Username": username, "Secret": secret})


def install_helper(tmp_path: Path, name: str, script: str = "exit 99\n") -> Path:
    path = tmp_path / "bin" / f"docker-credential-{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def test_registry_environment_wins_over_docker_config(tmp_path: Path) -> None:
    env = docker_config(tmp_path, {"auths": {"reg.test:5000": auth("d", "from-docker")}})
    env |= {"KILN_REGISTRY_USERNAME": "e", "KILN_REGISTRY_PASSWORD": "from-env"}
    creds = registry_credentials("reg.test:5000", env)
    assert creds is not None
    assert creds.basic == ("e", "from-env")


def test_registry_auths_entry_matches_host_with_or_without_scheme(tmp_path: Path) -> None:
    env = docker_config(
        tmp_path,
        {"auths": {"other.test": auth("x", "y"), "https://reg.test:5000/v1/": auth("d", "p:w")}},
    )
    creds = registry_credentials("reg.test:5000", env)
    assert creds is not None
    assert creds.basic == ("d", "p:w")  # only the first colon separates user and password
    assert "auths['https://reg.test:5000/v1/']" in creds.source
    assert registry_credentials("unknown.test", env) is None


def test_registry_missing_config_means_no_credentials(tmp_path: Path) -> None:
    assert registry_credentials("reg.test", {"DOCKER_CONFIG": str(tmp_path)}) is None
    assert registry_credentials("reg.test", {"HOME": str(tmp_path)}) is None


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ("{not json", "not a JSON object"),
        (json.dumps({"auths": {"reg.test": {"auth": "!!not base64!!"}}}), "not base64"),
        (json.dumps({"auths": {"reg.test": {"auth": "bm8tY29sb24="}}}), "not base64 of USER:"),
        (json.dumps({"auths": {"reg.test": "x"}}), "must be an object"),
        (json.dumps({"credHelpers": ["reg.test"]}), "`credHelpers` must be an object"),
    ],
)
def test_a_malformed_docker_config_names_the_file(
    tmp_path: Path, config: str, complaint: str
) -> None:
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ConfigError) as err:
        registry_credentials("reg.test", {"DOCKER_CONFIG": str(tmp_path)})
    assert str(tmp_path / "config.json") in str(err.value)
    assert complaint in str(err.value)


def test_cred_helper_for_the_host_wins_and_runs_without_echo(tmp_path: Path) -> None:
    env = docker_config(
        tmp_path,
        {
            "credHelpers": {"reg.test:5000": "pass"},
            "credsStore": "desktop",
            "auths": {"reg.test:5000": auth("file", "file-secret")},
        },
    )
    helper = install_helper(tmp_path, "pass")
    runner = FakeRunner({"reg.test:5000": ("helper-user", SECRET)})
    creds = registry_credentials("reg.test:5000", env, runner=runner)
    assert creds is not None
    assert creds.basic == ("helper-user", SECRET)
    assert "credHelpers['reg.test:5000']" in creds.source
    assert "docker-credential-pass" in creds.source
    ((args, echo),) = runner.calls
    assert echo is False
    assert args == [str(helper), "get"]


def test_creds_store_is_asked_and_auths_is_the_fallback(tmp_path: Path) -> None:
    env = docker_config(
        tmp_path,
        {"credsStore": "desktop", "auths": {"reg.test": auth("file", "file-secret")}},
    )
    install_helper(tmp_path, "desktop")
    runner = FakeRunner({"store.test": ("store-user", SECRET)})
    found = registry_credentials("store.test", env, runner=runner)
    assert found is not None
    assert found.basic == ("store-user", SECRET)
    assert "(credsStore)" in found.source
    # The store has nothing for reg.test ("credentials not found"): auths answers.
    fallback = registry_credentials("reg.test", env, runner=runner)
    assert fallback is not None
    assert fallback.basic == ("file", "file-secret")


def test_a_missing_helper_program_is_named(tmp_path: Path) -> None:
    env = docker_config(tmp_path, {"credHelpers": {"reg.test": "ecr-login"}})
    with pytest.raises(ConfigError, match="docker-credential-ecr-login is not on PATH"):
        registry_credentials("reg.test", env, runner=FakeRunner({}))


def test_a_real_helper_gets_the_host_on_stdin_and_nothing_is_echoed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    received = tmp_path / "stdin.txt"
    answer = json.dumps({"ServerURL": "x", "Username": "u", "Secret": SECRET})
    install_helper(
        tmp_path,
        "recorder",
        f"test \"$1\" = get || exit 2\ncat > '{received}'\necho '{answer}'\n",
    )
    env = docker_config(tmp_path, {"credHelpers": {"reg.test:443": "recorder"}})
    creds = registry_credentials("reg.test:443", env)  # the real `call`
    assert creds is not None
    assert creds.basic == ("u", SECRET)
    assert received.read_text() == "reg.test:443"
    out, err = capfd.readouterr()
    assert out == err == ""


def test_a_failing_helper_is_a_step_failure_without_its_full_output(tmp_path: Path) -> None:
    install_helper(tmp_path, "broken", "echo 'keychain locked'\necho 'second line'\nexit 3\n")
    env = docker_config(tmp_path, {"credHelpers": {"reg.test": "broken"}})
    with pytest.raises(CommandFailed) as err:
        registry_credentials("reg.test", env)
    assert "docker-credential-broken get for reg.test failed (exit 3): keychain locked" in str(
        err.value
    )
    assert "second line" not in str(err.value)


# ------------------------------------------------------------------ a fake HTTP transport
Handler = Callable[[requests.PreparedRequest], tuple[int, dict[str, str], bytes]]


class FakeTransport(BaseAdapter):
    """Answers every request from ``handler`` and keeps it in ``seen``; opens no socket."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.seen: list[requests.PreparedRequest] = []

    def send(  # type: ignore[override]  # requests' own signature is untyped
        self, request: requests.PreparedRequest, **_kwargs: Any
    ) -> requests.Response:
        self.seen.append(request)
        status, headers, body = self.handler(request)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.raw = io.BytesIO(body)
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass

    def lines(self) -> list[str]:
        """Each request as METHOD URL [auth scheme]."""
        out = []
        for r in self.seen:
            header = r.headers.get("Authorization")
            out.append(f"{r.method} {r.url}" + (f" [{header.split()[0]}]" if header else ""))
        return out


def session_with(transport: FakeTransport) -> requests.Session:
    session = requests.Session()
    session.mount("http://", transport)
    session.mount("https://", transport)
    return session


# ------------------------------------------------------------------ registry: Bearer and Basic
TOKEN_REALM = "https://auth.test/token"  # noqa: S105 - a URL, not a password
CREDS = Credentials("bot", SECRET, source="the environment (KILN_REGISTRY_USERNAME/...)")
DIGEST = "sha256:" + "ab" * 32
SCOPE = "repository%3Aacme%2Fbase%3Apull"  # repository:acme/base:pull, URL-encoded


def bearer_registry(tokens_issued: list[str], *, accept_user: str = "bot") -> Handler:
    """A registry whose token service trusts ``accept_user`` and issues one token per scope."""

    def handle(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        url = str(request.url)
        given = request.headers.get("Authorization", "")
        if url.startswith(TOKEN_REALM):
            if given != basic(accept_user, SECRET):
                return 401, {}, b'{"details": "incorrect username or password"}'
            scope = unquote(url.partition("scope=")[2]) or "-"
            token = f"token-{len(tokens_issued)}-{scope}"
            tokens_issued.append(token)
            return 200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode()
        scope = "repository:acme/base:pull" if "/acme/base/" in url else ""
        if given.startswith("Bearer ") and given.removeprefix("Bearer ") in tokens_issued:
            return 200, {"Docker-Content-Digest": DIGEST}, b"{}"
        challenge = f'Bearer realm="{TOKEN_REALM}",service="reg.test"'
        challenge += f',scope="{scope}"' if scope else ""
        return 401, {"WWW-Authenticate": challenge}, b"{}"

    return handle


def test_bearer_flow_gets_a_token_with_basic_auth_and_retries_once() -> None:
    issued: list[str] = []
    transport = FakeTransport(bearer_registry(issued))
    client = RegistryClient("reg.test", credentials=CREDS, session=session_with(transport))
    client.ping()
    assert client.digest("acme/base", "0.1.0") == DIGEST
    assert client.digest("acme/base", "0.2.0") == DIGEST  # the cached token, no new challenge
    assert transport.lines() == [
        "GET https://reg.test/v2/",
        "GET https://auth.test/token?service=reg.test [Basic]",
        "GET https://reg.test/v2/ [Bearer]",
        "HEAD https://reg.test/v2/acme/base/manifests/0.1.0",
        f"GET https://auth.test/token?service=reg.test&scope={SCOPE} [Basic]",
        "HEAD https://reg.test/v2/acme/base/manifests/0.1.0 [Bearer]",
        "HEAD https://reg.test/v2/acme/base/manifests/0.2.0 [Bearer]",
    ]
    assert transport.seen[1].headers["Authorization"] == basic("bot", SECRET)
    assert transport.seen[5].headers["Authorization"] == f"Bearer {issued[1]}"
    assert issued[1].endswith("repository:acme/base:pull")


def test_an_expired_token_is_replaced_once() -> None:
    issued: list[str] = []
    transport = FakeTransport(bearer_registry(issued))
    client = RegistryClient("reg.test", credentials=CREDS, session=session_with(transport))
    client.ping()
    issued.clear()  # the registry forgets every token it gave
    client.ping()
    assert transport.lines()[-3:] == [
        "GET https://reg.test/v2/ [Bearer]",
        "GET https://auth.test/token?service=reg.test [Basic]",
        "GET https://reg.test/v2/ [Bearer]",
    ]


def test_refused_credentials_name_their_source_and_never_the_secret() -> None:
    transport = FakeTransport(bearer_registry([], accept_user="someone-else"))
    client = RegistryClient("reg.test", credentials=CREDS, session=session_with(transport))
    with pytest.raises(AuthenticationFailed) as err:
        client.ping()
    message = str(err.value)
    assert message.startswith("registry reg.test refused user 'bot' (HTTP 401)")
    assert "KILN_REGISTRY_USERNAME" in message
    assert "docker login reg.test" in message
    assert SECRET not in message
    assert AuthenticationFailed.exit_code == 9


def basic_registry(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
    if request.headers.get("Authorization") == basic("bot", SECRET):
        return 200, {"Docker-Content-Digest": DIGEST}, b"{}"
    return 401, {"WWW-Authenticate": 'Basic realm="Registry Realm"'}, b"{}"


def test_basic_challenge_is_answered_then_sent_up_front() -> None:
    transport = FakeTransport(basic_registry)
    client = RegistryClient("reg.test", credentials=CREDS, session=session_with(transport))
    client.ping()
    assert client.digest("acme/base", "1") == DIGEST
    assert transport.lines() == [
        "GET https://reg.test/v2/",
        "GET https://reg.test/v2/ [Basic]",
        "HEAD https://reg.test/v2/acme/base/manifests/1 [Basic]",
    ]


def test_no_credentials_for_a_registry_that_needs_them() -> None:
    client = RegistryClient("reg.test", session=session_with(FakeTransport(basic_registry)))
    with pytest.raises(AuthenticationFailed, match=r"requires credentials .* and kiln found none"):
        client.ping()


@pytest.mark.parametrize(
    ("status", "error"), [(503, ServiceUnavailable), (403, AuthenticationFailed)]
)
def test_labels_turn_bad_answers_into_kiln_errors(status: int, error: type[Exception]) -> None:
    transport = FakeTransport(lambda _r: (status, {}, b"oops"))
    client = RegistryClient("reg.test", credentials=CREDS, session=session_with(transport))
    with pytest.raises(error, match=r"reg\.test"):
        client.labels("acme/base", "1")


def test_a_registry_address_with_credentials_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        RegistryClient(f"bot:{SECRET}@reg.test")
    assert SECRET not in str(err.value)


# ------------------------------------------------------------------ index
INDEX_CREDS = Credentials("bot", SECRET, source="/home/ci/.netrc (machine index.test)")
WHEEL = "acme_x-1.0-py3-none-any.whl"
PAGE = f'<html><body><a href="../../f/{WHEEL}#sha256=aa">{WHEEL}</a></body></html>'.encode()


def test_index_reads_send_the_credentials() -> None:
    def handle(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("Authorization") != basic("bot", SECRET):
            return 401, {"WWW-Authenticate": 'Basic realm="pypi"'}, b""
        return 200, {"Content-Type": "text/html"}, PAGE

    transport = FakeTransport(handle)
    index = IndexClient(
        "http://index.test", credentials=INDEX_CREDS, session=session_with(transport)
    )
    index.ping()
    assert index.files("acme-x") == {WHEEL: "aa"}
    anonymous = IndexClient("http://index.test", session=session_with(transport))
    with pytest.raises(AuthenticationFailed) as err:
        anonymous.files("acme-x")
    assert "package index http://index.test/simple/ requires credentials (HTTP 401)" in str(
        err.value
    )
    assert "KILN_INDEX_USERNAME" in str(err.value)
    assert "machine index.test" in str(err.value)


def test_index_refusal_names_the_netrc_entry_not_the_secret() -> None:
    transport = FakeTransport(lambda _r: (403, {}, b""))
    index = IndexClient(
        "http://index.test", credentials=INDEX_CREDS, session=session_with(transport)
    )
    with pytest.raises(AuthenticationFailed) as err:
        index.ping()
    assert "/home/ci/.netrc (machine index.test)" in str(err.value)
    assert SECRET not in str(err.value)


class TwineRunner:
    def __init__(self, output: str = "") -> None:
        self.output = output
        self.envs: list[Mapping[str, str] | None] = []
        self.args: list[list[str]] = []

    def __call__(
        self, args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        self.args.append(list(args))
        self.envs.append(env)
        if self.output:
            raise CommandFailed("twine failed", returncode=1, output=self.output)
        return ""


def test_upload_passes_credentials_to_twine_in_its_environment_only(tmp_path: Path) -> None:
    runner = TwineRunner()
    IndexClient("http://index.test", credentials=INDEX_CREDS, runner=runner).upload(
        [tmp_path / "a.whl"]
    )
    assert runner.envs == [{"TWINE_USERNAME": "bot", "TWINE_PASSWORD": SECRET}]
    assert not any(SECRET in a for a in runner.args[0])
    IndexClient("http://index.test", runner=runner).upload([tmp_path / "a.whl"])
    assert runner.envs[1] == {"TWINE_USERNAME": "kiln", "TWINE_PASSWORD": ""}


def test_a_refused_upload_is_an_authentication_failure(tmp_path: Path) -> None:
    refused = TwineRunner(
        "Uploading a.whl\nERROR    HTTPError: 403 Forbidden from http://index.test/\n"
    )
    with pytest.raises(
        AuthenticationFailed, match=r"index.test/simple/ requires credentials \(HTTP 403\)"
    ):
        IndexClient("http://index.test", runner=refused).upload([tmp_path / "a.whl"])
    other = TwineRunner("ERROR    HTTPError: 400 Bad Request from http://index.test/\n")
    with pytest.raises(CommandFailed):
        IndexClient("http://index.test", runner=other).upload([tmp_path / "a.whl"])


def test_an_index_url_with_credentials_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        IndexClient(f"https://bot:{SECRET}@index.test/")
    assert "https://index.test/" in str(err.value)
    assert SECRET not in str(err.value)


# ------------------------------------------------------------------ the CLI
def test_help_lists_the_credential_variables_and_exit_9(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in (
        "KILN_INDEX_USERNAME",
        "KILN_INDEX_PASSWORD",
        "KILN_REGISTRY_USERNAME",
        "KILN_REGISTRY_PASSWORD",
        "NETRC",
        "DOCKER_CONFIG",
        "9 authentication failed",
    ):
        assert name in out


def test_credentials_on_the_command_line_are_refused_unshown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = factory.sample(tmp_path / "repo")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    index = f"http://bot:{SECRET}@127.0.0.1:9/"
    with pytest.raises(SystemExit) as exc:
        main(["publish", "--repo", str(root), "--index", index, "--registry", "127.0.0.1:9"])
    out, err = capsys.readouterr()
    assert exc.value.code == 3
    assert "carries credentials" in err
    assert SECRET not in out + err
    assert all(SECRET not in p.read_text() for p in (root / ".kiln" / "logs").glob("*.log"))
