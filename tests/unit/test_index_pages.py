"""Simple pages asked for at once: ``files_of``, and the release's plan and ``kiln check``
that read a page per helper through it (200 pages one at a time were 2.6 s of a 6.3 s
``kiln check`` of 200 helpers)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kiln._errors import ServiceUnavailable
from kiln._release.check import check
from kiln._release.prepare import kfp_version, prepare
from kiln._release.stages import make_plan
from kiln._servers.index import files_of
from kiln._workspace.discovery import discover
from tests import factory
from tests.unit.fakes import FakeIndex, Setup, release_setup

WAIT = 2.0  # how long a page waits for a second one in flight before answering alone


@dataclass
class OverlapIndex(FakeIndex):
    """A FakeIndex whose pages each wait (up to ``WAIT`` s) until two were in flight at
    once: asked one at a time, ``peak`` stays 1."""

    peak: int = 0
    asked: list[str] = field(default_factory=list)
    _in_flight: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def files(self, project: str) -> Mapping[str, str]:
        with self._cond:
            self.asked.append(project)
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.peak >= 2, timeout=WAIT)
            self._in_flight -= 1
        return super().files(project)


def test_files_of_asks_for_pages_at_once_and_each_project_once() -> None:
    index = OverlapIndex(published={"a": {"a-1.whl": "1" * 64}, "b": {}})

    got = files_of(index, ["a", "b", "a", "c"])

    assert index.peak >= 2
    assert sorted(index.asked) == ["a", "b", "c"]
    assert list(got) == ["a", "b", "c"]
    assert got == {"a": {"a-1.whl": "1" * 64}, "b": {}, "c": {}}


def test_files_of_keeps_to_its_bound() -> None:
    index = OverlapIndex()
    files_of(index, [f"p{i}" for i in range(12)], workers=3)
    assert 2 <= index.peak <= 3
    assert len(index.asked) == 12


def test_files_of_raises_the_first_failing_project_in_order() -> None:
    @dataclass
    class Failing(FakeIndex):
        def files(self, project: str) -> Mapping[str, str]:
            if project in ("b", "d"):
                raise ServiceUnavailable(f"package index answered 503 for {project}")
            return {}

    with pytest.raises(ServiceUnavailable, match=r"for b$"):
        files_of(Failing(), ["a", "b", "c", "d"])


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    found = release_setup(tmp_path)
    found.index = OverlapIndex()
    return found


def test_the_release_plan_reads_its_pages_at_once(setup: Setup) -> None:
    assert isinstance(setup.index, OverlapIndex)
    prepared = prepare(setup.ws, setup.services)  # reads the wheels' pages too
    setup.index.asked.clear()
    setup.index.peak = 0

    plan = make_plan(setup.ws, prepared, setup.services)

    assert setup.index.peak >= 2
    # Each project asked once: the helper's and the mirrored wheels' (numpy, kfp).
    assert sorted(setup.index.asked) == sorted(set(setup.index.asked))
    assert {"acme-imgproc", "numpy", "kfp"} <= set(setup.index.asked)
    assert {s.project for s in plan.files} <= set(setup.index.asked)


def test_kiln_check_reads_the_helpers_pages_at_once(setup: Setup) -> None:
    factory.helper(setup.ws.root, "tables", deps=())
    ws = discover(setup.ws.root)
    wheels = prepare(ws, setup.services, images=False).wheels
    assert len(wheels) == 2
    assert isinstance(setup.index, OverlapIndex)
    assert setup.index.asked == []  # wheels alone: no page read

    result = check(
        ws,
        (*wheels, *wheels),  # the same wheels twice: each page once
        index=setup.index,
        registry=setup.registry,
        kfp_version=kfp_version(),
        recorded={},
    )

    assert setup.index.peak >= 2
    assert sorted(setup.index.asked) == ["acme-imgproc", "acme-tables"]
    todo = {f.subject for f in result.findings if f.message.endswith("is not published yet")}
    assert todo == {"imgproc", "tables"}
