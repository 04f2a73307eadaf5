"""A rehearsal of `.github/workflows/release.yml`: the `run:` steps of its jobs, plan ->
release (a matrix of the plan's 3 jobs) -> finalize, run as GitHub runs them for a
pushed tag v0.1.0, each job in a fresh checkout of a git copy of this repository,
against an index and a registry that require credentials (conftest's ``servers``). The
plan job plans and cuts the release; the 3 matrix jobs run at once, separate processes,
each in its own checkout with an empty kiln build cache, and each publishes its share;
finalize publishes `acme-components==0.1.0`, writes `dist/release/` (byte for byte what
one machine's `kiln release --tag` of the same commit writes and publishes, to servers
of its own at the same addresses: ``tests.e2e.one_machine``), hands it to `gh`, and the
password is written nowhere; the same tag again publishes nothing; a workflow broken in
a way that matters fails the rehearsal; and a v0.2.0 tagged after it gets notes that
compare it with v0.1.0, which needs the checkout's `fetch-depth: 0` (the last test: it
adds a commit and a tag to the origin).

What runs as-is, what is emulated or stubbed, and why:

- ``actions/checkout`` (a `uses:` step) is emulated: every run starts from a fresh
  checkout of the tag, fetched the way checkout v4 does it (by default only the tagged
  commit, at depth 1, no other tag; `fetch-depth: 0` fetches every branch and tag). The
  run's `.kiln/cache` and `.kiln/wheelhouse` (conftest's ``kiln_cache``) are linked into
  the plan and finalize jobs' checkouts, only so that nothing is downloaded or built
  again: a runner starts with neither, and kiln fills them with the same files. A matrix
  job's checkout gets only what kiln fetches (the .debs' cache, the locked wheels): its
  builds (wheels, layers, images) start from nothing, as on a fresh runner.
- ``actions/upload-artifact`` and ``actions/download-artifact`` are emulated by a
  folder: the upload copies its `path` there after the job's steps, the download copies
  it back before them. A job's outputs are read from GITHUB_OUTPUT (one file for all
  of its steps) as its `outputs:` name them; the matrix is the plan job's `jobs`.
- ``actions/setup-python`` is emulated by the test's own interpreter: its bin folder is
  on PATH (`python`, and the twine and uv kiln calls), as on the runner.
- ``python -m pip install -e .`` is stubbed (skipped): run here, it would install kiln
  into the test's own environment, or need PyPI for kiln's dependencies. What it gives
  the next steps, a `kiln` command of this checkout's code, is a wrapper first on PATH
  that runs this interpreter's ``-m kiln`` with this checkout's `src/` on PYTHONPATH.
  The stub matches the script exactly: another install script fails the test.
- ``kiln plan``, ``kiln release --job`` and ``--finalize`` run as-is, with the
  environment the workflow gives them.
- the `gh release` step runs as-is, with a fake `gh` first on PATH, since there is no
  GitHub to talk to: it keeps the releases it made in a folder (so a second run takes
  the `gh release upload --clobber` branch), records each call, checks `--verify-tag`
  against the checkout's tags, and fails as gh does on a missing file or no file.

Every ``${{ ... }}`` expression is replaced by its rehearsal value (``_expressions``);
an expression it does not know fails the test naming it, as do a `uses:` action or an
action input it does not emulate, and a step or job key it does not honour (`if:`,
`shell:`, `working-directory:`, `defaults:`, ...), so the workflow and its rehearsal
cannot drift apart silently. The environment is GitHub's (CI, GITHUB_*, RUNNER_TEMP)
plus the step's, not the test's: HOME is an empty folder (no netrc, no docker config),
and HTTP(S)_PROXY name a closed port on 127.0.0.1 with NO_PROXY=127.0.0.1,localhost,
so nothing but loopback answers kiln, pip, twine or uv.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from kiln._servers.credentials import Credentials
from kiln._servers.registry import RegistryClient
from tests import workflow_steps
from tests.e2e.conftest import HELPERS, IMAGES, PASSWORD, PROJECT, USER, KilnCache, OsPins, Servers
from tests.e2e.one_machine import assert_same_record, held, record, release_tag, sha256
from tests.e2e.tools import free_port
from tests.workflow_steps import (
    GIT,
    Rehearsal,
    StepRun,
    git,
    run_job,
    runner_env,
    tools,
    tracked_files,
)  # fmt: skip

pytestmark = pytest.mark.e2e

WORKFLOW = PROJECT / ".github" / "workflows" / "release.yml"
JOBS = ("plan", "release", "finalize")  # in the order of their `needs:`
TAG = "v0.1.0"
GITHUB_REPOSITORY = "acme/monorepo"
GH_TOKEN = "ghs_rehearsal-dummy-token"  # noqa: S105 (github.token: a dummy)

# Run scripts the rehearsal does not run, exactly as the workflow has them, and why.
STUBBED = {
    "python -m pip install -e .": "installs kiln: the `kiln` wrapper on PATH stands for it",
}
# `uses:` actions the rehearsal emulates, with the inputs it honours.
EMULATED = {
    "actions/checkout": {"persist-credentials", "fetch-depth", "fetch-tags"},
    "actions/setup-python": {"python-version"},
    "actions/upload-artifact": {"name", "path"},
    "actions/download-artifact": {"name", "path"},
}
JOB_KEYS = {
    "name", "runs-on", "timeout-minutes", "permissions", "steps", "env", "needs", "outputs",
    "strategy",
}  # fmt: skip
STEP_KEYS = workflow_steps.RUN_STEP_KEYS | {"id"}  # an id: its outputs, in GITHUB_OUTPUT
# A job's output the rehearsal resolves, and the matrix it makes of another job's output.
STEP_OUTPUT = re.compile(r"^\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}$")
FROM_JSON = re.compile(r"^\$\{\{ fromJSON\(needs\.([\w-]+)\.outputs\.([\w-]+)\) \}\}$")


def _expressions(servers: Servers, tag: str = TAG) -> dict[str, str]:
    """What each expression of the workflow stands for in the rehearsal."""
    return {
        "vars.KILN_INDEX_URL": servers.index_url,
        "vars.KILN_REGISTRY": servers.registry,
        **{f"secrets.{name}": value for name, value in servers.env().items()},
        "github.token": GH_TOKEN,
        "github.repository": GITHUB_REPOSITORY,
        "github.ref": f"refs/tags/{tag}",
        "github.ref_name": tag,
    }


# ------------------------------------------------------------------ the workflow, read
@dataclass(frozen=True)
class Job:
    name: str
    job: workflow_steps.Job
    spec: dict[str, Any]  # its mapping in the workflow, as written
    fetch_depth: int
    fetch_tags: bool


def read_job(workflow: Path, name: str, values: dict[str, str]) -> Job:
    """The job's run steps with their expressions replaced; a failure naming everything
    in the job the rehearsal does not know how to reproduce."""
    try:
        job = workflow_steps.read_job(
            workflow, name, values, emulated=EMULATED, stubbed=STUBBED, job_keys=JOB_KEYS,
            step_keys=STEP_KEYS,
        )  # fmt: skip
    except workflow_steps.Unreproducible as exc:
        pytest.fail(str(exc))
    spec = yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"][name]
    checkout = job.uses.get("actions/checkout", {})
    return Job(
        name, job, spec, int(checkout.get("fetch-depth", 1)), bool(checkout.get("fetch-tags"))
    )


def _value(text: str, values: dict[str, str]) -> str:
    """An action input with its expressions replaced (each must be known)."""
    return workflow_steps.EXPRESSION.sub(lambda m: values[m.group(1)], text)


# ------------------------------------------------------------------ the runner
@dataclass(frozen=True)
class Origin:
    """The repository the tag was pushed to, and what a runner gets besides it."""

    root: Path
    sha: str  # v0.1.0's commit
    caches: KilnCache  # the run's cache/ and wheelhouse/, warm
    tools: Path  # the `kiln` wrapper and the fake `gh`
    github: Path  # the fake GitHub's state: releases made, calls


def checkout(origin: Origin, workspace: Path, job: Job, tag: str, *, warm: bool) -> None:
    """actions/checkout for a tag push: the tag alone at depth 1, unless fetch-depth: 0.
    ``warm``: the run's kiln cache linked in whole; else (a matrix job) only what kiln
    fetches (the .debs, the locked wheels), so that its builds start from nothing."""
    git = [*GIT, "-C", str(workspace)]
    subprocess.run([*GIT, "init", "-q", str(workspace)], check=True)
    subprocess.run([*git, "remote", "add", "origin", origin.root.as_uri()], check=True)
    if job.fetch_depth == 0:
        refspecs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
        fetch = ["fetch", "-q", "--prune", "--tags", "origin", *refspecs]
    else:
        tags = "--tags" if job.fetch_tags else "--no-tags"
        fetch = ["fetch", "-q", tags, f"--depth={job.fetch_depth}", "origin"]
        fetch.append(f"+refs/tags/{tag}:refs/tags/{tag}")
    subprocess.run([*git, *fetch], check=True)
    subprocess.run([*git, "checkout", "-q", "--force", f"refs/tags/{tag}"], check=True)
    if warm:
        origin.caches.link_into(workspace)
        return
    state = workspace / ".kiln"
    (state / "cache").mkdir(parents=True)
    (state / "cache" / "debian").symlink_to(origin.caches.state / "cache" / "debian")
    (state / "wheelhouse").symlink_to(origin.caches.state / "wheelhouse")


@dataclass
class JobRun:
    """One run of a job (a matrix job's: ``matrix``), and its outputs."""

    name: str
    matrix: str | None
    rehearsal: Rehearsal
    outputs: dict[str, str]
    seconds: float


@dataclass
class WorkflowRun:
    """The workflow's jobs as they ran, in order (a matrix job's runs, by number); it
    stops after a job with a failed run, as GitHub's `needs:` does."""

    jobs: list[JobRun]

    @property
    def failed(self) -> StepRun | None:
        return next((r.rehearsal.failed for r in self.jobs if r.rehearsal.failed), None)

    def output(self) -> str:
        return "".join(
            f"=== {r.name}{'' if r.matrix is None else f' ({r.matrix})'}\n{r.rehearsal.output()}"
            for r in self.jobs
        )

    def job(self, name: str) -> list[JobRun]:
        return [r for r in self.jobs if r.name == name]

    @property
    def workspace(self) -> Path:
        """The finalize job's checkout: the release record is there."""
        (final,) = self.job("finalize")
        return final.rehearsal.workspace


def run_one(
    origin: Origin,
    workflow: Path,
    name: str,
    servers: Servers,
    folder: Path,
    *,
    tag: str,
    artifacts: Path,
    matrix: str | None = None,
) -> JobRun:
    """One job for a push of ``tag`` in a fresh checkout in ``folder``: its artifacts
    downloaded from ``artifacts`` first, its run steps in order (stops at a failing
    one), its uploads kept in ``artifacts``; its outputs read from its GITHUB_OUTPUT
    (the rehearsal gives every step of a job the same file)."""
    started = time.monotonic()
    workspace, home, temp = folder / "work", folder / "home", folder / "runner-temp"
    home.mkdir(parents=True)
    temp.mkdir()
    values = {**_expressions(servers, tag), "runner.temp": str(temp)}
    if matrix is not None:
        values["matrix.job"] = matrix
    job = read_job(workflow, name, values)
    checkout(origin, workspace, job, tag, warm=matrix is None)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    output = temp / "github-output"
    output.touch()
    github = {
        **runner_env(
            workflow="release",
            job=name,
            event="push",
            ref=f"refs/tags/{tag}",
            sha=git(origin.root, "rev-parse", f"{tag}^{{commit}}"),
            repository=GITHUB_REPOSITORY,
            workspace=workspace,
            temp=temp,
            home=home,
            tools=origin.tools,
        ),
        "GITHUB_OUTPUT": str(output),
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "http_proxy": closed,
        "https_proxy": closed,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "FAKE_GITHUB": str(origin.github),
    }
    if "DOCKER_HOST" in os.environ:  # the runner's engine is the test's
        github["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    # The install step's stand-in: `kiln` is the wrapper, whatever else is on PATH.
    assert shutil.which("kiln", path=github["PATH"]) == str(origin.tools / "kiln")
    if "actions/download-artifact" in job.job.uses:
        inputs = job.job.uses["actions/download-artifact"]
        shutil.copytree(artifacts / inputs["name"], _value(inputs["path"], values))
    rehearsal = run_job(job.job, workspace=workspace, env=github, temp=temp, stubbed=STUBBED)
    if "actions/upload-artifact" in job.job.uses and rehearsal.failed is None:
        inputs = job.job.uses["actions/upload-artifact"]
        (artifacts / inputs["name"]).mkdir(parents=True)
        shutil.copy2(_value(inputs["path"], values), artifacts / inputs["name"])
    written = dict(
        line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines() if line
    )
    ids = {str(step["id"]) for step in job.spec["steps"] if "id" in step}
    outputs = {}
    for key, expression in (job.spec.get("outputs") or {}).items():
        match = STEP_OUTPUT.match(expression)
        assert match, f"job {name}, output {key}: {expression} is not a step's output"
        assert match.group(1) in ids, f"job {name}, output {key}: no step {match.group(1)}"
        outputs[key] = written.get(match.group(2), "")
    return JobRun(name, matrix, rehearsal, outputs, time.monotonic() - started)


def rehearse(
    origin: Origin, workflow: Path, servers: Servers, tmp_path: Path, tag: str = TAG
) -> WorkflowRun:
    """The workflow for a push of ``tag``: plan, then each of the release job's matrix
    jobs at once (separate processes, each in a fresh checkout with its own empty kiln
    build cache), then finalize; it stops after a job that failed, as `needs:` does."""
    spec = yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"]
    assert list(spec) == list(JOBS), "the rehearsal runs plan -> release (matrix) -> finalize"
    assert spec["release"]["needs"] == "plan"
    assert set(spec["finalize"]["needs"]) == {"plan", "release"}
    artifacts = tmp_path / "artifacts"
    plan = run_one(origin, workflow, "plan", servers, tmp_path / "plan", tag=tag,
                   artifacts=artifacts)  # fmt: skip
    run = WorkflowRun([plan])
    if run.failed:
        return run
    strategy = spec["release"]["strategy"]
    match = FROM_JSON.match(strategy["matrix"]["job"])
    assert match, strategy
    assert match.group(1) == "plan", strategy
    numbers = [str(n) for n in json.loads(plan.outputs[match.group(2)])]
    with concurrent.futures.ThreadPoolExecutor(len(numbers)) as pool:
        shares = [
            pool.submit(
                run_one,
                origin,
                workflow,
                "release",
                servers,
                tmp_path / f"job-{n}",
                tag=tag,
                artifacts=artifacts,
                matrix=n,
            )
            for n in numbers
        ]
        run.jobs += [f.result() for f in shares]
    if run.failed:
        return run
    run.jobs.append(
        run_one(
            origin,
            workflow,
            "finalize",
            servers,
            tmp_path / "finalize",
            tag=tag,
            artifacts=artifacts,
        )
    )
    return run


# ------------------------------------------------------------------ the fakes
FAKE_GH = '''\
"""gh, as the release workflow uses it, against a folder standing for GitHub."""
import json, os, subprocess, sys
from pathlib import Path

state = Path(os.environ["FAKE_GITHUB"])
args = sys.argv[1:]
with (state / "calls.jsonl").open("a") as log:
    log.write(json.dumps({"args": args, "cwd": os.getcwd(),
                          "repo": os.environ.get("GH_REPO", "")}) + "\\n")


def fail(message):
    print(f"gh (fake): {message}", file=sys.stderr)
    sys.exit(1)


if not os.environ.get("GH_TOKEN") or not os.environ.get("GH_REPO"):
    fail("GH_TOKEN and GH_REPO must be set")
if args[:1] != ["release"] or len(args) < 3:
    fail(f"not emulated: gh {' '.join(args)}")
command, tag, rest = args[1], args[2], args[3:]
release = state / "releases" / tag
files, options, flags = [], {}, set()
while rest:
    arg = rest.pop(0)
    if arg in ("--title", "--notes-file"):
        options[arg] = rest.pop(0)
    elif arg.startswith("--"):
        flags.add(arg)
    else:
        files.append(arg)
notes_file = [options["--notes-file"]] if "--notes-file" in options else []
missing = [f for f in [*files, *notes_file] if not Path(f).is_file()]
if command == "view" and not (files or options or flags):
    if not release.is_dir():
        fail("release not found")
    print(json.loads((release / "release.json").read_text())["title"])
elif command == "create" and flags <= {"--verify-tag"}:
    if release.exists():
        fail(f"a release with the same tag name already exists: {tag}")
    tagged = subprocess.run(["git", "rev-parse", "-q", "--verify", f"refs/tags/{tag}"],
                            capture_output=True, check=False)
    if "--verify-tag" in flags and tagged.returncode != 0:
        fail(f"tag {tag} doesn't exist in the repo")
    if missing:
        fail(f"no such file: {missing}")
    release.mkdir(parents=True)
    notes = Path(options["--notes-file"]).read_text() if "--notes-file" in options else ""
    info = {"title": options.get("--title", tag), "notes": notes, "assets": sorted(
        Path(f).name for f in files)}
    (release / "release.json").write_text(json.dumps(info))
elif command == "upload" and flags <= {"--clobber"}:
    if not files:
        fail("accepts at least 2 arg(s), received 1")
    if not release.is_dir():
        fail("release not found")
    if missing:
        fail(f"no such file: {missing}")
else:
    fail(f"not emulated: gh {' '.join(args)}")
'''


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def origin(
    servers: Servers,
    tmp_path_factory: pytest.TempPathFactory,
    os_pins: OsPins,
    kiln_cache: KilnCache,
) -> Origin:
    """A git copy of this repository, its component tree regenerated for the rehearsal's
    servers and committed, tagged v0.1.0; and the run's caches. Its OS lock is the one
    the session's copies use (relocked, where Debian dropped a pin)."""
    base = tmp_path_factory.mktemp("rehearsal")
    root = base / "origin"
    for path in tracked_files(PROJECT):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / path, root / path)
    shutil.copy2(os_pins.source / "images" / "os.lock", root / "images" / "os.lock")
    kiln_cache.link_into(root)
    git(base, "init", "-q", str(root))
    env = {**os.environ, **servers.env()}
    target = ("--index", servers.index_url, "--registry", servers.registry)
    generated = subprocess.run(
        [sys.executable, "-m", "kiln", "components", *target, "--repo", str(root)],
        env=env, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    assert PASSWORD not in generated.stdout + generated.stderr
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the monorepo, its components pinned to the rehearsal's servers")
    git(root, "tag", TAG)
    github = base / "github"
    github.mkdir()
    return Origin(
        root, git(root, "rev-parse", "HEAD"), kiln_cache, tools(base / "tools", FAKE_GH), github
    )


# ------------------------------------------------------------------ checks
def _files_holding(folder: Path, needle: bytes) -> list[str]:
    return [
        str(p.relative_to(folder))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink() and needle in p.read_bytes()
    ]


def _assert_no_password(run: WorkflowRun) -> None:
    assert PASSWORD not in run.output()
    canary = PASSWORD.encode()
    for job in run.jobs:
        for folder in ("dist", ".kiln/logs", "pipelines/components/generated"):
            path = job.rehearsal.workspace / folder
            assert _files_holding(path, canary) == [], (job.name, folder)


def _one_machine(origin: Origin, servers: Servers, folder: Path) -> Path:
    """`kiln release --tag v0.1.0` of the same commit on one machine (a fresh checkout
    with the history, the run's warm cache), to the rehearsal's addresses served from
    empty storage: it publishes everything, as the matrix did. Its checkout; what the
    servers held after it is in ``folder / "held.json"``."""
    workspace = folder / "work"
    values = {**_expressions(servers), "runner.temp": str(folder)}
    checkout(origin, workspace, read_job(WORKFLOW, "finalize", values), TAG, warm=True)
    with servers.fresh(folder / "servers") as fresh:
        proc = release_tag(origin.tools / "kiln", workspace, fresh, TAG, {**os.environ})
        assert proc.returncode == 0, proc.stderr
        assert PASSWORD not in proc.stdout + proc.stderr
        (folder / "held.json").write_text(json.dumps(held(fresh)))
    return workspace


def _index_files(servers: Servers, project: str) -> list[str]:
    page = requests.get(f"{servers.index_url}/simple/{project}/", auth=(USER, PASSWORD), timeout=10)
    page.raise_for_status()
    return sorted(re.findall(r">([^<]+\.whl)<", page.text))


def _gh_calls(origin: Origin) -> list[dict[str, Any]]:
    log = origin.github / "calls.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


# ------------------------------------------------------------------ the tests
def _assert_shares(run: WorkflowRun) -> None:
    """Each job ran (a matrix job each of the plan's 3), each matrix job built its share
    from an empty kiln build cache, and pushed it."""
    codes = {(r.name, r.matrix): [s.returncode for s in r.rehearsal.runs] for r in run.jobs}
    assert codes == {
        ("plan", None): [None, 0],  # install stubbed
        ("release", "0"): [None, 0],
        ("release", "1"): [None, 0],
        ("release", "2"): [None, 0],
        ("finalize", None): [None, 0, 0],
    }
    pushed = []
    for share in run.job("release"):
        cache = share.rehearsal.workspace / ".kiln" / "cache"
        assert not (cache / "oci").is_symlink()
        assert not (cache / "wheels").is_symlink()
        line = share.rehearsal.runs[1].stdout.splitlines()[-1]
        assert line.startswith(f"job {share.matrix} of 3: uploaded "), line
        pushed.append(int(line.split("pushed ")[1].split(" ")[0]))
        assert not (share.rehearsal.workspace / "dist").exists()  # no record: finalize's
    assert sum(pushed) == len(IMAGES) + 1  # each image once (packages mode's base too)
    assert all(pushed), pushed  # 4 images in 3 jobs: none is empty


def _assert_as_one_machine(origin: Origin, servers: Servers, folder: Path, work: Path) -> None:
    # One machine's `kiln release --tag` of the same commit, publishing to servers of its
    # own at the same addresses, writes the same record byte for byte (the manifest, the
    # bundle, notes, catalog, SBOMs) and publishes the same bytes: each file's sha256,
    # each tag's digest.
    alone = _one_machine(origin, servers, folder)
    assert_same_record(alone, work)
    manifest = json.loads((work / "dist/release/manifest.json").read_text())
    assert {w["status"] for w in manifest["wheels"]} == {"published"}
    assert {i["status"] for i in manifest["images"]} == {"pushed"}
    files, tags = held(servers)  # the matrix's: the same files and digests
    assert json.loads((folder / "held.json").read_text()) == [files, tags]
    assert "acme_components-0.1.0-py3-none-any.whl" in files
    assert len(tags) == len(manifest["images"])


def test_rehearsal_releases_the_tag_then_is_a_no_op(
    origin: Origin, servers: Servers, tmp_path: Path
) -> None:
    first = rehearse(origin, WORKFLOW, servers, tmp_path / "first")
    assert first.failed is None, first.output()
    _assert_no_password(first)
    work = first.workspace
    assert git(work, "status", "--porcelain") == ""  # the release changed no tracked file
    _assert_shares(first)

    # What kiln published, read back with the credentials.
    for helper, version in HELPERS.items():
        assert f"acme_{helper}-{version}-py3-none-any.whl" in _index_files(
            servers, f"acme-{helper}"
        )
    assert _index_files(servers, "acme-components") == ["acme_components-0.1.0-py3-none-any.whl"]
    manifest = json.loads((work / "dist/release/manifest.json").read_text())
    assert manifest["release"] == "0.1.0"
    assert manifest["revision"] == origin.sha
    registry = RegistryClient(servers.registry, credentials=Credentials(USER, PASSWORD))
    images = {i["name"]: i for i in manifest["images"]}
    # packages mode's base is kiln's too, tagged by its own digest
    assert set(images) == {*IMAGES, "packages"}
    tags = {**IMAGES, "packages": images["packages"]["tag"]}
    for name, tag in tags.items():
        ref = images[name]["ref"]
        assert ref.startswith(f"{servers.registry}/acme/{name}@sha256:")
        assert registry.digest(f"acme/{name}", tag) == ref.split("@", 1)[1]
        # Made for amd64 and arm64: the tag names the index over both platforms' images.
        index = json.loads(registry.manifest(f"acme/{name}", tag, lists=True))
        platforms = images[name]["platforms"]
        assert [p["platform"] for p in platforms] == ["linux/amd64", "linux/arm64"]
        assert [m["digest"] for m in index["manifests"]] == [p["digest"] for p in platforms]
    notes = (work / "dist/release/RELEASE_NOTES.md").read_text()
    assert notes.startswith("# Release 0.1.0 (v0.1.0)")
    assert "(the first release)" in notes

    # gh got the record: `view` found no release, `create` made it with every file.
    files = record(work)
    assert {"dist/release/manifest.json", "dist/release/RELEASE_NOTES.md"} <= set(files)
    assert "dist/release/acme_components-0.1.0-py3-none-any.whl" in files
    sboms = [p["sbom"]["path"] for i in images.values() for p in i["platforms"]]
    assert len(sboms) == 2 * len(images)  # each platform's SBOM, on the GitHub Release
    assert {f"dist/release/{path.removeprefix('dist/')}" for path in sboms} <= set(files)
    view, create = _gh_calls(origin)
    assert view["args"] == ["release", "view", TAG]
    assert create["args"] == [
        "release", "create", TAG, "--verify-tag", "--title", TAG,
        "--notes-file", "dist/release/RELEASE_NOTES.md", *files,
    ]  # fmt: skip
    assert create["cwd"] == str(work)
    assert create["repo"] == GITHUB_REPOSITORY
    published = {p: _index_files(servers, p) for p in ("acme-imgproc", "acme-components")}
    bundle = sha256(work / "dist/release/acme_components-0.1.0-py3-none-any.whl")

    _assert_as_one_machine(origin, servers, tmp_path / "one-machine", work)

    # The same tag again (a re-run of the workflow): nothing published, the same record
    # uploaded again to the existing GitHub Release.
    second = rehearse(origin, WORKFLOW, servers, tmp_path / "second")
    assert second.failed is None, second.output()
    _assert_no_password(second)
    (final,) = second.job("finalize")
    assert "release 0.1.0 is already published: nothing uploaded, nothing pushed" in (
        final.rehearsal.runs[1].stdout + final.rehearsal.runs[1].stderr
    )
    for share in second.job("release"):  # each job found its share published
        assert " uploaded 0 file(s), pushed 0 image(s)" in share.rehearsal.runs[1].stdout
    assert {p: _index_files(servers, p) for p in published} == published
    assert sha256(second.workspace / "dist/release/acme_components-0.1.0-py3-none-any.whl") == (
        bundle
    )
    view, upload = _gh_calls(origin)[2:]
    assert view["args"] == ["release", "view", TAG]
    assert upload["args"] == ["release", "upload", TAG, "--clobber", *record(second.workspace)]


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert old in text, f"release.yml no longer holds {old!r}: update the test"
    copy = tmp_path / "release.yml"
    copy.write_text(text.replace(old, new, 1), encoding="utf-8")
    return copy


@dataclass(frozen=True)
class Breakage:
    old: str  # replaced in release.yml by
    new: str
    step: str  # the step that must fail (the start of its name)
    message: str  # in that step's stderr


BREAKAGES = {
    # A plan of the plain release: each matrix job, given --tag, refuses it (exit 11).
    "plan-without-tag": Breakage(
        ' --tag "$GITHUB_REF_NAME"',
        "",
        "kiln release --job",
        "plans a plain release, but this run was given --tag v0.1.0",
    ),
    # The registry password under another name: kiln sees a user and no password.
    "misspelled-env": Breakage(
        "KILN_REGISTRY_PASSWORD: $",
        "KILN_REGISTRY_PASWORD: $",
        "kiln plan --tag",
        "KILN_REGISTRY_USERNAME is set but KILN_REGISTRY_PASSWORD is not",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES.values()), ids=list(BREAKAGES))
def test_a_broken_workflow_fails_the_rehearsal(
    origin: Origin, servers: Servers, tmp_path: Path, breakage: Breakage
) -> None:
    workflow = _broken(tmp_path, breakage.old, breakage.new)
    broken = rehearse(origin, workflow, servers, tmp_path)
    assert broken.failed is not None, broken.output()
    assert broken.failed.step.name.startswith(breakage.step), broken.output()
    assert breakage.message in broken.failed.stderr, broken.output()
    _assert_no_password(broken)


def test_an_unknown_expression_fails_the_rehearsal(servers: Servers, tmp_path: Path) -> None:
    broken = _broken(
        tmp_path, "${{ secrets.KILN_INDEX_PASSWORD }}", "${{ secrets.KILN_INDEX_PASWORD }}"
    )
    with pytest.raises(pytest.fail.Exception, match=r"secrets\.KILN_INDEX_PASWORD"):
        read_job(broken, "plan", _expressions(servers))
    extra = _broken(tmp_path, "        run: python -m pip install -e .\n", (
        "        run: python -m pip install -e .\n        working-directory: src\n"
    ))  # fmt: skip
    with pytest.raises(pytest.fail.Exception, match="key `working-directory`"):
        read_job(extra, "plan", _expressions(servers))


def test_the_next_tag_notes_what_changed_since_the_last(
    origin: Origin, servers: Servers, tmp_path: Path
) -> None:
    """v0.2.0 on a commit after v0.1.0 (a docs change): the notes compare it with v0.1.0,
    which a checkout of the tag alone (checkout's default, depth 1, no other tag) cannot
    do: kiln refuses such a checkout before publishing anything."""
    readme = origin.root / "README.md"
    readme.write_text(readme.read_text() + "\nA rehearsal's docs change.\n")
    git(origin.root, "commit", "-qam", "docs")
    git(origin.root, "tag", "v0.2.0")
    calls = len(_gh_calls(origin))

    shallow = _broken(tmp_path, "          fetch-depth: 0\n", "")
    refused = rehearse(origin, shallow, servers, tmp_path / "shallow", tag="v0.2.0")
    assert refused.failed is not None, refused.output()
    assert refused.failed.step.name == "kiln plan --tag", refused.output()
    assert "no release tag below v0.2.0" in refused.failed.stderr, refused.output()
    assert _index_files(servers, "acme-components") == ["acme_components-0.1.0-py3-none-any.whl"]
    assert len(_gh_calls(origin)) == calls  # the gh step did not run

    second = rehearse(origin, WORKFLOW, servers, tmp_path / "v0.2.0", tag="v0.2.0")
    assert second.failed is None, second.output()
    _assert_no_password(second)
    assert _index_files(servers, "acme-components") == [
        "acme_components-0.1.0-py3-none-any.whl", "acme_components-0.2.0-py3-none-any.whl",
    ]  # fmt: skip
    notes = (second.workspace / "dist/release/RELEASE_NOTES.md").read_text()
    assert "Changes since v0.1.0:" in notes
    assert notes.count("- no change") == 3, notes  # helpers, images, components
    view, create = _gh_calls(origin)[calls:]
    assert view["args"] == ["release", "view", "v0.2.0"]
    assert create["args"][:3] == ["release", "create", "v0.2.0"]
