"""Faults injected into `kiln release` against real servers: network faults through a
proxy before the index and the registry, SIGKILL and SIGTERM at every stage line, a full
and a read-only disk under dist/. For each, the release completes or fails cleanly (an
exit code of kiln's, its message, no traceback), and a re-run without the fault ends
with every artifact once: the index and the registry hold exactly what the manifests
name, `kiln check` passes, and the canary password is in no file.

The tests run in order on one copy (the module's ``faulty``); each adds the faults it
injected to the tally the last one checks, once per (fault, point) pair (issue 18's
target: at least 40)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import _unavailable
from tests.e2e.faults.conftest import Faulty, bump, clean
from tests.e2e.faults.proxy import Fault

pytestmark = pytest.mark.e2e

KILN = "python-requests"  # kiln's own registry requests, not the engine's pulls
SIMPLE = r"^/simple/"


def _expected(faulty: Faulty) -> tuple[dict[str, str], dict[str, str]]:
    """What the servers should hold after ``faulty``'s last complete release: what they
    held before it, and each file and image its manifest names."""
    manifest = json.loads((faulty.root / "dist" / "manifest.json").read_text())
    files = dict(faulty.files)
    files.update({w["filename"]: w["sha256"] for w in manifest["wheels"]})
    tags = dict(faulty.tags)
    for image in manifest["images"]:
        tags[f"{image['repository'].split('/', 1)[1]}:{image['tag']}"] = image["digest"]
    return files, tags


def _settled(faulty: Faulty) -> None:
    """A re-run without faults completes; then every artifact is there once, as a clean
    release leaves it, `kiln check` passes and no file holds the canary."""
    proc = faulty.release()
    assert proc.returncode == 0, proc.stderr
    files, tags = faulty.published()
    want_files, want_tags = _expected(faulty)
    assert set(files) >= set(want_files)
    assert {f: files[f] for f in want_files} == want_files
    assert tags == want_tags
    faulty.files, faulty.tags = files, tags
    checked = faulty.kiln("check", *faulty.target)
    assert checked.returncode == 0, checked.stderr
    assert faulty.leaks() == []


# ------------------------------------------------------------------ reads: retried
def test_transient_faults_on_reads_are_retried_and_the_release_completes(
    faulty: Faulty,
) -> None:
    before = faulty.published()
    faults = (
        Fault("status", "GET", r"^/simple/$", status=503),  # one 503 on a simple page
        Fault("drop", "GET", r"^/simple/$", nth=2),
        Fault("status", "GET", r"^/simple/kfp/$", status=502),
        Fault("status", "GET", r"^/simple/numpy/$", status=504),
        Fault("reset", "GET", r"^/simple/acme-viz/$"),
        Fault("drop", "GET", r"^/simple/pandas/$"),
        Fault("delay", "GET", r"^/simple/acme-imgproc/$", seconds=2.0),
        Fault("status", "GET", r"^/simple/pillow/$", status=503, times=2),
        Fault("status", "GET", r"^/v2/$", status=503, agent=KILN),
        Fault("drop", "HEAD", r"^/v2/.*/manifests/", agent=KILN),
        Fault("status", "HEAD", r"^/v2/.*/manifests/", nth=2, status=502, agent=KILN),
        Fault("reset", "HEAD", r"^/v2/.*/manifests/", nth=3, agent=KILN),
        Fault("delay", "GET", r"^/v2/$", nth=2, seconds=2.0, agent=KILN),
    )
    count = len(faulty.injected)
    proc = faulty.release(*faults)
    assert proc.returncode == 0, proc.stderr
    assert "everything is already on the index" in proc.stderr
    assert len(faulty.injected) - count >= 13, faulty.injected[count:]
    assert faulty.published() == before


# ------------------------------------------------------------------ a server that stays down
@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (Fault("status", "GET", r"^/simple/$", times=30), "/simple/ answered 503"),
        (
            Fault("status", "GET", r"^/simple/acme-viz/$", times=30),
            "/simple/acme-viz/ answered 503",
        ),
        (Fault("status", "GET", SIMPLE, times=30, status=502), "answered 502"),
        (Fault("truncate", "GET", r"^/simple/acme-tabular/$", times=30), "failed while answering"),
        (Fault("drop", "GET", SIMPLE, times=30), "failed while answering"),
        (
            Fault("status", "HEAD", r"^/v2/.*/manifests/", times=30, agent=KILN),
            "/manifests/0.2.0 answered 503",
        ),
        (Fault("reset", "GET", r"^/v2/$", times=30, agent=KILN), "failed while answering"),
    ],
    ids=[
        "503-ping",
        "503-page",
        "502-every-page",
        "truncated-page",
        "dropped",
        "503-registry",
        "reset-registry",
    ],
)
def test_a_server_failing_every_time_is_a_service_fault_naming_it(
    faulty: Faulty, fault: Fault, said: str
) -> None:
    proc = faulty.release(fault)
    clean(proc)
    assert proc.returncode == 5, proc.stderr
    assert said in proc.stderr
    assert "fix the index URL" not in proc.stderr
    assert "fix the registry address" not in proc.stderr


# ------------------------------------------------------------------ writes: retried
def test_transient_faults_while_publishing_and_pushing_are_survived(faulty: Faulty) -> None:
    bump(faulty)
    faults = (
        Fault("status", "POST", r"^/$", status=503),  # twine's own retry
        Fault("drop", "POST", r"^/$", nth=2),  # kiln's: twine again, skipping what is stored
        Fault("truncate", "POST", r"^/$", nth=3),  # stored, but the answer is lost
        Fault("status", "GET", r"^/simple/acme-viz/$", nth=2, status=503),
        Fault("drop", "HEAD", r"^/v2/.*/blobs/", agent=KILN),
        Fault("status", "POST", r"^/v2/.*/blobs/uploads/", status=503, agent=KILN),
        Fault("status", "PUT", r"^/v2/.*/blobs/uploads/", status=502, agent=KILN),
        Fault("reset", "PUT", r"^/v2/.*/blobs/uploads/", nth=2, agent=KILN),
        Fault("truncate", "PUT", r"^/v2/.*/blobs/uploads/", nth=3, agent=KILN),
        Fault("status", "PUT", r"^/v2/.*/manifests/", status=504, agent=KILN),
        Fault("drop", "PUT", r"^/v2/.*/manifests/", nth=2, agent=KILN),
    )
    count = len(faulty.injected)
    proc = faulty.release(*faults)
    clean(proc)
    assert len(faulty.injected) - count >= 9, (faulty.injected[count:], proc.stderr[-1500:])
    _settled(faulty)


# ------------------------------------------------------------------ a full or read-only disk
@contextlib.contextmanager
def _tmpfs(folder: Path, size: str = "2m") -> Iterator[Path]:
    """``folder`` on a small tmpfs of its own holding what it held; restored after."""
    kept = folder.with_name(folder.name + ".kept")
    folder.mkdir(parents=True, exist_ok=True)
    folder.rename(kept)
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        folder.rmdir()
        kept.rename(folder)
        _unavailable(f"cannot mount a tmpfs here (not root?): {mounted.stderr.strip()}")
    try:
        shutil.copytree(kept, folder, dirs_exist_ok=True)
        yield folder
    finally:
        shutil.rmtree(kept)
        shutil.copytree(folder, kept, symlinks=True, ignore=shutil.ignore_patterns("filler"))
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()
        kept.rename(folder)


def _fill(folder: Path) -> None:
    """Every free byte of ``folder``'s filesystem taken by one file."""
    with (folder / "filler").open("wb", buffering=0) as fh:
        for size in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * size)


