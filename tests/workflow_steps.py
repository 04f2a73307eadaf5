"""The shell steps of a GitHub Actions job, read from its workflow file, and run.

For rehearsing a workflow outside GitHub: ``run_steps`` gives each ``run:`` step's script
and the environment GitHub would give it, with every ``${{ ... }}`` expression left as
the raw string. ``read_job`` replaces each expression by the caller's value (a local
index and registry, a dummy token) and refuses what a rehearsal cannot reproduce;
``run_job`` then runs the steps in order, as GitHub runs them, in a folder the caller
checked out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import kiln

# How GitHub runs a `run:` script on Linux when the workflow names no shell:
# `bash --noprofile --norc -eo pipefail SCRIPT_FILE`.
SHELL = ("bash", "--noprofile", "--norc", "-eo", "pipefail")
# git for the rehearsals' own commits (the workflows' commits bring their identity).
GIT = ("git", "-c", "user.name=kiln-test", "-c", "user.email=kiln@example.invalid")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
# What a `run:` step may hold for a rehearsal to run it as GitHub does (no `if:`,
# `shell:`, `working-directory:`, ...: a key the rehearsal ignores would let it drift).
RUN_STEP_KEYS = frozenset({"name", "env", "run"})


def _env(node: dict[str, Any], where: str) -> dict[str, str]:
    env = node.get("env") or {}
    if not isinstance(env, dict):
        raise TypeError(f"{where}: `env` is not a mapping (an expression?): {env!r}")
    # YAML may type a value (`KILN_OFFLINE: 1`, `FLAG: true`); a process gets text.
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def _job(workflow: Path, job: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workflow's document and ``job``'s mapping in it."""
    doc = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    if not isinstance(jobs, dict) or job not in jobs:
        names = sorted(jobs) if isinstance(jobs, dict) else []
        raise ValueError(f"{workflow}: no job {job!r} (jobs: {', '.join(names) or 'none'})")
    return doc, jobs[job]


def run_steps(workflow: Path, job: str) -> list[tuple[dict[str, str], str]]:
    """``(env, script)`` for each ``run:`` step of ``job``, in order; ``uses:`` steps are
    skipped. ``env`` is what the step sees from the workflow: the workflow's ``env``,
    overridden by the job's, overridden by the step's (GitHub's own variables such as
    GITHUB_REF_NAME are not added)."""
    doc, spec = _job(workflow, job)
    inherited = {**_env(doc, str(workflow)), **_env(spec, f"{workflow}: job {job}")}
    steps = []
    for number, step in enumerate(spec.get("steps") or [], start=1):
        if "run" not in step:
            continue
        env = {**inherited, **_env(step, f"{workflow}: job {job}, step {number}")}
        steps.append((env, str(step["run"])))
    return steps


# ------------------------------------------------------------------ a job, for a rehearsal
@dataclass(frozen=True)
class Step:
    name: str
    env: dict[str, str]
    script: str


@dataclass(frozen=True)
class Job:
    steps: list[Step]
    uses: dict[str, dict[str, Any]]  # each `uses:` action (owner/name) -> its `with:` inputs


class Unreproducible(Exception):
    """The job holds something the rehearsal does not know how to reproduce."""


