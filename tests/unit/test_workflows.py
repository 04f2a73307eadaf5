"""The GitHub Actions workflows, checked offline by the tools CI would use.

check-jsonschema validates each workflow against the GitHub workflow schema it bundles
(`--builtin-schema`, `--no-cache`: nothing is downloaded); zizmor audits them with its
offline audits only. Each check must also fail on a copy broken the way it should catch.
Then what the tools cannot know: least privilege job by job, the commands each job runs
(ci.yml's are the README's, on the machine .ci/run sets up; os-lock.yml's move the OS
lock weekly), and the rehearsals' reading of a job (tests/workflow_steps.py).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.workflow_steps import Unreproducible, read_job, run_steps

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ["ci.yml", "release.yml", "dev.yml", "os-lock.yml"]
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


def load(name: str) -> dict[Any, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(doc, dict), name
    return doc


def apt_packages(script: str) -> list[str]:
    """The packages of the one `apt-get install` command in ``script``."""
    lines = script.replace("\\\n", " ").splitlines()
    (line,) = [line for line in lines if "apt-get install" in line]
    words = shlex.split(line.split("apt-get install", 1)[1])
    return [w for w in words if not w.startswith(("-", ">"))]


# Write access, job by job: only where a job writes, and only what it writes.
WRITES = {
    ("release.yml", "finalize"): {"contents": "write"},
    ("os-lock.yml", "os-lock"): {"contents": "write", "pull-requests": "write"},
}


@pytest.mark.parametrize("name", NAMES)
def test_each_job_asks_for_what_it_uses_and_no_more(name: str) -> None:
    doc = load(name)
    assert doc["permissions"] == {}, f"{name}: nothing at the top; each job asks for its own"
    for job, spec in doc["jobs"].items():
        wanted = WRITES.get((name, job), {"contents": "read"})
        assert spec.get("permissions") == wanted, f"{name}, job {job}"


@pytest.mark.parametrize("name", NAMES)
def test_zizmor_fails_on_write_access_for_the_whole_workflow(tmp_path: Path, name: str) -> None:
    copy = broken_copy(tmp_path, name, "\npermissions: {}\n", "\npermissions: write-all\n")
    proc = zizmor(copy)
    assert proc.returncode != 0, proc.stdout
    assert "excessive-permissions" in proc.stdout


@pytest.mark.parametrize("name", NAMES)
def test_zizmor_fails_on_a_checkout_that_keeps_the_token(tmp_path: Path, name: str) -> None:
    # Without the input, as checkout's default (`true` written out is taken as meant).
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    alone = "        with:\n          persist-credentials: false\n      - "  # checkout's one input
    old, new = (
        (alone, "      - ") if alone in text else ("          persist-credentials: false\n", "")
    )
    copy = broken_copy(tmp_path, name, old, new)
    proc = zizmor(copy)
    assert proc.returncode != 0, proc.stdout
    assert "artipacked" in proc.stdout


def test_no_base_image_is_built_or_named_any_more() -> None:
    # kiln writes the OS layer from images/os.lock: KILN_BASE_IMAGE is read by nothing, and
    # .ci/build-base-image (debootstrap) is gone.
    docs = [ROOT / ".github" / "README.md", ROOT / "docs" / "releasing.md"]
    for path in [*sorted(WORKFLOWS.glob("*.yml")), *docs]:
        text = path.read_text(encoding="utf-8")
        for gone in ("KILN_BASE_IMAGE", "debootstrap", "build-base-image"):
            assert gone not in text, f"{path.relative_to(ROOT)} still names {gone}"


def test_ci_runs_the_readmes_commands_on_the_machine_ci_run_sets_up() -> None:
    ci_run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "./noxw -s lint tests" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert ci_run.rstrip().splitlines()[-1] == "./noxw -s lint tests"
    # The README's command, split across the two jobs: lint, then tests on the machine.
    assert [s for _, s in run_steps(WORKFLOWS / "ci.yml", "lint")] == ["./noxw -s lint"]
    tests = load("ci.yml")["jobs"]["tests"]
    assert tests["container"]["image"] == "debian:bookworm"
    steps = {str(s.get("name")): str(s.get("run", "")).strip() for s in tests["steps"]}
    assert apt_packages(steps["system packages (as .ci/run)"]) == apt_packages(ci_run)
    scripts = [s.strip() for _, s in run_steps(WORKFLOWS / "ci.yml", "tests")]
    assert scripts[-3:] == [".ci/start-dockerd", "./noxw -s tests", ".venv/bin/kiln check --local"]


def test_ci_caches_kilns_cache_by_every_lock() -> None:
    steps = load("ci.yml")["jobs"]["tests"]["steps"]
    (cache,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/cache@")]
    assert cache["with"]["path"] == ".kiln/cache"
    (hashed,) = re.findall(r"hashFiles\((.*?)\)", cache["with"]["key"])
    assert re.findall(r"'([^']+)'", hashed) == [
        "images/os.lock",
        "images/*/requirements.lock",
        "pipelines/requirements.lock",
    ]


def test_os_lock_runs_weekly_and_on_demand() -> None:
    doc = load("os-lock.yml")
    on = doc["on"] if "on" in doc else doc[True]  # YAML 1.1 reads the key `on` as true
    assert set(on) == {"schedule", "workflow_dispatch"}
    (schedule,) = on["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*"), schedule
    assert minute.isdigit(), schedule
    assert hour.isdigit(), schedule
    assert weekday in list("0123456"), schedule


def test_os_lock_steps_from_os_lock_yml() -> None:
    steps = run_steps(WORKFLOWS / "os-lock.yml", "os-lock")
    scripts = [script.strip() for _, script in steps]
    assert apt_packages(scripts[0]) == ["gpgv", "debian-archive-keyring", "docker-registry"]
    assert scripts[1:3] == [
        "python -m pip install -e .",
        'kiln lock --upgrade-os --json >"$RUNNER_TEMP/os-lock.json"',
    ]
    # Each image whose OS layers moved (the JSON's os.images) gets a patch bump.
    assert '["os"]["images"]' in scripts[3]
    assert 'kiln bump "$image" patch --image' in scripts[3]
    assert scripts[4:6] == ["kiln components --local", "kiln check --local"]
    # The pull request step alone holds a token; it opens or updates one pull request.
    assert [env for env, _ in steps[:-1]] == [{}] * (len(steps) - 1)
    env, script = steps[-1]
    token = env["GH_TOKEN"]
    assert token == "${{ secrets.KILN_OS_LOCK_TOKEN || github.token }}"  # noqa: S105 (an expression)
    assert env["GH_REPO"] == "${{ github.repository }}"
    for needle in (
        "git push",
        "gh pr list",
        "gh pr create",
        "gh pr edit",
        "os-lock.json",
    ):
        assert needle in script


KILN_ENV = {
    "KILN_INDEX_URL": "${{ vars.KILN_INDEX_URL }}",
    "KILN_REGISTRY": "${{ vars.KILN_REGISTRY }}",
    "KILN_INDEX_USERNAME": "${{ secrets.KILN_INDEX_USERNAME }}",
    "KILN_INDEX_PASSWORD": "${{ secrets.KILN_INDEX_PASSWORD }}",
    "KILN_REGISTRY_USERNAME": "${{ secrets.KILN_REGISTRY_USERNAME }}",
    "KILN_REGISTRY_PASSWORD": "${{ secrets.KILN_REGISTRY_PASSWORD }}",
}
TARGET = '--tag "$GITHUB_REF_NAME" --index "$KILN_INDEX_URL" --registry "$KILN_REGISTRY"'


def test_release_is_plan_then_matrix_then_finalize() -> None:
    jobs = load("release.yml")["jobs"]
    assert list(jobs) == ["plan", "release", "finalize"]
    assert jobs["release"]["needs"] == "plan"
    assert jobs["finalize"]["needs"] == ["plan", "release"]
    assert jobs["plan"]["outputs"] == {"jobs": "${{ steps.plan.outputs.jobs }}"}
    strategy = jobs["release"]["strategy"]
    assert strategy == {
        "fail-fast": False,
        "matrix": {"job": "${{ fromJSON(needs.plan.outputs.jobs) }}"},
    }
    for name in jobs:
        steps = run_steps(WORKFLOWS / "release.yml", name)
        assert steps[0][1] == "python -m pip install -e .", name
    (env, plan), *_ = run_steps(WORKFLOWS / "release.yml", "plan")[1:]
    assert env == KILN_ENV
    assert f'kiln plan {TARGET} \\\n  --jobs 3 --json >"$RUNNER_TEMP/plan/plan.json"' in plan
    assert '>>"$GITHUB_OUTPUT"' in plan
    (env, share), *_ = run_steps(WORKFLOWS / "release.yml", "release")[1:]
    assert env == {"JOB": "${{ matrix.job }}", **KILN_ENV}
    assert share == f'kiln release {TARGET} --job "$JOB" --plan "$RUNNER_TEMP/plan/plan.json"'
    (env, final), (upload_env, upload) = run_steps(WORKFLOWS / "release.yml", "finalize")[1:]
    assert env == KILN_ENV
    assert final == f'kiln release {TARGET} --finalize --plan "$RUNNER_TEMP/plan/plan.json"'
    # The release record goes up after the finalize step, with the job's token only.
    assert "gh release create" in upload
    assert upload_env == {"GH_TOKEN": "${{ github.token }}", "GH_REPO": "${{ github.repository }}"}


def test_dev_steps_from_dev_yml() -> None:
    steps = run_steps(WORKFLOWS / "dev.yml", "dev")
    assert [script for _, script in steps] == [
        "python -m pip install -e .",
        'kiln release --dev --index "$KILN_INDEX_URL" --registry "$KILN_REGISTRY"',
    ]
    assert sorted(steps[1][0]) == [
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


def test_read_job_substitutes_and_refuses_what_it_cannot_reproduce(tmp_path: Path) -> None:
    workflow = tmp_path / "w.yml"
    workflow.write_text(
        "on: push\n"
        "jobs:\n"
        "  j:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "        with: {fetch-depth: 0}\n"
        "      - run: pip install .\n"
        "      - name: token\n"
        "        env: {T: '${{ github.token }}'}\n"
        '        run: echo "$T" ${{ github.ref_name }}\n',
        encoding="utf-8",
    )
    job = read_job(
        workflow, "j", {"github.token": "dummy", "github.ref_name": "v1"},
        emulated={"actions/checkout": {"fetch-depth"}}, stubbed={"pip install ."},
        job_keys={"runs-on", "steps"},
    )  # fmt: skip
    assert job.uses == {"actions/checkout": {"fetch-depth": 0}}
    assert [(s.name, s.env, s.script) for s in job.steps] == [
        ("pip install .", {}, "pip install ."),
        ("token", {"T": "dummy"}, 'echo "$T" v1'),
    ]
    with pytest.raises(Unreproducible) as caught:
        read_job(
            workflow, "j", {}, emulated={"actions/checkout": ()}, stubbed={"make"},
            job_keys={"steps"},
        )  # fmt: skip
    for problem in (
        "job key `runs-on`",
        "actions/checkout input `fetch-depth` is not emulated",
        "env T: ${{ github.token }}",
        "run: ${{ github.ref_name }}",
        "stubbed script 'make' is not in the job",
    ):
        assert problem in str(caught.value)
    with pytest.raises(Unreproducible, match="action actions/checkout is not emulated"):
        read_job(workflow, "j", {}, emulated={}, stubbed=(), job_keys={"runs-on", "steps"})
