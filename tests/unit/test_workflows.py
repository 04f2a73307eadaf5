"""The GitHub Actions workflows, checked offline by the tools CI would use.

check-jsonschema validates each workflow against the GitHub workflow schema it bundles
(`--builtin-schema`, `--no-cache`: nothing is downloaded); zizmor audits them with its
offline audits only. Each check must also fail on a copy broken the way it should catch.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.workflow_steps import run_steps

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ["ci.yml", "release.yml", "dev.yml"]
ZIZMOR = Path(sys.executable).parent / "zizmor"
# --offline: only the audits that need no GitHub API (and no download of anything).
# --persona=pedantic: the regular audits (unpinned uses, template injection, credential
#   persistence, excessive permissions, cache poisoning, ...) plus the code-smell ones;
#   the workflows are small enough to keep at zero findings, so every finding fails
#   (no --min-severity). The one exception is an inline `zizmor: ignore` with its reason
#   (ci.yml's test container follows Debian's point releases).
# --no-config: a zizmor.yml lying around cannot switch an audit off.
ZIZMOR_FLAGS = ["--offline", "--no-config", "--persona=pedantic", "--format=plain", "--color=never"]
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def check_jsonschema(workflow: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--no-cache",
         "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def zizmor(workflow: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ZIZMOR), *ZIZMOR_FLAGS, str(workflow)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def broken_copy(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """``name`` with the first ``old`` replaced by ``new``, in ``tmp_path``."""
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    assert old in text, f"{name} no longer holds {old!r}: update the test"
    copy = tmp_path / name
    copy.write_text(text.replace(old, new, 1), encoding="utf-8")
    return copy


def first_run_line(name: str) -> str:
    match = re.search(r"^ +run: .*$", (WORKFLOWS / name).read_text(encoding="utf-8"), re.M)
    assert match is not None, f"{name} has no one-line `run:` step"
    return match.group(0)


@pytest.mark.parametrize("name", NAMES)
def test_workflow_matches_githubs_schema(name: str) -> None:
    proc = check_jsonschema(WORKFLOWS / name)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_workflow_has_no_zizmor_finding(name: str) -> None:
    proc = zizmor(WORKFLOWS / name)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_schema_check_fails_without_runs_on(tmp_path: Path, name: str) -> None:
    copy = broken_copy(tmp_path, name, "    runs-on: ubuntu-24.04\n", "")
    proc = check_jsonschema(copy)
    assert proc.returncode != 0, proc.stdout
    assert "runs-on" in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_schema_check_fails_on_a_misspelled_trigger(tmp_path: Path, name: str) -> None:
    copy = broken_copy(tmp_path, name, "\non:\n", "\nonn:\n")
    proc = check_jsonschema(copy)
    assert proc.returncode != 0, proc.stdout


@pytest.mark.parametrize("name", NAMES)
def test_zizmor_fails_on_an_action_pinned_by_tag(tmp_path: Path, name: str) -> None:
    copy = broken_copy(
        tmp_path,
        name,
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2",
        "actions/checkout@v4",
    )
    proc = zizmor(copy)
    assert proc.returncode != 0, proc.stdout
    assert "unpinned-uses" in proc.stdout


@pytest.mark.parametrize("name", NAMES)
def test_zizmor_fails_on_an_expression_in_a_script(tmp_path: Path, name: str) -> None:
    line = first_run_line(name)
    indent = line[: line.index("run:")]
    copy = broken_copy(
        tmp_path, name, line, f'{indent}run: echo "${{{{ github.event.head_commit.message }}}}"'
    )
    proc = zizmor(copy)
    assert proc.returncode != 0, proc.stdout
    assert "template-injection" in proc.stdout


@pytest.mark.parametrize("name", NAMES)
def test_every_action_is_pinned_by_commit_with_its_version(name: str) -> None:
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    uses = re.findall(r"^ *(?:- )?uses: (.*)$", text, re.M)
    assert uses
    for ref in uses:
        assert SHA_PIN.match(ref), f"{name}: {ref!r} is not `owner/repo@<40 hex> # vX.Y.Z`"


def test_each_action_has_one_pin_across_workflows() -> None:
    pins: dict[str, set[str]] = {}
    for name in NAMES:
        text = (WORKFLOWS / name).read_text(encoding="utf-8")
        for action, ref in re.findall(r"uses: ([^@\s]+)@(\S+)", text):
            pins.setdefault(action, set()).add(ref)
    assert {action: refs for action, refs in pins.items() if len(refs) > 1} == {}


@pytest.mark.parametrize("name", NAMES)
def test_scripts_take_every_value_from_the_environment(name: str) -> None:
    # Values reach scripts through `env:` only; an expression in a script is spliced into
    # the shell source before it runs (zizmor flags only the contexts it knows to be unsafe).
    for job in yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))["jobs"]:
        for _, script in run_steps(WORKFLOWS / name, job):
            assert "${{" not in script, f"{name}, job {job}: {script!r}"


def test_release_steps_from_release_yml() -> None:
    steps = run_steps(WORKFLOWS / "release.yml", "release")
    scripts = [script for _, script in steps]
    assert scripts[0] == "python -m pip install -e ."
    (env, script), *_ = [s for s in steps if s[1].startswith("kiln release --tag ")]
    assert script == (
        'kiln release --tag "$GITHUB_REF_NAME" --index "$KILN_INDEX_URL" '
        '--registry "$KILN_REGISTRY"'
    )
    assert env == {
        "KILN_INDEX_URL": "${{ vars.KILN_INDEX_URL }}",
        "KILN_REGISTRY": "${{ vars.KILN_REGISTRY }}",
        "KILN_BASE_IMAGE": "${{ vars.KILN_BASE_IMAGE }}",
        "KILN_INDEX_USERNAME": "${{ secrets.KILN_INDEX_USERNAME }}",
        "KILN_INDEX_PASSWORD": "${{ secrets.KILN_INDEX_PASSWORD }}",
        "KILN_REGISTRY_USERNAME": "${{ secrets.KILN_REGISTRY_USERNAME }}",
        "KILN_REGISTRY_PASSWORD": "${{ secrets.KILN_REGISTRY_PASSWORD }}",
    }
    # The release record goes up after the release, with the job's token only.
    upload_env, upload = steps[-1]
    assert "gh release create" in upload
    assert upload_env == {"GH_TOKEN": "${{ github.token }}", "GH_REPO": "${{ github.repository }}"}


def test_dev_steps_from_dev_yml() -> None:
    steps = run_steps(WORKFLOWS / "dev.yml", "dev")
    assert [script for _, script in steps] == [
        "python -m pip install -e .",
        'kiln release --dev --index "$KILN_INDEX_URL" --registry "$KILN_REGISTRY"',
    ]
    assert sorted(steps[1][0]) == [
        "KILN_BASE_IMAGE",
        "KILN_INDEX_PASSWORD",
        "KILN_INDEX_URL",
        "KILN_INDEX_USERNAME",
        "KILN_REGISTRY",
        "KILN_REGISTRY_PASSWORD",
        "KILN_REGISTRY_USERNAME",
    ]


def test_run_steps_merges_env_and_skips_uses_steps(tmp_path: Path) -> None:
    workflow = tmp_path / "w.yml"
    workflow.write_text(
        "on: push\n"
        "env: {A: workflow, B: workflow}\n"
        "jobs:\n"
        "  j:\n"
        "    runs-on: ubuntu-24.04\n"
        "    env: {B: job, C: 1, D: true}\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo one\n"
        "        env: {C: step}\n"
        "      - run: |\n"
        "          echo two\n"
        "          echo three\n",
        encoding="utf-8",
    )
    assert run_steps(workflow, "j") == [
        ({"A": "workflow", "B": "job", "C": "step", "D": "true"}, "echo one"),
        ({"A": "workflow", "B": "job", "C": "1", "D": "true"}, "echo two\necho three\n"),
    ]
    with pytest.raises(ValueError, match=r"no job 'k' \(jobs: j\)"):
        run_steps(workflow, "k")
