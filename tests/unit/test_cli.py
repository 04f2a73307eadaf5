"""The CLI: exit codes per error class, messages on stderr, --help that teaches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiln._release.plan import FileCandidate, ImageCandidate, plan_release
from kiln._release.plan import plan_text as _plan_text
from tests import factory
from tests.unit.cli import run


def test_help_teaches_the_stages_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for text in (
        "release --local --dry-run",
        "KILN_NO_WHEEL_CACHE",
        "KILN_REGISTRY_PASSWORD",
        "DOCKER_HOST",
        "4 conflict with a published",
        "8 published artifact altered on the server",
        ".kiln/logs/COMMAND.log",
    ):
        assert text in out


def test_build_prints_wheels_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = factory.sample(tmp_path)
    code, out, _ = run(capsys, "build", "--repo", str(root), "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["filename"] == "acme_imgproc-0.1.0-py3-none-any.whl"
    assert Path(row["path"]).is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ("--json", "--repo", "{root}", "-q", "build"),  # before the command, as the README has it
        ("build", "--json", "--repo", "{root}", "-q"),
        ("--repo", "{root}", "build", "-q", "--json"),  # some before, some after
    ],
)
def test_common_options_go_before_or_after_the_command(
    argv: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = factory.sample(tmp_path)
    code, out, err = run(capsys, *(a.format(root=root) for a in argv))
    assert code == 0, err
    assert [row["filename"] for row in json.loads(out)] == ["acme_imgproc-0.1.0-py3-none-any.whl"]
    assert err == ""  # -q: only errors


def test_bad_input_exits_3_naming_file_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = factory.sample(tmp_path)
    (root / "images" / "base" / "image.toml").write_text("[image]\nversion = 1.0.0\n")
    code, out, err = run(capsys, "build", "--repo", str(root))
    assert code == 3
    assert out == ""
    assert err.startswith("kiln: bad input: ")
    assert "images/base/image.toml: not valid TOML" in err
    assert "fix the syntax" in err


def test_outside_a_monorepo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "build")
    assert code == 3
    assert "pass --repo PATH" in err


def test_release_needs_a_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = factory.sample(tmp_path)
    code, _, err = run(capsys, "release", "--repo", str(root))
    assert code == 3
    assert "give --local, or both --index URL and --registry HOST[:PORT]" in err


def test_run_unknown_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = factory.sample(tmp_path)
    code, _, err = run(capsys, "run", "nope", "--repo", str(root))
    assert code == 3
    assert "no pipeline 'nope' under pipelines/ (known: demo)" in err


def test_run_before_release(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = factory.sample(tmp_path)
    code, _, err = run(capsys, "run", "demo", "--repo", str(root))
    assert code == 3
    assert "no generated components; run `kiln release --local`" in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "stack", "sideways")
    assert code == 2
    assert "invalid choice" in err


def test_the_text_plan_gives_each_reason() -> None:
    helper = FileCandidate("helper", "acme-imgproc", "0.1.0", Path("a/acme_imgproc-0.1.0.whl"), "a")
    mirror = FileCandidate("mirror", "numpy", "2.0", Path("c/numpy-2.0-py3-none-any.whl"), "c")
    image = ImageCandidate("base", "0.1.0", "acme/base", "sha256:f", Path("images/base/image.toml"))
    plan = plan_release(
        [(helper, {}), (mirror, {"numpy-2.0-py3-none-any.whl": "c"})],
        [(image, "sha256:d")],
        [],
        [],
    )
    text = _plan_text(plan)
    assert "  publish  acme_imgproc-0.1.0.whl: not on the index yet" in text
    assert "1 third-party wheel(s): 0 not on the index yet, 1 already there" in text
    assert text.splitlines()[-1].startswith("  refuse   images/base: acme/base:0.1.0 is already")
    assert "bump version in images/base/image.toml" in text


def test_a_pipeline_whose_build_raises_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = factory.sample(tmp_path)
    factory.write(root / "pipelines" / "demo.py", "def build(load):\n    return 1 / 0\n")
    factory.write(root / "pipelines" / "components" / "generated" / "double.yaml", "{}\n")
    code, _, err = run(capsys, "run", "demo", "--repo", str(root))
    assert code == 3
    assert f"kiln: bad input: {root / 'pipelines' / 'demo.py'}: build(load) failed" in err
    assert "ZeroDivisionError: division by zero" in err
    assert "Traceback" not in err
