"""The commands the docs tell people to run are commands kiln accepts, and an example
output the docs show is what kiln prints for this repo."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest

from kiln._cli import parser
from tests.unit.cli import run

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(?:sh|bash|console|shell)\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
_CHOICES = re.compile(r"[\w-]+(\|[\w-]+)+")


def kiln_commands(text: str) -> list[list[str]]:
    """Each `kiln ...` line of a shell block, as argv without `kiln`: comments and
    redirections dropped, and `a|b|c` (the docs' way to list choices) one argv each."""
    found: list[list[str]] = []
    for block in _FENCE.findall(text):
        for raw in block.splitlines():
            line = raw.strip().removeprefix("$ ")
            if not line.startswith("kiln "):
                continue
            words = [w for w in shlex.split(line, comments=True)[1:] if not w.startswith(">")]
            choices = [
                w.split("|") if re.fullmatch(r"[\w-]+(\|[\w-]+)+", w) else [w] for w in words
            ]
            found.extend(list(argv) for argv in itertools.product(*choices))
    return found


def test_kiln_commands_expands_choices_and_drops_comments_and_redirections() -> None:
    text = '```sh\nkiln stack up|down   # x\n$ kiln lock --json >"$T/o.json"\necho kiln\n```\n'
    assert kiln_commands(text) == [["stack", "up"], ["stack", "down"], ["lock", "--json"]]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_kiln_command_in_the_docs_parses(doc: Path) -> None:
    commands = kiln_commands(doc.read_text(encoding="utf-8"))
    for argv in commands:
        try:
            parser().parse_args(argv)
        except SystemExit as exc:  # argparse's usage error
            pytest.fail(f"{doc.name}: `kiln {shlex.join(argv)}` is not a valid command ({exc})")


def test_the_docs_show_kiln_commands() -> None:
    # The parse test above is only as good as what it finds.
    assert len(kiln_commands((ROOT / "README.md").read_text(encoding="utf-8"))) >= 15
    assert kiln_commands((ROOT / "docs" / "adding-a-helper.md").read_text(encoding="utf-8"))


def test_the_bump_example_in_adding_a_helper_is_what_kiln_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = (ROOT / "docs" / "adding-a-helper.md").read_text(encoding="utf-8")
    command = "kiln bump dataquality patch --dry-run"
    shown = re.search(rf"```sh\n{re.escape(command)}\n```\n\n```\n(.*?)```", text, re.DOTALL)
    assert shown is not None, f"adding-a-helper.md no longer shows `{command}` and its output"
    code, out, _ = run(capsys, *shlex.split(command)[1:], "--repo", str(ROOT))
    assert code == 0
    assert out.splitlines() == shown.group(1).splitlines()
