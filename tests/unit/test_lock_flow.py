"""kiln lock as library calls, without the CLI: the locks it writes and reports, the stale
ones it names, and a registry base pinned the way a release reads it (credentials, CA
bundle). uv and the registry are fakes; nothing opens a socket."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from kiln._context import Context
from kiln._errors import ConfigError
from kiln._lock.format import read_lock
from kiln._lock.make import Uv
from kiln._locking.bump import bump
from kiln._locking.flow import LockTools, check, lock, select_images
from kiln._locking.tools import lock_tools
from kiln._options import Options
from kiln._report import Reporter
from kiln._servers.credentials import REGISTRY_PASSWORD, REGISTRY_USERNAME
from kiln._workspace.discovery import discover
from kiln._workspace.model import Workspace
from tests import factory
from tests.unit.cli import run
from tests.unit.fakes import (
    UPSTREAM,
    FakeSdists,
    FakeUv,
    fake_upstream,
    write_fake_lock,
    write_fake_os_lock,
)
from tests.unit.test_credentials import (
    DIGEST,
    SCOPE,
    SECRET,
    TOKEN_REALM,
    FakeTransport,
    bearer_registry,
)

KFP = "2.17.3"
BASE = "reg.test/acme/base:0.1.0"  # served by test_credentials' Bearer registry


@dataclass
class Registry:
    """reg.test at the transport, under kiln's HTTP session (no socket): test_credentials'
    Bearer registry, keeping the CA bundle each request was to be checked with."""

    fake: FakeTransport = field(default_factory=lambda: FakeTransport(bearer_registry([])))
    verify: list[object] = field(default_factory=list)

    def __call__(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        self.verify.append(kwargs.get("verify"))
        return self.fake.send(request)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = factory.workspace(tmp_path / "repo")
    factory.helper(root, "imgproc")
    factory.image(root, "app", helpers=("imgproc",), base=BASE)
    return discover(root)


def tools_for(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[LockTools, Registry, Path]:
    """``kiln lock``'s tools as the CLI makes them, with a proxy's CA bundle and the base
    registry's credentials in the environment; uv, the upstream index and the base's
    registry faked."""
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {REGISTRY_USERNAME: "bot", REGISTRY_PASSWORD: SECRET}
    options = Options(ca_bundle=bundle, docker_host=f"unix://{tmp_path}/no-engine.sock", env=env)
    registry = Registry()
    monkeypatch.setattr(HTTPAdapter, "send", registry)
    tools = dataclasses.replace(
        lock_tools(ws, Context(options, Reporter.null())),
        uv=Uv(FakeUv(), "/opt/uv", UPSTREAM),
        pages=fake_upstream(("numpy", "1.0"), ("kfp", KFP)),
        sdists=FakeSdists(),
    )
    return tools, registry, bundle


def test_a_registry_base_is_asked_with_its_credentials_over_the_ca_bundle(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools, registry, bundle = tools_for(ws, tmp_path, monkeypatch)
    pin, how = tools.bases.pin(BASE, "images/app/image.toml")
    assert (pin.kind, pin.value, how) == ("digest", DIGEST, "manifest digest from reg.test")
    assert registry.fake.lines() == [
        "HEAD https://reg.test/v2/acme/base/manifests/0.1.0",
        f"GET {TOKEN_REALM}?service=reg.test&scope={SCOPE} [Basic]",
        "HEAD https://reg.test/v2/acme/base/manifests/0.1.0 [Bearer]",
    ]
    assert registry.verify == [str(bundle)] * 3


def test_lock_writes_each_image_s_lock_then_finds_it_unchanged(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools, _, _ = tools_for(ws, tmp_path, monkeypatch)
    images = select_images(ws, [])
    path = ws.image("app").path / "requirements.lock"
    first = lock(ws, images, kfp=KFP, tools=tools, report=Reporter.null())
    assert first.to_dict() == {"app": {"path": str(path), "written": True}}
    assert first.text == f"{path}: written"
    assert read_lock(ws.image("app")).base.build_ref == f"reg.test/acme/base@{DIGEST}"
    again = lock(ws, images, kfp=KFP, tools=tools, report=Reporter.null())
    assert again.text == f"{path}: unchanged"
    fresh = check(ws, images, kfp=KFP)
    assert (fresh.to_dict(), fresh.text) == ({"app": "fresh"}, "1 lock(s) up to date")


def test_check_names_every_stale_lock_and_select_names_unknown_images(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools, _, _ = tools_for(ws, tmp_path, monkeypatch)
    images = select_images(ws, ["app"])
    lock(ws, images, kfp=KFP, tools=tools, report=Reporter.null())
    with pytest.raises(ConfigError, match=r"requirements.lock: stale: .* kfp \(2.18.0\) changed"):
        check(ws, images, kfp="2.18.0")
    with pytest.raises(ConfigError, match=r"no image nope under images/ \(known: app\)"):
        select_images(ws, ["nope", "app"])


def test_a_bump_that_leaves_every_lock_fresh_makes_no_lock_tools(tmp_path: Path) -> None:
    root = factory.sample(tmp_path / "repo")
    ws = discover(root)
    write_fake_lock(ws, ws.image("base"))

    def no_tools() -> LockTools:
        raise AssertionError("no lock went stale: nothing to write, nothing to ask")

    result = bump(ws, "imgproc", "patch", kfp=KFP, tools=no_tools, report=Reporter.null())
    assert (result.written, result.stale, result.relocked) == (True, (), ())
    assert result.to_dict()["images_to_relock"] == ["base"]
    assert discover(root).helper("imgproc").version == "0.1.1"


def test_kiln_lock_check_prints_what_the_flow_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = factory.sample(tmp_path / "repo")
    ws = discover(root)
    write_fake_lock(ws, ws.image("base"))
    write_fake_os_lock(ws)
    code, out, err = run(capsys, "lock", "--check", "--json", "--repo", str(root))
    assert (code, json.loads(out)) == (0, {"base": "fresh", "os": "fresh"}), err
    code, out, err = run(capsys, "lock", "--check", "--repo", str(root))
    assert (code, out) == (0, "2 lock(s) up to date\n"), err
