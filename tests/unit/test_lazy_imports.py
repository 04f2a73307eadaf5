"""What a command imports before it runs: the libraries it uses, not the slow ones it
does not.

A no-op `kiln release --local` or `kiln check --local` starts no container, makes no
SBOM (they are cached), runs no matrix job, tag or dev release and reads no Debian
index, so it must not import docker, cyclonedx, kfp, tomlkit, python-debian or the
flows of the other release modes: each of them costs its import time on every run.
`kiln --help` imports nothing but the standard library and kiln's CLI.

Each test runs a fresh interpreter (this one has imported everything the suite did),
imports what the command imports before it runs, and lists ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kiln

SRC = Path(kiln.__file__).resolve().parents[1]

_PROBE = """\
import importlib, json, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
exec(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""

# What `kiln release` and `kiln check` import: the entry point, then (``parsers.deferred``)
# the command's module, its context and the flows it calls.
RELEASE_PATH = (
    "kiln._cli",
    "kiln._cli.release",
    "kiln._cli.context",
    "kiln._release.flows",
    "kiln._release.check_release",
    "kiln._images.oci.sbom_cache",
)
# Imported on the paths that use them, never by a no-op release or a check.
LAZY = ("docker", "cyclonedx", "kfp", "tomlkit", "debian")
OTHER_MODES = (
    "kiln._cli.release_modes",
    "kiln._release.job",
    "kiln._release.finalize",
    "kiln._release.tag",
    "kiln._release.dev_release",
    "kiln._release.matrix",
    "kiln._images.oci.sbom",
)


def _loaded(*modules: str, then: str = "") -> set[str]:
    """The modules a fresh interpreter holds after importing ``modules`` from this kiln
    and running ``then``."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, then, *modules],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return set(json.loads(out.stdout))


def _packages(loaded: set[str]) -> set[str]:
    return {name.split(".")[0] for name in loaded}


def test_a_release_or_check_imports_no_library_it_does_not_use() -> None:
    loaded = _loaded(*RELEASE_PATH)
    assert set(RELEASE_PATH) <= loaded  # the probe saw the imports it made
    assert "requests" in loaded  # and what those commands do use
    assert _packages(loaded) & set(LAZY) == set()
    assert loaded & set(OTHER_MODES) == set()


def test_the_probe_sees_each_of_them_where_it_is_imported() -> None:
    # So the test above cannot pass by seeing nothing (kfp left out: 1-2 s to import).
    loaded = _loaded("kiln._cli.release_modes", "kiln._images.oci.sbom", "docker", "debian.deb822")
    assert {"docker", "cyclonedx", "tomlkit", "debian"} <= _packages(loaded)
    assert set(OTHER_MODES) <= loaded


def test_pypi_simple_is_imported_by_what_reads_simple_pages() -> None:
    # A release or a check reads pages (``IndexClient``), so it imports pypi_simple (and
    # pydantic and bs4 with it: 0.2 s) when it connects; `kiln build`, a usage error or a
    # failure before connecting does not.
    reads_none = _loaded(*RELEASE_PATH, "kiln._wheels.build", "kiln._wheels.wheelhouse")
    assert _packages(reads_none) & {"pypi_simple", "pydantic", "bs4"} == set()
    client = "from kiln._servers.index import IndexClient; IndexClient('http://127.0.0.1:9')"
    assert "pypi_simple" in _packages(_loaded(then=client))
    pages = "from kiln._wheels.wheelhouse import SimplePages; SimplePages('http://127.0.0.1:9')"
    assert "pypi_simple" in _packages(_loaded(then=pages))


def test_help_imports_only_the_cli() -> None:
    loaded = _loaded("kiln._cli")
    third_party = _packages(loaded) - set(sys.stdlib_module_names) - {"kiln"}
    assert {p for p in third_party if not p.startswith("_")} == set()
    assert {m for m in loaded if m.startswith("kiln.")} == {
        "kiln._cli",
        "kiln._cli.parsers",
        "kiln._errors",
        "kiln._options",
        "kiln._report",
    }