def _substitute(text: str, values: Mapping[str, str], where: str, unknown: list[str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            unknown.append(f"{where}: ${{{{ {match.group(1)} }}}}")
            return match.group(0)
        return values[match.group(1)]

    return EXPRESSION.sub(one, text)


def read_job(
    workflow: Path,
    job: str,
    values: Mapping[str, str],
    *,
    emulated: Mapping[str, Collection[str]],
    stubbed: Collection[str],
    job_keys: Collection[str],
    step_keys: Collection[str] = RUN_STEP_KEYS,
) -> Job:
    """``job``'s run steps with every expression replaced by ``values`` (keyed by the
    expression's text, e.g. ``github.token``), and the inputs of its `uses:` steps.

    Raises ``Unreproducible`` naming everything the rehearsal cannot reproduce: a job key
    outside ``job_keys``, a step key it does not honour, an action not in ``emulated`` (or
    an input of it not listed there), an expression not in ``values``, a ``stubbed``
    script the job no longer has. ``step_keys``: what a run step may hold."""
    _doc, spec = _job(workflow, job)
    problems = [f"job key `{k}`" for k in sorted(set(spec) - set(job_keys))]
    names: list[str] = []
    uses: dict[str, dict[str, Any]] = {}
    for number, raw in enumerate(spec.get("steps") or [], start=1):
        if "uses" in raw:
            action = str(raw["uses"]).split("@", 1)[0]
            inputs = dict(raw.get("with") or {})
            if action not in emulated:
                problems.append(f"step {number}: action {action} is not emulated")
                continue
            problems += [
                f"step {number}: {action} input `{k}` is not emulated"
                for k in sorted(set(inputs) - set(emulated[action]))
            ]
            problems += [f"step {number}: key `{k}`" for k in sorted(set(raw) - {"uses", "with"})]
            uses[action] = inputs
        else:
            problems += [f"step {number}: key `{k}`" for k in sorted(set(raw) - set(step_keys))]
            names.append(str(raw.get("name") or raw["run"]))
    steps = []
    for name, (raw_env, raw_script) in zip(names, run_steps(workflow, job), strict=True):
        env = {
            k: _substitute(v, values, f"step {name!r}, env {k}", problems)
            for k, v in raw_env.items()
        }
        script = _substitute(raw_script, values, f"step {name!r}, run", problems)
        steps.append(Step(name, env, script))
    found = {s.script.strip() for s in steps} & set(stubbed)
    problems += [f"stubbed script {s!r} is not in the job" for s in sorted(set(stubbed) - found)]
    if problems:
        raise Unreproducible(
            f"{workflow.name}: the rehearsal cannot reproduce:\n  " + "\n  ".join(problems)
        )
    return Job(steps, uses)


@dataclass
class StepRun:
    step: Step
    returncode: int | None  # None: stubbed
    stdout: str = ""
    stderr: str = ""


@dataclass
class Rehearsal:
    workspace: Path
    runs: list[StepRun] = field(default_factory=list)

    @property
    def failed(self) -> StepRun | None:
        return next((r for r in self.runs if r.returncode not in (None, 0)), None)

    def output(self) -> str:
        return "".join(f"--- {r.step.name}\n{r.stdout}{r.stderr}" for r in self.runs)


def run_job(
    job: Job,
    *,
    workspace: Path,
    env: Mapping[str, str],
    temp: Path,
    stubbed: Collection[str] = (),
    timeout: float = 1200,
) -> Rehearsal:
    """Every run step of ``job`` in order, in ``workspace``, as GitHub runs it (``SHELL``
    on a script file), with ``env`` (the runner's: GITHUB_*, HOME, PATH, ...) overridden
    by the step's; a script in ``stubbed`` is skipped. Stops at the first failing step.
    Each step's script and output are kept in ``temp`` (``step-N.sh``, ``step-N.log``)."""
    rehearsal = Rehearsal(workspace)
    for number, step in enumerate(job.steps, start=1):
        if step.script.strip() in stubbed:
            rehearsal.runs.append(StepRun(step, None))
            continue
        script = temp / f"step-{number}.sh"
        script.write_text(step.script, encoding="utf-8")
        proc = subprocess.run(
            [*SHELL, str(script)], cwd=workspace, env={**env, **step.env},
            capture_output=True, text=True, check=False, timeout=timeout,
        )  # fmt: skip
        rehearsal.runs.append(StepRun(step, proc.returncode, proc.stdout, proc.stderr))
        (temp / f"step-{number}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
        if proc.returncode != 0:
            break
    return rehearsal


# ------------------------------------------------------------------ git
def git(root: Path, *args: str) -> str:
    """``git -C root ARGS``'s output, stripped; a failure raises."""
    return subprocess.run(
        [*GIT, "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def tracked_files(project: Path) -> list[str]:
    """What a clone of ``project`` holds: its tracked and untracked, not ignored files,
    as they are in the working tree (the workflow under test is the one on disk)."""
    out = git(project, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    return sorted({p for p in out.split("\0") if p and (project / p).is_file()})


def tools(folder: Path, gh: str) -> Path:
    """``folder`` with two commands for a rehearsal's PATH. ``kiln``: the kiln under test
    (its `src/`) on this interpreter, standing for the workflow's install step; ``gh``:
    the Python script ``gh`` (a fake GitHub CLI), run by this interpreter."""
    folder.mkdir()
    source = Path(kiln.__file__).resolve().parents[1]
    (folder / "kiln").write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH={source}${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable} -m kiln "$@"\n'
    )
    (folder / "gh").write_text(f"#!{sys.executable}\n{gh}")
    for name in ("kiln", "gh"):
        (folder / name).chmod(0o755)
    return folder


def runner_env(
    *,
    workflow: str,
    job: str,
    event: str,
    ref: str,
    sha: str,
    repository: str,
    workspace: Path,
    temp: Path,
    home: Path,
    tools: Path,
) -> dict[str, str]:
    """What GitHub's runner sets for a job's steps (a rehearsal adds its own): ``ref`` is
    ``refs/tags/...`` or ``refs/heads/...``; ``tools`` (fakes and wrappers) come first on
    PATH, then the test's Python, then the system's."""
    kind, _, name = ref.removeprefix("refs/").partition("/")
    return {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKFLOW": workflow,
        "GITHUB_JOB": job,
        "GITHUB_EVENT_NAME": event,
        "GITHUB_REF": ref,
        "GITHUB_REF_NAME": name,
        "GITHUB_REF_TYPE": "tag" if kind == "tags" else "branch",
        "GITHUB_SHA": sha,
        "GITHUB_REPOSITORY": repository,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_WORKSPACE": str(workspace),
        "RUNNER_OS": "Linux",
        "RUNNER_TEMP": str(temp),
        "HOME": str(home),
        "PATH": os.pathsep.join(
            [str(tools), str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        ),
        "LANG": "C.UTF-8",
    }
