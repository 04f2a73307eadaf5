"""[tool.kiln.os] as data: its suites, its lock inputs, and what read_os checks beyond
the discovery tests (tests/unit/test_discovery.py covers the messages a pyproject gives)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kiln._debian.config import (
    DEFAULT_EXCLUDE,
    DEFAULT_PACKAGES,
    OsConfig,
    python_of,
    read_os,
    read_os_packages,
)
from kiln._errors import ConfigError

PYPROJECT = Path("/ws/pyproject.toml")


def test_suites_are_the_release_its_updates_and_its_security_archive() -> None:
    assert OsConfig(suite="trixie").suites() == (
        ("debian", "trixie"),
        ("debian", "trixie-updates"),
        ("debian-security", "trixie-security"),
    )


def test_inputs_ignore_order_and_empty_extras_and_move_with_every_setting() -> None:
    config = OsConfig(packages=("dash", "python3.11-minimal"), exclude=("dpkg", "debconf"))
    same = OsConfig(packages=("python3.11-minimal", "dash"), exclude=("debconf", "dpkg"))
    extras = {"ml": ("libgomp1", "fonts-dejavu-core"), "web": ()}
    assert config.inputs(extras) == same.inputs({"ml": ("fonts-dejavu-core", "libgomp1")})
    assert config.inputs({"web": ()}) == config.inputs({})
    assert config.inputs({}).startswith("sha256:")
    assert len(config.inputs({})) == len("sha256:") + 64
    others = {
        OsConfig(suite="trixie", packages=config.packages, exclude=config.exclude).inputs({}),
        OsConfig(architectures=("arm64",), packages=config.packages, exclude=config.exclude).inputs(
            {}
        ),
        OsConfig(
            architectures=("amd64", "arm64"), packages=config.packages, exclude=config.exclude
        ).inputs({}),
        OsConfig(packages=("dash",), exclude=config.exclude).inputs({}),
        OsConfig(packages=config.packages, exclude=("dpkg",)).inputs({}),
        config.inputs({"ml": ("libgomp1",)}),
        config.inputs({"other": ("libgomp1", "fonts-dejavu-core")}),
    }
    assert config.inputs({}) not in others
    assert len(others) == 7


def test_one_architecture_gives_the_inputs_of_a_lock_written_before_there_were_several() -> None:
    # images/os.lock of the example repo records this digest: a kiln that locks several
    # architectures must not call a single-architecture lock stale.
    doc = {
        "suite": "bookworm",
        "architecture": "amd64",
        "packages": sorted(DEFAULT_PACKAGES),
        "exclude": sorted(DEFAULT_EXCLUDE),
        "extras": {},
    }
    expected = "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    assert OsConfig().inputs({}) == expected
    assert read_os({"os": {"architectures": ["amd64"]}}, PYPROJECT).inputs({}) == expected
    assert read_os({"os": {"architecture": "amd64"}}, PYPROJECT).inputs({}) == expected


def test_architectures_keep_their_order_and_the_first_is_the_built_one() -> None:
    config = read_os({"os": {"architectures": ["arm64", "amd64"]}}, PYPROJECT)
    assert config.architectures == ("arm64", "amd64")
    assert config.architecture == "arm64"
    assert read_os({"os": {"architecture": "arm64"}}, PYPROJECT).architectures == ("arm64",)
    assert read_os({}, PYPROJECT).architectures == ("amd64",)


def test_read_os_without_a_table_is_the_defaults_from_that_file() -> None:
    config = read_os({}, PYPROJECT)
    assert config == OsConfig()
    assert config.path == PYPROJECT
    assert (config.packages, config.exclude) == (DEFAULT_PACKAGES, DEFAULT_EXCLUDE)
    assert config.urls("debian") == ("https://deb.debian.org/debian",)


def test_read_os_keeps_the_given_lists_and_strips_mirror_slashes() -> None:
    table = {
        "suite": "trixie",
        "architecture": "arm64",
        "packages": ["python3.13-minimal", "dash"],
        "exclude": [],
        "mirrors": {"debian-security": ["http://proxy.test/sec/", "https://deb.test/s"]},
    }
    config = read_os({"os": table}, PYPROJECT)
    assert (config.suite, config.architecture) == ("trixie", "arm64")
    assert (config.packages, config.exclude) == (("python3.13-minimal", "dash"), ())
    assert config.mirrors == (
        ("debian", ("https://deb.debian.org/debian",)),
        ("debian-security", ("http://proxy.test/sec", "https://deb.test/s")),
    )


@pytest.mark.parametrize(
    ("kiln", "message"),
    [
        ({"os": ["bookworm"]}, f'{PYPROJECT}: [tool.kiln.os] must be a table, e.g. suite = "'),
        (
            {"os": {"mirrors": ["https://x.test"]}},
            f"{PYPROJECT}: [tool.kiln.os.mirrors] must be a table, e.g. debian = [",
        ),
        (
            {"os": {"mirrors": {"debian": []}}},
            f"{PYPROJECT}: [tool.kiln.os.mirrors] debian must be a non-empty list of URLs",
        ),
        (
            {"os": {"mirrors": {"debian": ["ftp://deb.test/debian"]}}},
            (
                f"{PYPROJECT}: [tool.kiln.os.mirrors] debian: 'ftp://deb.test/debian' must be "
                "an http(s) URL without credentials"
            ),
        ),
        (
            {"os": {"exclude": ["Perl"]}},
            (
                f"{PYPROJECT}: [tool.kiln.os]: 'Perl' is not a Debian package name (lowercase "
                "letters, digits, + - .); use the name `apt-cache show` knows, e.g. 'libgomp1'"
            ),
        ),
        (
            {"os": {"architecture": "amd64", "architectures": ["amd64", "arm64"]}},
            (
                f"{PYPROJECT}: [tool.kiln.os] sets both architecture and architectures: keep "
                'architectures only (architecture = "amd64" is architectures = ["amd64"])'
            ),
        ),
        (
            {"os": {"architectures": ["amd64", "riscv64"]}},
            (
                f"{PYPROJECT}: [tool.kiln.os] architectures: 'riscv64' is not one kiln builds: "
                "kiln builds amd64 and arm64"
            ),
        ),
        (
            {"os": {"architecture": "x86_64"}},
            f"{PYPROJECT}: [tool.kiln.os] architecture: 'x86_64' is not one kiln builds",
        ),
        (
            {"os": {"architectures": []}},
            f'{PYPROJECT}: [tool.kiln.os] architectures is empty: list them, e.g. ["amd64"]',
        ),
        (
            {"os": {"architectures": ["arm64", "amd64", "arm64"]}},
            f"{PYPROJECT}: [tool.kiln.os] architectures lists arm64 twice: list it once",
        ),
        (
            {"os": {"architectures": "arm64"}},
            f"{PYPROJECT}: [tool.kiln.os] architectures must be a list of strings",
        ),
        (
            {"os": {"packages": ["x"]}},  # Debian names have two characters at least
            f"{PYPROJECT}: [tool.kiln.os]: 'x' is not a Debian package name",
        ),
    ],
)
def test_read_os_refuses_with_the_file_and_the_fix(kiln: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        read_os(kiln, PYPROJECT)
    assert str(err.value).startswith(message)


def test_python_of_is_the_first_minimal_interpreter_root() -> None:
    assert python_of(DEFAULT_PACKAGES) == "3.11"
    assert python_of(("dash", "python3.13-minimal", "python3.11-minimal")) == "3.13"
    assert python_of(("python3-minimal", "python3.11", "libpython3.11-stdlib")) is None
    assert python_of(()) is None


def test_os_packages_of_an_image_are_checked_and_named_by_its_file() -> None:
    config = Path("/ws/images/ml/image.toml")
    table = {"os-packages": ["libgomp1", "g++-12"]}
    assert read_os_packages(table, config) == ("libgomp1", "g++-12")
    assert read_os_packages({}, config) == ()
    with pytest.raises(ConfigError) as err:
        read_os_packages({"os-packages": ["libgomp1", "lib_gomp"]}, config)
    assert str(err.value).startswith(f"{config}: os-packages: 'lib_gomp' is not a Debian package")
