"""``capture``: a program started by its path with exactly the environment given, its
stdout as data, and stderr's tail in the error when it fails."""

from __future__ import annotations

import sys

import pytest

from kiln._errors import CommandFailed
from kiln._util.cmd import capture

SCRIPT = """\
import os, sys
print(sorted(k for k in os.environ if k != "LC_CTYPE"))
print("a warning", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


def test_stdout_alone_is_the_result_and_only_the_given_environment_is_seen() -> None:
    out = capture([sys.executable, "-c", SCRIPT, "0"], what="probe", env={"ONLY": "1"})
    assert out == "['ONLY']\n"  # stderr kept apart, nothing of kiln's environment


def test_a_failure_names_what_ran_with_the_tail_of_stderr() -> None:
    with pytest.raises(CommandFailed) as err:
        capture([sys.executable, "-c", SCRIPT, "3"], what="the base's python3", env={})
    assert str(err.value) == "the base's python3 failed (exit 3):\na warning"
    assert err.value.returncode == 3


def test_a_program_that_cannot_start_is_named() -> None:
    with pytest.raises(CommandFailed, match=r"^probe: cannot start /nonexistent/python3 \("):
        capture(["/nonexistent/python3"], what="probe", env={})
