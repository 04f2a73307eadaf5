"""``platforms``: [tool.kiln]'s, overridden by image.toml or [tool.kiln.packages], checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._workspace.discovery import discover
from tests import factory

ARM = '\n[tool.kiln.os]\narchitectures = ["amd64", "arm64"]\n'


def _repo(tmp_path: Path, kiln: str = "", image: str = "", os: str = ARM) -> Path:
    """The sample repo with ``kiln`` lines in [tool.kiln], ``image`` lines in base's
    image.toml and ``os`` appended to pyproject.toml."""
    factory.sample(tmp_path)
    pyproject = tmp_path / "pyproject.toml"
    text = pyproject.read_text().replace('org = "acme"\n', f'org = "acme"\n{kiln}\n', 1)
    pyproject.write_text(text + os)
    toml = tmp_path / "images" / "base" / "image.toml"
    toml.write_text(toml.read_text() + image)
    return tmp_path


def test_the_default_is_amd64_alone_and_locks_as_before(tmp_path: Path) -> None:
    image = discover(_repo(tmp_path, os="")).image("base")
    assert image.platforms == ("linux/amd64",)
    assert (image.platform, image.python_platforms) == (
        "x86_64-manylinux_2_28",
        ("x86_64-manylinux_2_28",),
    )


def test_tool_kiln_platforms_apply_to_every_image_and_image_toml_overrides(
    tmp_path: Path,
) -> None:
    root = _repo(tmp_path, kiln='platforms = ["linux/amd64", "linux/arm64"]')
    factory.image(root, "solo", helpers=("imgproc",))
    solo = root / "images" / "solo" / "image.toml"
    solo.write_text(
        solo.read_text() + 'platforms = ["linux/amd64"]\nplatform = "x86_64-manylinux_2_36"\n'
    )
    ws = discover(root)
    assert ws.image("base").platforms == ("linux/amd64", "linux/arm64")
    assert ws.image("base").python_platforms == ("x86_64-manylinux_2_28", "aarch64-manylinux_2_28")
    assert ws.image("solo").platforms == ("linux/amd64",)
    assert ws.image("solo").python_platforms == ("x86_64-manylinux_2_36",)


def test_arm64_first_locks_aarch64_first(tmp_path: Path) -> None:
    image = discover(_repo(tmp_path, image='platforms = ["linux/arm64", "linux/amd64"]\n'))
    base = image.image("base")
    assert base.platform == "aarch64-manylinux_2_28"
    assert base.python_platforms == ("aarch64-manylinux_2_28", "x86_64-manylinux_2_28")


@pytest.mark.parametrize(
    ("kiln", "image", "message"),
    [
        ('platforms = ["linux/s390x"]', "", (r"\[tool.kiln\] platforms lists 'linux/s390x', "
         r"which kiln does not build; use 'linux/amd64', 'linux/arm64'")),
        ('platforms = ["linux/amd64", "linux/amd64"]', "",
         r"platforms lists linux/amd64 more than once; list each platform once"),
        ("platforms = []", "", r"platforms = \[\]: write a non-empty list"),
        ('platforms = "linux/amd64"', "", r"platforms = 'linux/amd64': write a non-empty list"),
        ("", 'platforms = ["amd64"]\n', r"\[image\] platforms lists 'amd64', which kiln does not"),
        ("", 'platform = "aarch64-manylinux_2_28"\n',
         (r"platform = 'aarch64-manylinux_2_28' is for aarch64, and the first of platforms is "
         r"'linux/amd64' \(x86_64\): make them agree \(platform = 'x86_64-manylinux_2_28'")),
    ],
)  # fmt: skip
def test_a_bad_platforms_setting_names_the_file_the_value_and_the_fix(
    tmp_path: Path, kiln: str, image: str, message: str
) -> None:
    root = _repo(tmp_path, kiln=kiln, image=image)
    with pytest.raises(ConfigError, match=message) as err:
        discover(root)
    where = "pyproject.toml" if kiln else "image.toml"
    assert str(err.value).split(":", 1)[0].endswith(where)


def test_a_platform_the_os_lock_does_not_lock_is_refused(tmp_path: Path) -> None:
    root = _repo(tmp_path, kiln='platforms = ["linux/amd64", "linux/arm64"]', os="")
    with pytest.raises(ConfigError) as err:
        discover(root)
    assert str(err.value) == (
        f"{root / 'images' / 'base' / 'image.toml'}: platforms lists 'linux/arm64', and kiln's "
        f"OS base is locked for 'amd64' only ({root / 'pyproject.toml'} [tool.kiln.os] "
        "architectures): add 'arm64' to architectures and run `kiln lock`, or drop "
        "'linux/arm64' from platforms"
    )


def test_a_registry_base_is_not_held_to_the_os_lock(tmp_path: Path) -> None:
    root = _repo(tmp_path, kiln='platforms = ["linux/amd64", "linux/arm64"]', os="")
    toml = root / "images" / "base" / "image.toml"
    toml.write_text(toml.read_text().replace("[image]\n", '[image]\nbase = "python:3.11-slim"\n'))
    assert discover(root).image("base").platforms == ("linux/amd64", "linux/arm64")


def test_packages_mode_takes_tool_kiln_platforms_or_its_own(tmp_path: Path) -> None:
    root = _repo(tmp_path, kiln='platforms = ["linux/amd64", "linux/arm64"]')
    factory.write(
        root / "pipelines" / "components" / "pkg.py",
        "PACKAGES = True\n\n\ndef triple(x: int) -> int:\n    return 3 * x\n",
    )
    ws = discover(root)
    assert ws.packages is not None
    assert ws.packages.platforms == ("linux/amd64", "linux/arm64")
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text() + '\n[tool.kiln.packages]\nplatforms = ["linux/amd64"]\n'
    )
    packages = discover(root).packages
    assert packages is not None
    assert packages.python_platforms == ("x86_64-manylinux_2_28",)
    pyproject.write_text(
        pyproject.read_text().replace('"linux/amd64"]\n', '"linux/amd64", "linux/x"]\n')
    )
    with pytest.raises(ConfigError, match=r"\[tool.kiln.packages\] platforms lists 'linux/x'"):
        discover(root)