def test_a_full_then_read_only_dist_after_a_publish_is_a_disk_fault(faulty: Faulty) -> None:
    bump(faulty)
    dist = faulty.root / "dist"
    with _tmpfs(dist) as folder:
        _fill(folder)
        full = faulty.release()
        clean(full)
        assert full.returncode == 10, full.stderr
        assert f"kiln: disk fault: cannot write {dist}" in full.stderr, full.stderr[-800:]
        assert "No space left on device): free space on its filesystem" in full.stderr
        faulty.injected.append("ENOSPC in dist/ after a publish")
        files, _ = faulty.published()
        assert set(files) > set(faulty.files)  # the new wheel went out before the fault
        (folder / "filler").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        read_only = faulty.release()
        clean(read_only)
        assert read_only.returncode == 10, read_only.stderr
        assert f"kiln: disk fault: cannot write {dist}" in read_only.stderr, read_only.stderr[-800:]
        assert "Read-only file system): mount it writable" in read_only.stderr
        faulty.injected.append("EROFS in dist/")
        subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=True)
    _settled(faulty)


def test_a_full_disk_while_compiling_a_pipeline_is_a_disk_fault(faulty: Faulty) -> None:
    pipeline = sorted((faulty.root / "pipelines").glob("*.py"))[0]
    source = pipeline.read_text()
    # a source no cache has seen: the pipeline is compiled, not copied from the cache
    pipeline.write_text(f"{source}\n# {uuid.uuid4()}\n")
    with _tmpfs(faulty.root / "dist" / "pipelines") as folder:
        for old in folder.glob("*.yaml"):
            old.unlink()
        _fill(folder)
        proc = faulty.release()
        clean(proc)
        assert proc.returncode == 10, proc.stderr[-800:]
        target = folder / f"{pipeline.stem}.yaml"
        assert f"kiln: disk fault: cannot write {target} (No space left" in proc.stderr, (
            proc.stderr[-800:]
        )
        assert "bad input" not in proc.stderr
        faulty.injected.append("ENOSPC compiling a pipeline")
    _settled(faulty)
    pipeline.write_text(source)


# ------------------------------------------------------------------ kills
STAGES = (
    "wheels:", "wheelhouse:", r"image \S+: building", "publish:", r"image \S+: pushing",
    "components:", "manifest:",
)  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_release_killed_at_each_stage_line_is_finished_by_a_re_run(
    faulty: Faulty, sig: signal.Signals
) -> None:
    bump(faulty)
    killed = []
    for stage in STAGES:
        hit, printed = faulty.killed_at(stage, sig)
        assert "Traceback" not in printed, printed
        assert faulty.leaks() == [], stage
        killed.append(hit)
    assert sum(killed) >= len(STAGES) - 1, dict(zip(STAGES, killed, strict=True))
    _settled(faulty)


# ------------------------------------------------------------------ the tally
def test_at_least_40_faults_were_injected_and_survived(faulty: Faulty) -> None:
    assert faulty.leaks() == []
    print(f"\nfaults injected and survived: {len(faulty.injected)}")
    for point in faulty.injected:
        print(f"  {point}")
    assert len(faulty.injected) >= 40
