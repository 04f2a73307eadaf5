"""Where a wheelhouse is resolved: pip on the host when it runs the image's Python,
pip inside the base image otherwise; and the cache that makes it a one-time cost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._wheels.wheelhouse import (
    RESOLVER_ENV,
    HostPipWheel,
    choose_pip_wheel,
    resolve_third_party,
    running_python,
)
from kiln._workspace.model import Image
from tests.unit.fakes import FakePip

IMAGE = Image(
    name="base",
    path=Path("images/base"),
    version="0.1.0",
    base="python:3.11-slim",
    python=running_python(),
    helpers=("imgproc",),
    requirements=(),
)
OTHER_PYTHON = "3.99"


@dataclass
class FakeContainerPip:
    """Stands in for ContainerPipWheel: writes one wheel, records what it was asked."""

    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, requirements: Sequence[str], *, index_url: str, wheel_dir: Path) -> None:
        self.calls.append(list(requirements))
        (wheel_dir / "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"x")


@dataclass
class FakeInImage:
    """Stands in for DockerBuilder.pip_wheel_in: records which base it was asked for."""

    pip: FakeContainerPip = field(default_factory=FakeContainerPip)
    bases: list[str] = field(default_factory=list)

    def __call__(self, base: str) -> FakeContainerPip:
        self.bases.append(base)
        return self.pip


def test_same_python_resolves_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RESOLVER_ENV, raising=False)
    in_image = FakeInImage()
    chosen = choose_pip_wheel(IMAGE, "base:1", in_image=in_image)
    assert isinstance(chosen, HostPipWheel)
    assert in_image.bases == []


def test_other_python_resolves_inside_the_base_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RESOLVER_ENV, raising=False)
    in_image = FakeInImage()
    image = replace(IMAGE, python=OTHER_PYTHON)
    assert choose_pip_wheel(image, "mirror/python:3.99", in_image=in_image) is in_image.pip
    assert in_image.bases == ["mirror/python:3.99"]


def test_other_python_without_docker_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RESOLVER_ENV, raising=False)
    with pytest.raises(ConfigError) as err:
        choose_pip_wheel(replace(IMAGE, python=OTHER_PYTHON), "b", in_image=None)
    message = str(err.value)
    assert "images/base/image.toml: python = '3.99'" in message
    assert f"kiln runs on Python {running_python()}" in message
    assert "needs Docker Engine" in message


def test_resolver_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    in_image = FakeInImage()
    monkeypatch.setenv(RESOLVER_ENV, "image")
    assert choose_pip_wheel(IMAGE, "b", in_image=in_image) is in_image.pip
    monkeypatch.setenv(RESOLVER_ENV, "host")
    with pytest.raises(ConfigError, match=f"{RESOLVER_ENV}=host; unset it"):
        choose_pip_wheel(replace(IMAGE, python=OTHER_PYTHON), "b", in_image=in_image)
    monkeypatch.setenv(RESOLVER_ENV, "docker")
    with pytest.raises(ConfigError, match="'docker': use one of auto, host, image"):
        choose_pip_wheel(IMAGE, "b", in_image=in_image)


def test_host_pip_is_hermetic_and_cached_per_python(tmp_path: Path) -> None:
    pip = FakePip()
    resolve = HostPipWheel(pip)

    def wheels(python: str) -> list[str]:
        found = resolve_third_party(
            ["numpy==2.0.0"],
            upstream_index="https://pypi.org/simple",
            cache_dir=tmp_path,
            python=python,
            pip_wheel=resolve,
        )
        return [w.filename for w in found]

    assert wheels("3.11") == ["numpy-2.0.0-py3-none-any.whl"]
    assert wheels("3.11") == ["numpy-2.0.0-py3-none-any.whl"]
    assert len(pip.calls) == 1  # the second answer came from the cache
    (argv,) = pip.calls
    assert argv[1:4] == ["-m", "pip", "wheel"]
    assert argv[argv.index("--index-url") + 1] == "https://pypi.org/simple"
    wheels("3.12")  # another Python is another wheelhouse
    assert len(pip.calls) == 2


def test_an_interrupted_resolve_is_redone(tmp_path: Path) -> None:
    pip = FakeContainerPip()

    def failing(requirements: Sequence[str], *, index_url: str, wheel_dir: Path) -> None:
        (wheel_dir / "half.whl").write_bytes(b"")
        raise KeyboardInterrupt

    args = {"upstream_index": "u", "cache_dir": tmp_path, "python": "3.11"}
    with pytest.raises(KeyboardInterrupt):
        resolve_third_party(["numpy"], pip_wheel=failing, **args)  # type: ignore[arg-type]
    found = resolve_third_party(["numpy"], pip_wheel=pip, **args)  # type: ignore[arg-type]
    assert [w.name for w in found] == ["numpy"]
    assert pip.calls == [["numpy"]]


def test_host_pip_trusts_the_ca_bundle_the_machine_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip --isolated ignores PIP_CERT: behind a TLS-inspecting proxy it must hear --cert.
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)
    pip = FakePip()
    (tmp_path / "a").mkdir()
    HostPipWheel(pip)(
        ["numpy==2.0.0"], index_url="https://pypi.org/simple", wheel_dir=tmp_path / "a"
    )
    assert "--cert" not in pip.calls[0]

    monkeypatch.setenv("PIP_CERT", str(bundle))
    (tmp_path / "b").mkdir()
    HostPipWheel(pip)(
        ["numpy==2.0.0"], index_url="https://pypi.org/simple", wheel_dir=tmp_path / "b"
    )
    argv = pip.calls[1]
    assert argv[argv.index("--cert") + 1] == str(bundle)
    assert argv.index("--cert") > argv.index("--isolated")
