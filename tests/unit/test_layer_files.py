"""A Python layer's files held in memory: the tar a folder of the same files gives."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._images.oci.compress import GZIP
from kiln._images.oci.install import install_wheels
from kiln._images.oci.layer_files import LayerFiles
from kiln._images.oci.layers import write_layer, write_tar
from tests.unit.test_oci_install import HOST_PYTHON, SCHEME, make_wheel, tool_wheel
from tests.unit.test_oci_layers import FILES, make_tree


def _files(budget: int, spill: Path) -> LayerFiles:
    files = LayerFiles(budget=budget, spill=spill)
    for rel, (data, executable) in sorted(FILES.items(), reverse=True):
        files.add("/" + rel, data, executable=executable)
    return files


def _tar(write: object) -> bytes:
    out = io.BytesIO()
    write(out)  # type: ignore[operator]
    return out.getvalue()


@pytest.mark.parametrize("budget", [1 << 20, 0], ids=["in memory", "spilled"])
def test_the_tar_is_a_folder_of_the_same_files_tar_byte_for_byte(
    tmp_path: Path, budget: int
) -> None:
    old = os.umask(0o022)
    try:
        folder = make_tree(tmp_path / "folder", sorted(FILES), file_umask=0o022, seed=4)
    finally:
        os.umask(old)
    spill = tmp_path / "spill"
    spill.mkdir()
    with _files(budget, spill) as files:
        assert _tar(files.write_tar) == _tar(lambda out: write_tar(folder, out))
        assert files.write_layer(io.BytesIO(), GZIP) == write_layer(folder, io.BytesIO(), GZIP)
        assert bool(list(spill.iterdir())) == (budget == 0)  # spilled past the budget only
    assert list(spill.iterdir()) == []  # leaving removes what was spilled


def test_installed_wheels_tar_as_their_installed_folder_does(tmp_path: Path) -> None:
    wheels = [
        tool_wheel(tmp_path / "w"),
        make_wheel(tmp_path / "w", "google-a", "1.0", {"google/a/__init__.py": b"A = {1, 2}\n"}),
    ]
    with LayerFiles() as files:
        install_wheels(wheels, SCHEME, files, what="image t", compiler=HOST_PYTHON, memo=None)
        files.write_out(tmp_path / "root")
        assert _tar(files.write_tar) == _tar(lambda out: write_tar(tmp_path / "root", out))
        assert any(p.endswith(".pyc") for p in files)  # bytecode is in it too


def test_a_file_that_another_wheel_uses_as_a_folder_is_an_error_naming_both(
    tmp_path: Path,
) -> None:
    first = make_wheel(tmp_path, "alpha", "1.0", {"shared": b"a file\n"})
    second = make_wheel(tmp_path, "beta", "1.0", {"shared/util.py": b"B = 2\n"})
    with LayerFiles() as files, pytest.raises(ConfigError) as err:
        install_wheels([first, second], SCHEME, files, what="image t", compiler=HOST_PYTHON)
    site = SCHEME.purelib
    assert str(err.value).startswith(
        f"image t: alpha-1.0-py3-none-any.whl installs the file {site}/shared, and "
        f"beta-1.0-py3-none-any.whl installs {site}/shared/util.py as if it were a folder"
    )


def test_a_wheel_writing_outside_its_scheme_is_refused(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "evil", "1.0", {"ok.py": b""})
    with zipfile.ZipFile(wheel, "a") as archive:  # a member climbing out of the scheme
        archive.writestr("evil-1.0.data/scripts/../../../../../etc/passwd", b"root::0:0\n")
    with LayerFiles() as files, pytest.raises(ConfigError, match="is not a valid wheel"):
        install_wheels([wheel], SCHEME, files, what="image t", compiler=HOST_PYTHON)
    assert "/etc/passwd" not in files
