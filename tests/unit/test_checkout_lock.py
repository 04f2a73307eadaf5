"""The checkout lock (kiln._util.lock): one holder at a time, a waiter told who holds it,
a bounded wait, re-entry within a thread, no .kiln needed beforehand."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kiln._errors import ServiceUnavailable
from kiln._util.lock import checkout_lock

# A kiln run holding the lock, in a process of its own, until it is killed.
_HOLD = """
import sys, time
from pathlib import Path
from kiln._util.lock import checkout_lock
with checkout_lock(Path(sys.argv[1]), "kiln release", echo=print):
    print("held", flush=True)
    time.sleep(60)
"""


def _in_thread(state: Path, wait: float) -> tuple[list[str], BaseException | None, float]:
    said: list[str] = []
    failed: list[BaseException] = []
    spent: list[float] = []

    def other_run() -> None:
        start = time.monotonic()
        try:
            with checkout_lock(state, "kiln other", echo=said.append, wait=wait):
                pass
        except ServiceUnavailable as exc:
            failed.append(exc)
        spent.append(time.monotonic() - start)

    thread = threading.Thread(target=other_run)
    thread.start()
    thread.join(timeout=10)
    return said, failed[0] if failed else None, spent[0]


def test_a_second_run_waits_saying_who_holds_it_then_gives_up(tmp_path: Path) -> None:
    state = tmp_path / "repo" / ".kiln"  # not there yet
    with checkout_lock(state, "kiln release", echo=pytest.fail):
        assert (state / "lock").read_text() == f"{os.getpid()} kiln release\n"
        said, failed, spent = _in_thread(state, wait=0.3)
    assert said == [
        f"another kiln run holds {state / 'lock'} (pid {os.getpid()}, `kiln release`); waiting"
    ]
    assert failed is not None
    assert f"(pid {os.getpid()}, `kiln release`) still holds {state / 'lock'}" in str(failed)
    assert 0.3 <= spent < 3


def test_the_lock_is_free_once_released_and_reentrant_in_a_thread(tmp_path: Path) -> None:
    state = tmp_path / ".kiln"
    with (
        checkout_lock(state, "kiln release", echo=pytest.fail),
        checkout_lock(state, "kiln stack up", echo=pytest.fail),  # the release's own stack
    ):
        pass
    said, failed, _spent = _in_thread(state, wait=0.3)
    assert (said, failed) == ([], None)


def test_a_waiter_gets_the_lock_when_the_holder_ends(tmp_path: Path) -> None:
    state = tmp_path / ".kiln"
    held = checkout_lock(state, "kiln release", echo=pytest.fail)
    held.__enter__()
    threading.Timer(0.3, held.__exit__, (None, None, None)).start()
    said, failed, spent = _in_thread(state, wait=5)
    assert len(said) == 1
    assert failed is None
    assert spent < 2


def test_taking_a_free_lock_costs_nothing_measurable(tmp_path: Path) -> None:
    state = tmp_path / ".kiln"
    start = time.perf_counter()
    for _ in range(100):
        with checkout_lock(state, "kiln release", echo=pytest.fail):
            pass
    assert (time.perf_counter() - start) / 100 < 0.005


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path: Path) -> None:
    state = tmp_path / ".kiln"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(state)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        said, failed, _spent = _in_thread(state, wait=0.2)
        assert said == [
            f"another kiln run holds {state / 'lock'} (pid {holder.pid}, `kiln release`); waiting"
        ]
        holder.kill()
        holder.wait()
        said, failed, _spent = _in_thread(state, wait=0.2)
        assert (said, failed) == ([], None)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
