"""A rehearsal of `.github/workflows/os-lock.yml`: the `run:` steps of its `os-lock` job,
run as GitHub runs them for the weekly schedule on `main`, in a fresh checkout of a git
copy of this repository whose `images/os.lock` Debian has moved past. The job commits
the moved lock and the regenerated component YAMLs to its branch and opens a pull request
whose body lists every version that moved; run again before the merge, it updates that
pull request; once merged, the next run finds nothing to change, opens nothing and ends
green.

The origin (the repository the schedule runs on) is this repository's files, with:

- a lock Debian moved past: every package of the committed lock (relocked by conftest's
  ``os_pins`` when Debian dropped a pin) that a suite still offers in an older version is
  pinned back to the newest such version, in the closure of each architecture (amd64,
  arm64). `kiln lock` makes that lock itself: it keeps a stale lock's versions when the
  suites still offer them. The component YAMLs are then
  regenerated for it (`kiln components --local`) and everything committed on `main`.
- an upstream index on loopback: `kiln lock`, with --upgrade-os too, re-resolves every
  image's requirements lock with uv (keeping their versions), and uv asks the upstream
  index. A pypiserver on 127.0.0.1 serving the wheels in the run's cache stands
  for PyPI (`[tool.kiln] upstream-index`), and the image locks are locked against it.
- the local stack on free ports, so that it meets no other checkout's stack.

What runs as-is, what is emulated or stubbed, and why:

- ``actions/checkout`` is emulated: checkout v4 for a scheduled run fetches the branch's
  commit at depth 1 and checks it out as a local branch. The run's `.kiln/cache` and
  `.kiln/wheelhouse` (conftest's ``kiln_cache``, the origin's too) are linked in, so
  that nothing is downloaded or built again.
- ``actions/setup-python``: the test's own interpreter, its bin folder on PATH.
- the apt-get step is stubbed: each package it installs must be installed here
  (dpkg-query says so) or the test fails.
- ``python -m pip install -e .`` is stubbed: a `kiln` wrapper first on PATH runs this
  checkout's kiln (see test_workflow_rehearsal.py).
- `kiln lock --upgrade-os`, `kiln components --local`, `kiln check --local` run as-is.
- the pull request step runs as-is: git commits and force-pushes the branch to the
  origin (a file:// remote stands for github.com), and a fake `gh` first on PATH keeps
  pull requests in a folder, records each call, and refuses what gh would refuse (a
  second pull request for the same branch, a head branch the origin lacks).

The runner's environment is GitHub's (CI, GITHUB_*, RUNNER_TEMP, GITHUB_STEP_SUMMARY)
plus the step's, and the machine's DOCKER_HOST and CA bundle (PIP_CERT, SSL_CERT_FILE,
REQUESTS_CA_BUNDLE: a TLS-inspecting proxy's) when set; HOME is an empty folder, and
HTTP(S)_PROXY name a closed port on 127.0.0.1 with
NO_PROXY=127.0.0.1,localhost,deb.debian.org: kiln, uv and pip reach Debian's mirror
and loopback servers, nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from debian.debian_support import Version

from kiln._debian.archive import Indexes, Mirrors, by_name
from kiln._debian.lock import parse_os_lock, read_os_lock
from kiln._util.cmd import call
from kiln._workspace.discovery import discover
from tests.e2e.conftest import PROJECT, KilnCache, OsPins, patch
from tests.e2e.tools import free_port
from tests.workflow_steps import (
    GIT,
    Job,
    Rehearsal,
    Unreproducible,
    git,
    read_job,
    run_job,
    runner_env,
    tools,
    tracked_files,
)

pytestmark = pytest.mark.e2e

WORKFLOW = PROJECT / ".github" / "workflows" / "os-lock.yml"
JOB = "os-lock"
BASE = "main"
BRANCH = f"kiln/os-lock-{BASE}"
GITHUB_REPOSITORY = "acme/monorepo"
GH_TOKEN = "ghs_rehearsal-dummy-token"  # noqa: S105 (github.token: a dummy)
APT_PACKAGES = ("gpgv", "debian-archive-keyring", "docker-registry")
APT = f"""\
sudo apt-get update -qq
sudo apt-get install -y -qq --no-install-recommends \\
  {" ".join(APT_PACKAGES)} >/dev/null"""
# Run scripts the rehearsal does not run, exactly as the workflow has them, and why.
STUBBED = {
    APT: "installs Debian packages: they must be installed on this machine (checked)",
    "python -m pip install -e .": "installs kiln: the `kiln` wrapper on PATH stands for it",
}
EMULATED = {"actions/checkout": {"persist-credentials"}, "actions/setup-python": {"python-version"}}
JOB_KEYS = {"name", "runs-on", "timeout-minutes", "permissions", "steps"}
EXPRESSIONS = {
    "secrets.KILN_OS_LOCK_TOKEN || github.token": GH_TOKEN,
    "github.repository": GITHUB_REPOSITORY,
}
# Where the runner may connect: Debian's mirror (pyproject.toml's) and loopback.
NO_PROXY = "127.0.0.1,localhost,deb.debian.org"


# ------------------------------------------------------------------ the fake GitHub
FAKE_GH = '''\
"""gh, as os-lock.yml uses it, against a folder standing for GitHub's pull requests."""
import json, os, subprocess, sys
from pathlib import Path

