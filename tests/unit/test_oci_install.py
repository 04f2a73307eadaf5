"""Wheels installed as the image's filesystem: what pip leaves, collisions refused."""

from __future__ import annotations

import base64
import hashlib
import marshal
import stat
import sys
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from packaging.tags import Tag

from kiln._errors import ConfigError
from kiln._images.oci import install
from kiln._images.oci.install import InstallScheme, install_wheels
from kiln._images.oci.interpreter import HostPython
from kiln._images.oci.layer_files import LayerFiles

HOST_PYTHON = HostPython()  # unit tests compile with kiln's own interpreter (no base)

SITE = "/usr/local/lib/python3.11/dist-packages"
HOST = f"{sys.version_info[0]}.{sys.version_info[1]}"
TAG = sys.implementation.cache_tag
# Debian's layout (as probed from kiln-local/python:3.11-bookworm), with this host's
# Python so bytecode can be compiled here.
SCHEME = InstallScheme(
    python=HOST,
    cache_tag=TAG,
    executable="/usr/bin/python3",
    purelib=SITE,
    platlib=SITE,
    scripts="/usr/local/bin",
    data="/usr/local",
    include="/usr/include/python3.11",
)


def install_into(wheels: list[Path], root: Path, **options: Any) -> dict[str, str]:
    """``install_wheels`` (into memory), its files then written out under ``root``."""
    options.setdefault("what", "image t")
    options.setdefault("compiler", HOST_PYTHON)
    with LayerFiles() as files:
        owners = install_wheels(wheels, SCHEME, files, **options)
        files.write_out(root)
    return owners


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    files: Mapping[str, bytes],
    *,
    tag: str = "py3-none-any",
    executable: Iterable[str] = (),
    entry_points: str | None = None,
) -> Path:
    """A wheel as build backends write it: dist-info with METADATA, WHEEL and RECORD."""
    stem = f"{name.replace('-', '_')}-{version}"
    info = f"{stem}.dist-info"
    contents = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"
        ).encode(),
    }
    if entry_points:
        contents[f"{info}/entry_points.txt"] = entry_points.encode()
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in contents.items())
    contents[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in contents.items():
            entry = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
            mode = 0o755 if member in set(executable) else 0o644
            entry.external_attr = (stat.S_IFREG | mode) << 16
            archive.writestr(entry, data)
    return path


def tool_wheel(folder: Path, version: str = "1.0") -> Path:
    return make_wheel(
        folder,
        "tool",
        version,
        {
            "tool/__init__.py": b"VALUE = {'a', 'b', 'c'}\n",
            "tool/cli.py": b"def main():\n    return 0\n",
            "tool/broken.py": b"def oops(:\n",  # a template, not Python: pip skips it too
            "tool-1.0.data/scripts/run-tool": b"#!python\nprint('hi')\n",
        },
        executable=["tool-1.0.data/scripts/run-tool"],
        entry_points="[console_scripts]\ntool = tool.cli:main\n",
    )


def test_a_wheel_installs_like_pip_with_dist_info_record_and_bytecode(tmp_path: Path) -> None:
    root = tmp_path / "root"
    owners = install_into([tool_wheel(tmp_path / "w")], root, what="image t", compiler=HOST_PYTHON)

    site = root / SITE.lstrip("/")
    info = site / "tool-1.0.dist-info"
    assert sorted(p.name for p in info.iterdir()) == [
        "INSTALLER", "METADATA", "RECORD", "REQUESTED", "WHEEL", "entry_points.txt",
    ]  # fmt: skip
    assert (info / "INSTALLER").read_text() == "kiln\n"
    assert not (info / "direct_url.json").exists()
    record = (info / "RECORD").read_text().splitlines()
    paths = sorted(line.rsplit(",", 2)[0] for line in record)
    assert paths == sorted(
        [
            "../../../bin/run-tool",
            "../../../bin/tool",
            "tool-1.0.dist-info/INSTALLER",
            "tool-1.0.dist-info/METADATA",
            "tool-1.0.dist-info/RECORD",
            "tool-1.0.dist-info/REQUESTED",
            "tool-1.0.dist-info/WHEEL",
            "tool-1.0.dist-info/entry_points.txt",
            "tool/__init__.py",
            f"tool/__pycache__/__init__.{TAG}.pyc",
            f"tool/__pycache__/cli.{TAG}.pyc",
            "tool/broken.py",
            "tool/cli.py",
        ]
    )
    assert f"tool/__pycache__/cli.{TAG}.pyc,," in record  # no hash, as pip writes it
    assert not (site / "tool" / "__pycache__" / f"broken.{TAG}.pyc").exists()

    # Console scripts and .data scripts run with the image's interpreter, executable.
    for script in ("tool", "run-tool"):
        path = root / "usr/local/bin" / script
        assert path.read_text().splitlines()[0] == "#!/usr/bin/python3"
        assert path.stat().st_mode & 0o111
    assert owners[f"{SITE}/tool/cli.py"] == "tool-1.0-py3-none-any.whl"
    assert owners["/usr/local/bin/tool"] == "tool-1.0-py3-none-any.whl"


def test_bytecode_is_checked_hash_and_names_the_path_in_the_image(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install_into([tool_wheel(tmp_path / "w")], root, what="image t", compiler=HOST_PYTHON)
    pyc = (root / SITE.lstrip("/") / "tool" / "__pycache__" / f"cli.{TAG}.pyc").read_bytes()
    flags = int.from_bytes(pyc[4:8], "little")
    assert flags == 0b11  # hash-based, checked: no mtime in it, valid in a read-only image
    code = marshal.loads(pyc[16:])  # noqa: S302 - bytecode this test just compiled
    assert code.co_filename == f"{SITE}/tool/cli.py"


def test_two_wheels_writing_one_file_is_an_error_naming_both(tmp_path: Path) -> None:
    first = make_wheel(tmp_path, "alpha", "1.0", {"shared/util.py": b"A = 1\n"})
    second = make_wheel(tmp_path, "beta", "2.0", {"shared/util.py": b"B = 2\n"})
    with pytest.raises(ConfigError) as err:
        install_into([second, first], tmp_path / "root", what="image acme/x", compiler=HOST_PYTHON)
    assert str(err.value).startswith(
        f"image acme/x: alpha-1.0-py3-none-any.whl and beta-2.0-py3-none-any.whl both install "
        f"{SITE}/shared/util.py; a file must belong to one distribution"
    )


def test_namespace_package_folders_are_shared(tmp_path: Path) -> None:
    wheels = [
        make_wheel(tmp_path, "google-a", "1.0", {"google/a/__init__.py": b""}),
        make_wheel(tmp_path, "google-b", "1.0", {"google/b/__init__.py": b""}),
    ]
    owners = install_into(wheels, tmp_path / "root", what="image t", compiler=HOST_PYTHON)
    assert owners[f"{SITE}/google/a/__init__.py"] == "google_a-1.0-py3-none-any.whl"
    assert owners[f"{SITE}/google/b/__init__.py"] == "google_b-1.0-py3-none-any.whl"


def test_a_wheel_for_another_platform_is_refused(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "native", "1.0", {"native.py": b""}, tag="cp312-cp312-win_amd64")
    tags = frozenset({Tag("cp311", "cp311", "manylinux_2_28_x86_64"), Tag("py3", "none", "any")})
    with pytest.raises(ConfigError, match=r"native-1\.0-cp312-cp312-win_amd64\.whl does not fit"):
        install_into([wheel], tmp_path / "root", what="image t", compiler=HOST_PYTHON, tags=tags)


def test_a_damaged_wheel_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad-1.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"bad-1\.0-py3-none-any\.whl is not a valid wheel"):
        install_into([bad], tmp_path / "root", what="image t", compiler=HOST_PYTHON)


def test_many_sources_are_compiled_by_workers_to_the_bytes_of_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"big/m{i:03}.py": f"X = {{{i}, 'a', 'b'}}\n".encode() for i in range(120)}
    files["big/broken.py"] = b"def oops(:\n"
    wheel = make_wheel(tmp_path / "w", "big", "1.0", files)

    def installed(workers: int, root: Path) -> dict[str, bytes]:
        monkeypatch.setattr(install, "COMPILE_WORKERS", workers)
        install_into([wheel], root, what="image t", compiler=HOST_PYTHON, memo=None)
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    two, one = installed(2, tmp_path / "two"), installed(1, tmp_path / "one")
    assert two == one
    assert sum(name.endswith(".pyc") for name in two) == 120  # all but the broken one
    record = two[f"{SITE.lstrip('/')}/big-1.0.dist-info/RECORD"].decode()
    assert f"big/__pycache__/m119.{TAG}.pyc,," in record
    assert f"broken.{TAG}.pyc" not in record
