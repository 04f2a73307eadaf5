"""The catalog page as a browser shows it: Debian's headless Chromium loads the file
and dumps the DOM it built, which must hold each component with its pins and interface.

Chromium is a system package (`apt-get install chromium`, as `.ci/run` does). Missing,
the test fails: CI runs every test, none may skip.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kiln._components.catalog import Entry, write_catalog
from tests import catalog_sample as sample

pytestmark = pytest.mark.e2e

# As root in a container Chromium refuses to start without --no-sandbox. The rest keep
# it off the network, which it would otherwise try at start even for a file:// page
# (update.googleapis.com, clients2.google.com, accounts.google.com): no first-run
# tasks, extensions, component updates, sync or background requests, and every
# host name resolves to "not found" without asking DNS. A fresh profile per run.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-component-update",
    "--disable-background-networking",
    "--disable-sync",
    "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
TIMEOUT = 60


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: `apt-get install -y --no-install-recommends chromium` "
            "(Debian's package; .ci/run installs it). The catalog's browser test needs it."
        )
    return path


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM Chromium built from ``page``, serialized after load."""
    proc = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def entries(tmp_path_factory: pytest.TempPathFactory) -> list[Entry]:
    return sample.entries(tmp_path_factory.mktemp("components"))


def test_the_rendered_catalog_shows_each_component_its_pins_and_inputs(
    entries: list[Entry], tmp_path: Path
) -> None:
    _, page = write_catalog(
        entries, tmp_path / "catalog", title=sample.TITLE, generated_by=sample.GENERATED_BY
    )
    started = time.monotonic()
    dom = dump_dom(page, tmp_path / "profile")
    assert time.monotonic() - started < 15, "chromium took too long to render a static page"

    parser = sample.CatalogDom()
    parser.feed(dom)
    assert len(entries) == 3
    for entry in entries:
        section = f"component-{entry.name}"
        assert section in parser.text, f"no element id={section} in the rendered DOM"
        text = parser.text[section]
        for pin in (*entry.pins, *entry.helpers):
            assert pin in text, f"{section} does not show {pin}"
        rows = parser.rows[section]
        for name, type_ in (*entry.inputs, *entry.outputs):
            assert (name, type_) in rows, f"{section} has no row {name} | {type_}: {rows}"
        assert ("pin mode", entry.mode) in rows
    # The docstring's markup is text on the page, not an element the browser ran.
    assert "<script>" not in dom
    assert '<script>alert("x")</script>' in parser.text["component-summarize_table"]
