"""The Reporter: what a person sees, what the log keeps, GitHub Actions groups, timings."""

from __future__ import annotations

import io
from pathlib import Path

from kiln._report import Reporter, strip_ansi


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_steps_show_details_stay_in_the_log(tmp_path: Path) -> None:
    screen = io.StringIO()
    report = Reporter(stream=screen, log_path=tmp_path / "kiln.log")
    report.step("==> wheels")
    report.detail("    $ python -m build")
    report.close()
    assert screen.getvalue() == "==> wheels\n"
    assert (tmp_path / "kiln.log").read_text() == "==> wheels\n    $ python -m build\n"


def test_verbose_shows_details_and_quiet_shows_nothing() -> None:
    loud, silent = io.StringIO(), io.StringIO()
    Reporter(stream=loud, verbose=True).detail("$ twine upload")
    Reporter(stream=silent, quiet=True).step("==> publish")
    assert loud.getvalue() == "$ twine upload\n"
    assert silent.getvalue() == ""


def test_stages_fold_into_github_actions_groups() -> None:
    screen = io.StringIO()
    report = Reporter(stream=screen, github_actions=True)
    report.stage("wheels", "wheels: building 4 helper(s)")
    report.detail("hidden")
    report.stage("publish", "publish: uploading 1 file(s)")
    report.finish()
    assert screen.getvalue().splitlines() == [
        "::group::wheels: building 4 helper(s)",
        "==> wheels: building 4 helper(s)",
        "::endgroup::",
        "::group::publish: uploading 1 file(s)",
        "==> publish: uploading 1 file(s)",
        "::endgroup::",
    ]


def test_timings_sum_per_stage_in_first_seen_order() -> None:
    screen, clock = io.StringIO(), Clock()
    report = Reporter(stream=screen, timings=True, clock=clock)
    report.stage("wheels", "wheels")
    clock.now += 1.5
    report.stage("image", "image base")
    clock.now += 2.0
    report.stage("image", "image analytics")
    clock.now += 3.25
    report.finish()
    assert report.spent == {"wheels": 1.5, "image": 5.25}
    assert screen.getvalue().splitlines()[-4:] == [
        "timings:",
        "  wheels     1.50 s",
        "  image      5.25 s",
        "  total      6.75 s",
    ]


def test_on_a_terminal_a_stage_spins_then_shows_its_duration(tmp_path: Path) -> None:
    screen, clock = io.StringIO(), Clock()
    report = Reporter(stream=screen, live=True, clock=clock, log_path=tmp_path / "kiln.log")
    report.stage("wheels", "wheels: building 4 helper(s)")
    report.step("    a line printed while the stage runs")
    clock.now += 1.25
    report.finish()
    report.close()
    shown = strip_ansi(screen.getvalue())
    assert "    a line printed while the stage runs" in shown
    assert "==> wheels: building 4 helper(s)  (1.2 s)" in shown
    # The log keeps plain lines, without the spinner's frames.
    assert (tmp_path / "kiln.log").read_text().splitlines() == [
        "==> wheels: building 4 helper(s)",
        "    a line printed while the stage runs",
    ]
