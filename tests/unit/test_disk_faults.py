"""A full disk where kiln writes is a disk fault (exit 10) naming the path and the fix:
never bad input, never a traceback. ``/dev/full`` gives a real ENOSPC on every write,
without a mount: a symlink to it stands for a file on a full disk."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from kfp import compiler

from kiln._components.generate import compile_pipeline, generate_component
from kiln._errors import EXIT_CODES, DiskFault, disk_fault, writing
from kiln._workspace.discovery import discover
from tests import factory
from tests.unit.cli import run

FAKE_REF = "reg.invalid/acme/base@sha256:" + "0" * 64
FULL = Path("/dev/full")

pytestmark = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")


def test_disk_fault_has_its_own_exit_code() -> None:
    assert EXIT_CODES["disk fault"] == DiskFault.exit_code == 10
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.ENOSPC, "free space on its filesystem"),
        (errno.EDQUOT, "free space on its filesystem"),
        (errno.EROFS, "mount it writable"),
        (errno.EACCES, "make it writable by this user"),
        (errno.EPERM, "make it writable by this user"),
    ],
)
def test_each_disk_error_names_the_path_and_the_fix(code: int, fix: str) -> None:
    with pytest.raises(DiskFault) as caught, writing("/srv/repo/dist"):
        raise OSError(code, "it failed")
    message = str(caught.value)
    assert message.startswith("cannot write /srv/repo/dist (it failed): ")
    assert fix in message
    assert "re-run" in message
    # without a path from the caller (the CLI's last resort): the file the error names,
    # a copy's destination rather than its source
    named = disk_fault(OSError(code, "it failed", "/srv/repo/dist/manifest.json"))
    assert str(named).startswith("cannot write /srv/repo/dist/manifest.json (it failed)")
    copied = disk_fault(OSError(code, "it failed", "/srv/staging/a.whl", None, "/srv/dist/a.whl"))
    assert str(copied).startswith("cannot write /srv/dist/a.whl (it failed)")


def test_other_os_errors_pass_unchanged() -> None:
    with pytest.raises(FileNotFoundError), writing("/srv/repo/dist"):
        raise FileNotFoundError(errno.ENOENT, "gone")


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """KFP's compiler meets a full disk writing its file (kiln compiles into a folder of
    its own beside the target, so no file of the test's can stand for the disk)."""

    def compile_on_full_disk(self: object, func: object, package_path: str) -> None:
        with Path(package_path).open("w") as fh, FULL.open("w") as full:
            fh.write("")
            full.write("x" * 65536)
            full.flush()

    monkeypatch.setattr(compiler.Compiler, "compile", compile_on_full_disk)


def test_enospc_compiling_a_pipeline_is_a_disk_fault_not_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = discover(factory.sample(tmp_path / "repo"))
    components = tmp_path / "components"
    generate_component(ws.components[0], FAKE_REF, components)
    out = tmp_path / "pipelines"
    _full_disk(monkeypatch)
    with pytest.raises(DiskFault) as caught:
        compile_pipeline(ws.pipelines[0], components, out)
    message = str(caught.value)
    assert f"cannot write {out / 'demo.yaml'} (No space left on device)" in message
    assert "free space" in message


def test_enospc_writing_a_component_yaml_is_a_disk_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = discover(factory.sample(tmp_path / "repo"))
    out = tmp_path / "components"
    _full_disk(monkeypatch)
    with pytest.raises(DiskFault, match=r"double\.yaml \(No space left on device\): free space"):
        generate_component(ws.components[0], FAKE_REF, out)


def test_a_full_disk_under_the_log_exits_10_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = factory.sample(tmp_path / "repo")
    logs = root / ".kiln" / "logs"
    logs.mkdir(parents=True)
    (logs / "bump.log").symlink_to(FULL)
    code, _, err = run(capsys, "bump", "imgproc", "patch", "--repo", str(root))
    assert code == 10, err
    assert f"kiln: disk fault: cannot write {logs / 'bump.log'} (No space left on device)" in err
    assert "Traceback" not in err
