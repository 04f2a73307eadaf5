"""pytest-xdist's ``--dist loadgroup``, with the groups read from a file.

xdist's own loadgroup marks a test's group by appending ``@group`` to its node id, which
pytest 9.2 no longer lets a plugin change (``Item.nodeid`` is computed), so every test
became a group of its own. Here each worker writes the group of every test it collected
(tests/e2e/runwide.py's ``write_groups``) into the run's folder, and the scheduler
in xdist's controller reads them: tests of one group run on one worker, in order; a test
of no group runs on any worker. Groups are handed out in collection order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

from tests.e2e.runwide import GROUPS


class FileGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist: untyped
    """Load scheduling by scope, a test's scope being its group, else its node id."""

    def __init__(self, config: pytest.Config, run: Path, log: Producer | None = None) -> None:
        super().__init__(config, log)
        # Groups are handed out in the order the workers collected them (tests/e2e's
        # conftest sorts the longest first), not by how many tests they hold.
        config.option.loadscopereorder = False
        self._file = run / GROUPS
        self._groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:  # written by the workers before they report their tests
            found = json.loads(self._file.read_text()) if self._file.is_file() else {}
            self._groups = {str(k): str(v) for k, v in found.items()}
        return self._groups.get(nodeid, nodeid)
