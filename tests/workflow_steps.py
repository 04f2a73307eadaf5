"""The shell steps of a GitHub Actions job, read from its workflow file.

For rehearsing a workflow outside GitHub: each ``run:`` step's script and the
environment GitHub would give it, with every ``${{ ... }}`` expression left as the raw
string, for the caller to replace with its own values (a local index and registry).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# How GitHub runs a `run:` script on Linux when the workflow names no shell:
# `bash --noprofile --norc -eo pipefail SCRIPT_FILE`.
SHELL = ("bash", "--noprofile", "--norc", "-eo", "pipefail")


def _env(node: dict[str, Any], where: str) -> dict[str, str]:
    env = node.get("env") or {}
    if not isinstance(env, dict):
        raise TypeError(f"{where}: `env` is not a mapping (an expression?): {env!r}")
    # YAML may type a value (`KILN_OFFLINE: 1`, `FLAG: true`); a process gets text.
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def run_steps(workflow: Path, job: str) -> list[tuple[dict[str, str], str]]:
    """``(env, script)`` for each ``run:`` step of ``job``, in order; ``uses:`` steps are
    skipped. ``env`` is what the step sees from the workflow: the workflow's ``env``,
    overridden by the job's, overridden by the step's (GitHub's own variables such as
    GITHUB_REF_NAME are not added)."""
    doc = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    if not isinstance(jobs, dict) or job not in jobs:
        names = sorted(jobs) if isinstance(jobs, dict) else []
        raise ValueError(f"{workflow}: no job {job!r} (jobs: {', '.join(names) or 'none'})")
    spec = jobs[job]
    inherited = {**_env(doc, str(workflow)), **_env(spec, f"{workflow}: job {job}")}
    steps = []
    for number, step in enumerate(spec.get("steps") or [], start=1):
        if "run" not in step:
            continue
        env = {**inherited, **_env(step, f"{workflow}: job {job}, step {number}")}
        steps.append((env, str(step["run"])))
    return steps
