"""Running the CLI in-process, as a test sees it: exit code, stdout, stderr."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

import pytest

from kiln._cli import main
from kiln._cli import release as release_cli
from kiln._cli import release_modes as release_modes_cli
from kiln._cli.context import context as command_context
from kiln._context import Context, Services


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exc.value.code
    assert isinstance(code, int)
    return code, out, err


def release_commands_over(
    monkeypatch: pytest.MonkeyPatch, services: Callable[[], Services]
) -> None:
    """``kiln release`` and ``kiln plan`` run over ``services()`` (fake servers), asked
    each time a command starts, instead of the real ones."""

    def over_fakes(args: argparse.Namespace) -> Context:
        return dataclasses.replace(command_context(args), services=services())

    monkeypatch.setattr(release_cli, "context", over_fakes)
    monkeypatch.setattr(release_modes_cli, "context", over_fakes)