state = Path(os.environ["FAKE_GITHUB"])
origin = os.environ["FAKE_GITHUB_ORIGIN"]
args = sys.argv[1:]
with (state / "calls.jsonl").open("a") as log:
    log.write(json.dumps({"args": args, "cwd": os.getcwd(),
                          "repo": os.environ.get("GH_REPO", "")}) + "\\n")
pulls = state / "pulls"
pulls.mkdir(exist_ok=True)


def fail(message):
    print(f"gh (fake): {message}", file=sys.stderr)
    sys.exit(1)


def options(rest, allowed):
    found = {}
    while rest:
        name = rest.pop(0)
        if name not in allowed or not rest:
            fail(f"not emulated: {name}")
        found[name] = rest.pop(0)
    return found


def head_sha(branch):
    done = subprocess.run(["git", "-C", origin, "rev-parse", "-q", "--verify",
                           f"refs/heads/{branch}"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def every():
    return [json.loads(p.read_text()) for p in sorted(pulls.glob("*.json"))]


def save(pull):
    (pulls / f"{pull['number']}.json").write_text(json.dumps(pull, indent=1))


if not os.environ.get("GH_TOKEN") or not os.environ.get("GH_REPO"):
    fail("GH_TOKEN and GH_REPO must be set")
if args == ["auth", "setup-git"]:
    sys.exit(0)
if args[:2] == ["pr", "list"]:
    opts = options(args[2:], {"--head", "--base", "--state", "--json", "--jq"})
    if (opts.get("--state"), opts.get("--json"), opts.get("--jq")) != (
            "open", "number", ".[0].number // empty"):
        fail(f"not emulated: gh {' '.join(args)}")
    found = [p for p in every() if p["state"] == "open" and p["head"] == opts["--head"]
             and p["base"] == opts["--base"]]
    if found:
        print(found[0]["number"])
elif args[:2] == ["pr", "create"]:
    opts = options(args[2:], {"--base", "--head", "--title", "--body-file"})
    if set(opts) != {"--base", "--head", "--title", "--body-file"}:
        fail(f"not emulated: gh {' '.join(args)}")
    sha = head_sha(opts["--head"])
    if sha is None:
        fail(f"could not find the head branch {opts['--head']!r} on {origin}")
    if any(p["state"] == "open" and p["head"] == opts["--head"] for p in every()):
        fail(f'a pull request for branch "{opts["--head"]}" already exists')
    number = len(every()) + 1
    save({"number": number, "state": "open", "base": opts["--base"], "head": opts["--head"],
          "title": opts["--title"], "body": Path(opts["--body-file"]).read_text(),
          "sha": sha, "edits": 0})
    print(f"https://github.com/{os.environ['GH_REPO']}/pull/{number}")
elif args[:2] == ["pr", "edit"] and len(args) > 2:
    opts = options(args[3:], {"--title", "--body-file"})
    path = pulls / f"{args[2]}.json"
    if not path.is_file():
        fail(f"no pull request {args[2]}")
    pull = json.loads(path.read_text())
    if pull["state"] != "open":
        fail(f"pull request {args[2]} is {pull['state']}")
    pull.update(title=opts["--title"], body=Path(opts["--body-file"]).read_text(),
                sha=head_sha(pull["head"]), edits=pull["edits"] + 1)
    save(pull)
    print(f"https://github.com/{os.environ['GH_REPO']}/pull/{args[2]}")
else:
    fail(f"not emulated: gh {' '.join(args)}")
'''


@dataclass(frozen=True)
class Origin:
    """The repository the schedule runs on, and what a runner gets besides it."""

    root: Path
    caches: KilnCache  # the run's cache/ and wheelhouse/ (its .kiln's), warm
    tools: Path  # the `kiln` wrapper and the fake `gh`
    github: Path  # the fake GitHub's state: pull requests, calls
    behind: dict[str, str]  # package -> the older version the origin's lock pins

    def calls(self) -> list[list[str]]:
        log = self.github / "calls.jsonl"
        lines = log.read_text().splitlines() if log.is_file() else []
        return [json.loads(line)["args"] for line in lines]

    def pulls(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.github / "pulls").glob("*"))]

    def merge(self, number: int) -> None:
        """Mark pull request ``number`` merged (its branch is merged by the caller)."""
        path = self.github / "pulls" / f"{number}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "state": "merged"}))


# ------------------------------------------------------------------ fixtures
def _loopback_only(closed: str) -> dict[str, str]:
    return {
        **dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"), closed),
        "NO_PROXY": NO_PROXY,
        "no_proxy": NO_PROXY,
    }


def _kiln(root: Path, *args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "kiln", *args, "--repo", str(root)],
        env={**os.environ, **env}, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"kiln {' '.join(args)}:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def upstream(kiln_cache: KilnCache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A loopback index with no credentials serving the wheels the run's cache holds for
    the image locks: the rehearsal's PyPI."""
    root = tmp_path_factory.mktemp("upstream")
    packages = root / "packages"
    packages.mkdir()
    for wheel in sorted((kiln_cache.state / "wheelhouse").glob("*/*.whl")):
        if not (packages / wheel.name).exists():
            os.link(wheel, packages / wheel.name)
    port = free_port()
    with (root / "index.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port),
             "-a", ".", "-P", ".", "--disable-fallback", str(packages)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/simple"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None, (root / "index.log").read_text()
            assert time.monotonic() < deadline, (root / "index.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _behind(root: Path) -> dict[str, str]:
    """Each package of ``root``'s OS lock that a suite offers in an older version: the
    newest such version (the suites' indexes are fetched and checked into its cache)."""
    ws = discover(root)
    indexes = Indexes(ws.os, Mirrors(ws.os), call, root / ".kiln" / "cache" / "debian")
    candidates = by_name(indexes.load())
    behind = {}
    for package in read_os_lock(root).os.packages:
        older = [
            Version(c.version)
            for c in candidates.get(package.name, [])
            if Version(c.version) < Version(package.version)
        ]
        if older:
            behind[package.name] = str(max(older))
    return behind


@pytest.fixture(scope="module")
def origin(
    kiln_cache: KilnCache, os_pins: OsPins, upstream: str, tmp_path_factory: pytest.TempPathFactory
) -> Origin:
    """This repository on `main`, its OS lock one that Debian moved past (see module)."""
    base = tmp_path_factory.mktemp("os-lock")
    root = base / "origin"
    for path in tracked_files(PROJECT):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / path, root / path)
    shutil.copy2(os_pins.source / "images" / "os.lock", root / "images" / "os.lock")
    text = (root / "pyproject.toml").read_text()
    for key, value in (
        ("index-port", str(free_port())),
        ("registry-port", str(free_port())),
        ("upstream-index", json.dumps(upstream)),
    ):
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert count == 1, f"pyproject.toml: no single `{key} =` line"
    (root / "pyproject.toml").write_text(text)
    kiln_cache.link_into(root)
    env = _loopback_only(f"http://127.0.0.1:{free_port()}")

    # Pin back every package a suite still offers older, and make the lock stale (its
    # inputs): `kiln lock` resolves it again, keeping those versions, and writes the
    # layer they make; it relocks the image locks against the loopback upstream too.
    behind = _behind(root)
    lock = root / "images" / "os.lock"
    text = lock.read_text()
    for name, older in behind.items():  # in every architecture's closure
        (pinned,) = set(re.findall(rf'(?m)^name = "{re.escape(name)}"\nversion = "(.*)"$', text))
        text = text.replace(
            f'name = "{name}"\nversion = "{pinned}"\n', f'name = "{name}"\nversion = "{older}"\n'
        )
    lock.write_text(re.sub(r'(?m)^inputs = ".*"$', 'inputs = "sha256:stale"', text, count=1))
    _kiln(root, "lock", env=env)
    kept = read_os_lock(root).os.versions()
    behind = {name: older for name, older in behind.items() if kept[name] == older}
    assert behind, "no package of the OS lock could be pinned to an older version"
    _kiln(root, "components", "--local", env=env)
    _kiln(root, "stack", "down", env=env)
    git(base, "init", "-q", "-b", BASE, str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the monorepo, its OS lock behind Debian's suites")
    github = base / "github"
    github.mkdir()
    return Origin(root, kiln_cache, tools(base / "tools", FAKE_GH), github, behind)


# ------------------------------------------------------------------ the runner
def _job(workflow: Path) -> Job:
    try:
        return read_job(
            workflow, JOB, EXPRESSIONS, emulated=EMULATED, stubbed=STUBBED, job_keys=JOB_KEYS
        )
    except Unreproducible as exc:
        pytest.fail(str(exc))


def _check_installed(packages: tuple[str, ...]) -> None:
    """The apt-get step's stand-in: every package it installs is installed here."""
    if shutil.which("dpkg-query") is None:
        pytest.skip("no dpkg-query: cannot tell whether the apt-get step's packages are here")
    for package in packages:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert status.stdout == "install ok installed", f"{package} is not installed here"


def checkout(origin: Origin, workspace: Path) -> str:
    """actions/checkout v4 for a scheduled run: the branch's commit at depth 1, checked out
    as the local branch; kiln's caches linked in. Returns the commit."""
    subprocess.run([*GIT, "init", "-q", str(workspace)], check=True)
    git(workspace, "remote", "add", "origin", origin.root.as_uri())
    git(workspace, "fetch", "-q", "--no-tags", "--depth=1", "origin",
        f"+refs/heads/{BASE}:refs/remotes/origin/{BASE}")  # fmt: skip
    git(workspace, "checkout", "-q", "--force", "-B", BASE, f"refs/remotes/origin/{BASE}")
    origin.caches.link_into(workspace)
    return git(workspace, "rev-parse", "HEAD")


def rehearse(origin: Origin, workflow: Path, tmp_path: Path) -> Rehearsal:
    """Every run step of the job for a scheduled run on `main`, in a fresh checkout;
    stops at a failing one. The local stack kiln started is stopped afterwards."""
    job = _job(workflow)
    _check_installed(APT_PACKAGES)
    workspace, home, temp = tmp_path / "work", tmp_path / "home", tmp_path / "runner-temp"
    home.mkdir(parents=True)
    temp.mkdir()
    sha = checkout(origin, workspace)
    (temp / "summary.md").touch()
    github = {
        **runner_env(
            workflow="os-lock",
            job=JOB,
            event="schedule",
            ref=f"refs/heads/{BASE}",
            sha=sha,
            repository=GITHUB_REPOSITORY,
            workspace=workspace,
            temp=temp,
            home=home,
            tools=origin.tools,
        ),
        "GITHUB_STEP_SUMMARY": str(temp / "summary.md"),
        **_loopback_only(f"http://127.0.0.1:{free_port()}"),
        "FAKE_GITHUB": str(origin.github),
        "FAKE_GITHUB_ORIGIN": str(origin.root),
    }
    # The machine's own: its engine, and the CA bundle of a TLS-inspecting proxy, if any.
    for name in ("DOCKER_HOST", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if name in os.environ:
            github[name] = os.environ[name]
    assert shutil.which("kiln", path=github["PATH"]) == str(origin.tools / "kiln")
    try:
        return run_job(job, workspace=workspace, env=github, temp=temp, stubbed=STUBBED)
    finally:
        subprocess.run(
            [sys.executable, "-m", "kiln", "stack", "down", "--repo", str(workspace)],
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip


# ------------------------------------------------------------------ checks
def _versions(root: Path, ref: str) -> dict[str, dict[str, str]]:
    """The OS lock's versions at ``ref`` of the repository at ``root``, per set as kiln
    names them: "os" (the first architecture's), "os arm64"."""
    lock = parse_os_lock(Path("images/os.lock"), git(root, "show", f"{ref}:images/os.lock"))
    return {
        "os" if arch == lock.architecture else f"os {arch}": lock.of(arch).os.versions()
        for arch in lock.architectures
    }


def _digests(root: Path, ref: str) -> set[str]:
    """Every image digest the committed component YAMLs at ``ref`` pin."""
    names = git(root, "ls-tree", "--name-only", ref, "pipelines/components/generated/")
    found: set[str] = set()
    for name in names.splitlines():
        if name.endswith(".yaml"):
            found |= set(re.findall(r"@(sha256:[0-9a-f]{64})", git(root, "show", f"{ref}:{name}")))
    return found


def _lines(sets: dict[str, dict[str, str]], moved: dict[str, dict[str, str]]) -> list[str]:
    """What `kiln lock --upgrade-os` prints for a move from ``sets`` to ``moved``: each
    set's lines, the first architecture's first."""
    lines = []
    for where, before in sets.items():
        after = moved[where]
        for name in sorted(before.keys() | after.keys()):
            what = name if where == "os" else f"{name} ({where})"
            if name not in before:
                lines.append(f"+ {what} {after[name]}")
            elif name not in after:
                lines.append(f"- {what} {before[name]}")
            elif before[name] != after[name]:
                lines.append(f"  {what} {before[name]} -> {after[name]}")
    return lines


def _changes(rehearsal: Rehearsal) -> list[str]:
    report = json.loads((rehearsal.workspace.parent / "runner-temp/os-lock.json").read_text())
    changes: list[str] = report["os"]["changes"]
    return changes


# ------------------------------------------------------------------ the tests
def _opened(
    origin: Origin, first: Rehearsal, main: str, before: dict[str, dict[str, str]]
) -> list[str]:
    """The first run on the stale origin pushed the branch and opened one pull request
    listing every change; the change lines."""
    assert first.failed is None, first.output()
    assert [r.returncode for r in first.runs] == [None, None, 0, 0, 0, 0, 0]  # installs stubbed

    # kiln moved every package pinned behind back to the newest, and said so, one line each.
    after = _versions(origin.root, BRANCH)
    changes = _changes(first)
    assert changes == _lines(before, after)
    assert set(origin.behind) <= {line.split()[0] for line in changes}
    assert list(after) == ["os", "os arm64"]
    for versions in after.values():  # each architecture's
        assert all(Version(versions[n]) > Version(old) for n, old in origin.behind.items())

    # The branch: one commit on main with the new lock and the YAMLs that follow it.
    assert git(origin.root, "rev-parse", f"{BRANCH}~1") == main
    files = git(origin.root, "diff", "--name-only", BASE, BRANCH).splitlines()
    assert "images/os.lock" in files
    assert {f for f in files if f.endswith(".yaml")}, files
    # Every image on the moved OS layer has new bytes: each got a patch bump.
    for image in ("analytics", "base"):
        assert f"images/{image}/image.toml" in files
        old, new = (
            re.search(
                r'(?m)^version = "(.*)"$',
                git(origin.root, "show", f"{ref}:images/{image}/image.toml"),
            )
            for ref in (BASE, BRANCH)
        )
        assert old is not None
        assert new is not None
        assert new.group(1) == patch(old.group(1)), image
    assert not _digests(origin.root, BASE) & _digests(origin.root, BRANCH)  # every image moved
    assert git(first.workspace, "status", "--porcelain") == ""
    message = git(origin.root, "log", "-1", "--format=%an <%ae>%n%B", BRANCH)
    title = f"Bump {len(changes)} Debian packages in images/os.lock"
    assert message.startswith(
        f"github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>\n{title}\n\n"
    )

    # One pull request into main, its body every change line kiln printed, and the files.
    temp = first.workspace.parent / "runner-temp"
    assert origin.calls() == [
        ["auth", "setup-git"],
        ["pr", "list", "--head", BRANCH, "--base", BASE, "--state", "open", "--json", "number",
         "--jq", ".[0].number // empty"],
        ["pr", "create", "--base", BASE, "--head", BRANCH, "--title", title,
         "--body-file", str(temp / "pr-body.md")],
    ]  # fmt: skip
    (pull,) = origin.pulls()
    assert pull["sha"] == git(origin.root, "rev-parse", BRANCH)
    assert "\n".join(["```diff", *changes, "```"]) in pull["body"]
    added, dropped = (sum(line.startswith(c) for line in changes) for c in "+-")
    moved = len(changes) - added - dropped
    assert f"{moved} moved, {added} added (`+`), {dropped} dropped (`-`)" in pull["body"]
    for name in files:
        assert f"M\t{name}" in pull["body"]
    assert f"opened a pull request: {title}" in (temp / "summary.md").read_text()
    return changes


def test_a_lock_debian_moved_past_gets_a_pull_request_then_nothing(
    origin: Origin, tmp_path: Path
) -> None:
    main = git(origin.root, "rev-parse", BASE)
    before = _versions(origin.root, BASE)
    first = rehearse(origin, WORKFLOW, tmp_path / "first")
    changes = _opened(origin, first, main, before)
    tree = git(origin.root, "rev-parse", f"{BRANCH}^{{tree}}")

    # A week later, not merged yet: the branch is made again (the same files), and the
    # open pull request is updated instead of a second one opened.
    second = rehearse(origin, WORKFLOW, tmp_path / "second")
    assert second.failed is None, second.output()
    assert _changes(second) == changes
    assert git(origin.root, "rev-parse", f"{BRANCH}^{{tree}}") == tree
    assert [call[:3] for call in origin.calls()[3:]] == [
        ["auth", "setup-git"], ["pr", "list", "--head"], ["pr", "edit", "1"],
    ]  # fmt: skip
    (pull,) = origin.pulls()
    assert pull["edits"] == 1
    assert pull["sha"] == git(origin.root, "rev-parse", BRANCH)

    # Merged: main is the branch. The next run finds nothing to change, pushes nothing,
    # asks GitHub nothing, and ends green saying so.
    git(origin.root, "merge", "-q", "--ff-only", BRANCH)
    origin.merge(pull["number"])
    merged = git(origin.root, "rev-parse", BASE)
    calls = len(origin.calls())
    third = rehearse(origin, WORKFLOW, tmp_path / "third")
    assert third.failed is None, third.output()
    assert [r.returncode for r in third.runs] == [None, None, 0, 0, 0, 0, 0]
    assert _changes(third) == []
    assert "images/os.lock is up to date" in third.runs[-1].stdout
    assert git(third.workspace, "status", "--porcelain") == ""
    assert len(origin.calls()) == calls
    assert git(origin.root, "rev-parse", BASE) == git(origin.root, "rev-parse", BRANCH) == merged


def test_the_rehearsal_refuses_what_it_cannot_reproduce(tmp_path: Path) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    for old, new, problem in (
        ("secrets.KILN_OS_LOCK_TOKEN ||", "secrets.OTHER_TOKEN ||", "secrets.OTHER_TOKEN"),
        ("        run: kiln components --local\n",
         "        run: kiln components --local\n        if: always()\n", "key `if`"),
        ("gpgv debian-archive-keyring docker-registry", "gpgv", "stubbed script"),
    ):  # fmt: skip
        assert old in text, f"os-lock.yml no longer holds {old!r}: update the test"
        broken = tmp_path / "os-lock.yml"
        broken.write_text(text.replace(old, new, 1), encoding="utf-8")
        with pytest.raises(pytest.fail.Exception, match=re.escape(problem)):
            _job(broken)
