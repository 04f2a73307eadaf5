"""A helper wheel whose Python sources do not compile is refused before any upload,
naming the helper's own file and line (the wheel's are written here: no backend runs)."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest

from kiln._errors import ConfigError
from kiln._wheels import verify
from kiln._wheels.build import BuiltWheel
from kiln._wheels.verify import check_compiles
from kiln._workspace.model import Helper
from tests.unit.fakes import release_setup

GOOD = b'"""Contrast."""\n\n\ndef stretch(x: float) -> float:\n    return x * 2\n'
# The reproduction: a byte that is not UTF-8 inside a string literal.
NOT_UTF8 = b'"""Contrast."""\n\nLABEL = "contr\xe4st"\n'


def a_helper(tmp_path: Path, files: dict[str, bytes]) -> tuple[Helper, BuiltWheel]:
    """helpers/imgproc with ``files`` under src/, and its wheel holding the same bytes."""
    folder = tmp_path / "helpers" / "imgproc"
    wheel_path = tmp_path / "acme_imgproc-0.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel_path, "w") as wheel:
        for member, data in files.items():
            (folder / "src" / member).parent.mkdir(parents=True, exist_ok=True)
            (folder / "src" / member).write_bytes(data)
            wheel.writestr(member, data)
        wheel.writestr("acme_imgproc-0.2.1.dist-info/METADATA", "Name: acme-imgproc\n")
    helper = Helper("imgproc", folder, "acme-imgproc", "0.2.1", (), ())
    return helper, BuiltWheel("imgproc", "acme-imgproc", "0.2.1", wheel_path, "0" * 64)


def test_a_wheel_whose_sources_compile_passes(tmp_path: Path) -> None:
    helper, wheel = a_helper(
        tmp_path, {"imgproc/__init__.py": b"", "imgproc/_contrast.py": GOOD + b'X = "\\d"\n'}
    )
    check_compiles([wheel], [helper], tmp_path)  # an invalid escape only warns: no error


def test_a_byte_that_is_not_utf8_names_the_helper_file_line_and_fix(tmp_path: Path) -> None:
    helper, wheel = a_helper(
        tmp_path, {"imgproc/__init__.py": b"", "imgproc/_contrast.py": NOT_UTF8}
    )
    with pytest.raises(ConfigError) as err:
        check_compiles([wheel], [helper], tmp_path)
    message = str(err.value)
    assert err.value.exit_code == 3
    assert "1 Python file(s) of helper(s) imgproc do not compile" in message
    assert "nothing was published" in message
    assert (
        "  helpers/imgproc/src/imgproc/_contrast.py, line 3: SyntaxError: (unicode error) "
        "'utf-8' codec can't decode byte 0xe4"
    ) in message
    assert message.endswith(
        "Fix each file (save it as UTF-8, correct the syntax), then run the release again"
    )


def test_every_file_that_does_not_compile_is_named(tmp_path: Path) -> None:
    helper, wheel = a_helper(
        tmp_path,
        {
            "imgproc/__init__.py": b"from imgproc._contrast import stretch\n",
            "imgproc/_contrast.py": b"def stretch(:\n    pass\n",
            "imgproc/_equalize.py": b"x = 1\x00\n",
        },
    )
    with pytest.raises(ConfigError) as err:
        check_compiles([wheel], [helper], tmp_path)
    message = str(err.value)
    assert "helpers/imgproc/src/imgproc/_contrast.py, line 1: SyntaxError: invalid syntax" in (
        message
    )
    assert "helpers/imgproc/src/imgproc/_equalize.py: " in message  # null bytes: no line
    assert "__init__.py" not in message


def test_a_release_with_a_helper_that_does_not_compile_uploads_and_pushes_nothing(
    tmp_path: Path,
) -> None:
    setup = release_setup(tmp_path)
    source = setup.ws.helper("imgproc").path / "src" / "imgproc" / "__init__.py"
    source.write_bytes(NOT_UTF8)

    with pytest.raises(ConfigError, match=r"src/imgproc/__init__\.py, line 3: SyntaxError"):
        setup.release()
    assert (setup.index.uploads, setup.registry.tags) == ([], {})


def test_a_wheel_that_compiled_is_not_compiled_again_and_one_that_did_not_always_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A no-op release at N=500 compiled the 4500 sources of 500 unchanged wheels."""
    compiled: list[str] = []
    real = verify._problem

    def counting(data: bytes, member: str) -> tuple[int | None, str] | None:
        compiled.append(member)
        return real(data, member)

    monkeypatch.setattr(verify, "_problem", counting)
    memo = tmp_path / "memo"
    for folder in ("good", "bad"):
        (tmp_path / folder).mkdir()
    helper, wheel = a_helper(tmp_path / "good", {"imgproc/__init__.py": GOOD})
    check_compiles([wheel], [helper], tmp_path, memo=memo)
    check_compiles([wheel], [helper], tmp_path, memo=memo)
    assert compiled == ["imgproc/__init__.py"]  # remembered by the wheel's sha256
    helper, bad = a_helper(tmp_path / "bad", {"imgproc/__init__.py": NOT_UTF8})
    bad = dataclasses.replace(bad, sha256="1" * 64)
    for _ in range(2):
        with pytest.raises(ConfigError):
            check_compiles([bad], [helper], tmp_path, memo=memo)
    assert len(compiled) == 3
    check_compiles([wheel], [helper], tmp_path)  # without a memo: compiled
    assert len(compiled) == 4
