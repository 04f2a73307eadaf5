"""Options: the environment read in one place, checked, and all of it in `kiln --help`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kiln._cli import EPILOG
from kiln._errors import ConfigError
from kiln._locking.tools import base_pinner
from kiln._options import ENVIRONMENT, Options
from kiln._report import Reporter

SRC = Path(__file__).resolve().parents[2] / "src" / "kiln"
# Reading a variable: env.get("X"), environ["X"], getenv("X"), or a name kept in a constant.
READS = re.compile(r"""(?:environ|env|getenv)(?:\.get)?[\[(]\s*["']([A-Z][A-Z0-9_]+)["']""")
CONSTANTS = re.compile(r"""^[A-Z_]+ = ["']([A-Z][A-Z0-9_]{3,})["']\s*$""", re.MULTILINE)


def _documented() -> set[str]:
    return {name.strip() for var in ENVIRONMENT for name in var.name.split(",")}


def test_every_variable_kiln_reads_is_in_the_help() -> None:
    read: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for name in READS.findall(text) + CONSTANTS.findall(text):
            if not name.startswith(("TWINE_", "PIP_", "SOURCE_DATE")):  # what kiln *sets*
                read[name] = str(path.relative_to(SRC))
    assert read  # the scan finds the reads at all
    missing = {name: where for name, where in read.items() if name not in _documented()}
    assert missing == {}
    for var in ENVIRONMENT:
        assert var.name in EPILOG


# os.environ, os.environb, os.getenv(, getenv(, or either imported from os.
ENVIRON = re.compile(
    r"\bos\.environb?\b|\bgetenv\(|^\s*from os import [^\n]*\b(environ|getenv)\b", re.M
)


def test_only_options_reads_the_environment() -> None:
    # The CLI, the credential lookups and the programs kiln starts get it from here.
    readers = {
        p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if ENVIRON.search(p.read_text())
    }
    assert readers == {"_options.py"}
    for way in ("x = os.environ['A']", "os.getenv('A')", "from os import environ, sep"):
        assert ENVIRON.search(way), way


def test_options_from_the_environment(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    env = {
        "KILN_NO_WHEEL_CACHE": "1",
        "GITHUB_ACTIONS": "true",
        "SSL_CERT_FILE": str(bundle),
        "DOCKER_HOST": "unix:///run/other.sock",
    }
    options = Options.from_environment(env)
    assert options.wheel_cache is False
    assert options.github_actions is True
    assert options.ca_bundle == bundle.resolve()
    assert options.docker_host == "unix:///run/other.sock"
    assert Options.from_environment({}) == Options()


def test_options_carry_the_environment_for_credentials_but_never_show_it() -> None:
    options = Options.from_environment({"KILN_INDEX_PASSWORD": "s3cr3t-value"})
    assert options.env == {"KILN_INDEX_PASSWORD": "s3cr3t-value"}
    assert "s3cr3t-value" not in repr(options)


def test_a_bad_value_is_named() -> None:
    with pytest.raises(ConfigError, match="KILN_NO_WHEEL_CACHE='maybe': use 1 or 0"):
        Options.from_environment({"KILN_NO_WHEEL_CACHE": "maybe"})


def test_offline_lock_asks_no_registry_for_a_base(tmp_path: Path) -> None:
    # tests/unit/conftest.py fails the test on any inet connect: none may be tried.
    options = Options(docker_host=f"unix://{tmp_path}/none.sock", offline=True)
    pinner = base_pinner(options, Reporter.null())
    with pytest.raises(ConfigError) as err:
        pinner.pin("python:3.11-slim", "images/base/image.toml")
    assert str(err.value).startswith(
        "images/base/image.toml: base python:3.11-slim could not be pinned by its registry "
        "digest (KILN_OFFLINE=1: registry-1.docker.io is not asked)"
    )
    assert Options.from_environment({"KILN_OFFLINE": "1"}).offline is True
