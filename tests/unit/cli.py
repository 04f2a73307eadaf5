"""Running the CLI in-process, as a test sees it: exit code, stdout, stderr."""

from __future__ import annotations

import pytest

from kiln._cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exc.value.code
    assert isinstance(code, int)
    return code, out, err
