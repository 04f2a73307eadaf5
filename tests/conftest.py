"""Hooks of the whole suite (loaded by pytest-xdist's controller too, which collects
nothing): the end-to-end stacks made once for the run are stopped when it ends."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.runwide import stop_stacks


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: only when it is installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``: the groups tests/e2e/conftest.py gives (see tests/xdist_groups).
    Also for ``-n N`` alone (xdist's default, ``load``): without the groups, each worker
    makes its own copy of a module's stack and runs some of the tests that must run in
    order on one (tests/e2e/faults' tally counted 11 of its 40 and more that way)."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    # Imported here: it imports xdist, which a run without workers may not have.
    from tests.xdist_groups import FileGroupScheduling  # noqa: PLC0415

    return FileGroupScheduling(config, _run_folder(config), log)


def _run_folder(config: pytest.Config) -> Path:
    """The run's base folder (xdist's workers' folders are in it), from pytest's own
    factory."""
    factory = config._tmp_path_factory  # type: ignore[attr-defined]
    return Path(factory.getbasetemp())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In the process that ran the session (xdist's controller, or pytest alone), once
    every test is done."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    stop_stacks(_run_folder(session.config))
