"""A rehearsal of `.github/workflows/release.yml`: the `run:` steps of its `release` job,
run as GitHub runs them for a pushed tag v0.1.0, in a fresh checkout of a git copy of
this repository, against an index and a registry that require credentials (conftest's
``servers``). It publishes the wheels, the images and `acme-components==0.1.0`, writes
`dist/release/`, hands it to `gh`, and writes the password nowhere; the same tag again
publishes nothing; a workflow broken in a way that matters fails the rehearsal; and a
v0.2.0 tagged after it gets notes that compare it with v0.1.0, which needs the
checkout's `fetch-depth: 0` (the last test: it adds a commit and a tag to the origin).

What runs as-is, what is emulated or stubbed, and why:

- ``actions/checkout`` (a `uses:` step) is emulated: every run starts from a fresh
  checkout of the tag, fetched the way checkout v4 does it (by default only the tagged
  commit, at depth 1, no other tag; `fetch-depth: 0` fetches every branch and tag). The
  run's `.kiln/cache` and `.kiln/wheelhouse` (conftest's ``kiln_cache``) are linked in,
  only so that nothing is downloaded or built again: a runner starts with neither, and
  kiln fills them with the same files.
- ``actions/setup-python`` is emulated by the test's own interpreter: its bin folder is
  on PATH (`python`, and the twine and uv kiln calls), as on the runner.
- ``python -m pip install -e .`` is stubbed (skipped): run here, it would install kiln
  into the test's own environment, or need PyPI for kiln's dependencies. What it gives
  the next steps, a `kiln` command of this checkout's code, is a wrapper first on PATH
  that runs this interpreter's ``-m kiln`` with this checkout's `src/` on PYTHONPATH.
  The stub matches the script exactly: another install script fails the test.
- ``kiln release --tag ...`` runs as-is, with the environment the workflow gives it.
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

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from kiln._servers.credentials import Credentials
from kiln._servers.registry import RegistryClient
from tests import workflow_steps
from tests.e2e.conftest import HELPERS, IMAGES, PASSWORD, PROJECT, USER, KilnCache, OsPins, Servers
from tests.e2e.tools import free_port
from tests.workflow_steps import GIT, Rehearsal, git, run_job, runner_env, tools, tracked_files

pytestmark = pytest.mark.e2e

WORKFLOW = PROJECT / ".github" / "workflows" / "release.yml"
JOB = "release"
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
}
JOB_KEYS = {"name", "runs-on", "timeout-minutes", "permissions", "steps", "env"}


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
    job: workflow_steps.Job
    fetch_depth: int
    fetch_tags: bool


def read_job(workflow: Path, values: dict[str, str]) -> Job:
    """The job's run steps with their expressions replaced; a failure naming everything
    in the job the rehearsal does not know how to reproduce."""
    try:
        job = workflow_steps.read_job(
            workflow, JOB, values, emulated=EMULATED, stubbed=STUBBED, job_keys=JOB_KEYS
        )
    except workflow_steps.Unreproducible as exc:
        pytest.fail(str(exc))
    checkout = job.uses.get("actions/checkout", {})
    return Job(job, int(checkout.get("fetch-depth", 1)), bool(checkout.get("fetch-tags", False)))


# ------------------------------------------------------------------ the runner
@dataclass(frozen=True)
class Origin:
    """The repository the tag was pushed to, and what a runner gets besides it."""

    root: Path
    sha: str  # v0.1.0's commit
    caches: KilnCache  # the run's cache/ and wheelhouse/, warm
    tools: Path  # the `kiln` wrapper and the fake `gh`
    github: Path  # the fake GitHub's state: releases made, calls


def checkout(origin: Origin, workspace: Path, job: Job, tag: str) -> None:
    """actions/checkout for a tag push: the tag alone at depth 1, unless fetch-depth: 0."""
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
    origin.caches.link_into(workspace)


def rehearse(
    origin: Origin, workflow: Path, servers: Servers, tmp_path: Path, tag: str = TAG
) -> Rehearsal:
    """Every run step of the job for a push of ``tag``, in order, in a fresh checkout;
    stops at a failing one."""
    job = read_job(workflow, _expressions(servers, tag))
    workspace, home, temp = tmp_path / "work", tmp_path / "home", tmp_path / "runner-temp"
    home.mkdir(parents=True)
    temp.mkdir()
    checkout(origin, workspace, job, tag)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    github = {
        **runner_env(
            workflow="release",
            job=JOB,
            event="push",
            ref=f"refs/tags/{tag}",
            sha=git(origin.root, "rev-parse", f"{tag}^{{commit}}"),
            repository=GITHUB_REPOSITORY,
            workspace=workspace,
            temp=temp,
            home=home,
            tools=origin.tools,
        ),
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
    return run_job(job.job, workspace=workspace, env=github, temp=temp, stubbed=STUBBED)


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


def _assert_no_password(rehearsal: Rehearsal) -> None:
    assert PASSWORD not in rehearsal.output()
    canary = PASSWORD.encode()
    for folder in ("dist", ".kiln/logs", "pipelines/components/generated"):
        path = rehearsal.workspace / folder
        assert _files_holding(path, canary) == [], folder


def _index_files(servers: Servers, project: str) -> list[str]:
    page = requests.get(f"{servers.index_url}/simple/{project}/", auth=(USER, PASSWORD), timeout=10)
    page.raise_for_status()
    return sorted(re.findall(r">([^<]+\.whl)<", page.text))


def _gh_calls(origin: Origin) -> list[dict[str, Any]]:
    log = origin.github / "calls.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _record(workspace: Path) -> list[str]:
    """dist/release's files, as the gh step's `find dist/release -type f | sort` lists them."""
    found = [p.relative_to(workspace).as_posix() for p in (workspace / "dist/release").rglob("*")]
    return sorted(f for f in found if (workspace / f).is_file())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the tests
def test_rehearsal_releases_the_tag_then_is_a_no_op(
    origin: Origin, servers: Servers, tmp_path: Path
) -> None:
    first = rehearse(origin, WORKFLOW, servers, tmp_path / "first")
    assert first.failed is None, first.output()
    assert [r.returncode for r in first.runs] == [None, 0, 0]  # install stubbed
    _assert_no_password(first)
    work = first.workspace
    assert git(work, "status", "--porcelain") == ""  # the release changed no tracked file

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
    record = _record(work)
    assert {"dist/release/manifest.json", "dist/release/RELEASE_NOTES.md"} <= set(record)
    assert "dist/release/acme_components-0.1.0-py3-none-any.whl" in record
    sboms = [p["sbom"]["path"] for i in images.values() for p in i["platforms"]]
    assert len(sboms) == 2 * len(images)  # each platform's SBOM, on the GitHub Release
    assert {f"dist/release/{path.removeprefix('dist/')}" for path in sboms} <= set(record)
    view, create = _gh_calls(origin)
    assert view["args"] == ["release", "view", TAG]
    assert create["args"] == [
        "release", "create", TAG, "--verify-tag", "--title", TAG,
        "--notes-file", "dist/release/RELEASE_NOTES.md", *record,
    ]  # fmt: skip
    assert create["cwd"] == str(work)
    assert create["repo"] == GITHUB_REPOSITORY
    published = {p: _index_files(servers, p) for p in ("acme-imgproc", "acme-components")}
    bundle = _sha256(work / "dist/release/acme_components-0.1.0-py3-none-any.whl")

    # The same tag again (a re-run of the workflow): nothing published, the same record
    # uploaded again to the existing GitHub Release.
    second = rehearse(origin, WORKFLOW, servers, tmp_path / "second")
    assert second.failed is None, second.output()
    _assert_no_password(second)
    assert "release 0.1.0 is already published: nothing uploaded, nothing pushed" in (
        second.runs[1].stdout + second.runs[1].stderr
    )
    assert {p: _index_files(servers, p) for p in published} == published
    assert _sha256(second.workspace / "dist/release/acme_components-0.1.0-py3-none-any.whl") == (
        bundle
    )
    view, upload = _gh_calls(origin)[2:]
    assert view["args"] == ["release", "view", TAG]
    assert upload["args"] == ["release", "upload", TAG, "--clobber", *_record(second.workspace)]


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
    # A plain release: dist/release/ is never written, so gh has nothing to attach.
    "release-without-tag": Breakage(
        ' --tag "$GITHUB_REF_NAME"', "", "attach the release record", "gh (fake): "
    ),
    # The registry password under another name: kiln sees a user and no password.
    "misspelled-env": Breakage(
        "KILN_REGISTRY_PASSWORD: $",
        "KILN_REGISTRY_PASWORD: $",
        "kiln release --tag",
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
        read_job(broken, _expressions(servers))
    extra = _broken(tmp_path, "        run: python -m pip install -e .\n", (
        "        run: python -m pip install -e .\n        working-directory: src\n"
    ))  # fmt: skip
    with pytest.raises(pytest.fail.Exception, match="key `working-directory`"):
        read_job(extra, _expressions(servers))


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
    assert refused.failed.step.name == "kiln release --tag", refused.output()
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
