"""Scenario 10: the release as a matrix of local processes against one process, cold.

Issue 20's figure: a cold N=200 release split over 4 local processes finishing in at most
0.4x of one process's time, measured in the same run. The repo is the scale curve's
(``--matrix N``: the preset of N helpers, 10 images, 2N components), locked and committed.
Each repetition runs both sides, alternating which goes first, each on servers of its
own started for it (an empty index and registry: both cold):

- (a) one process: ``kiln release --index URL --registry HOST --json``, the plain release
  the scale curve times (its ``--local`` is the same release on the repo's own stack; the
  explicit target lets every checkout below use one fresh stack). Not ``--tag``: a tag
  release adds the same checks (component drift, the bundle, notes) to both sides, and
  the scale curve's cold release is then a like-for-like check of this one.
- (b) the matrix, as CI runs it: ``kiln plan --jobs 4 --json`` (plan.json), then the 4
  ``kiln release --job J --plan plan.json`` processes at once, then ``kiln release
  --finalize --plan plan.json``.

Every kiln process runs in a checkout of its own (``git clone`` of the repo, made before
the clock starts: CI's checkout) with an empty kiln build cache (no wheel, layer, SBOM
or component cache). Only the download caches are shared, as the rehearsal e2e shares
them: ``.kiln/cache/debian`` (the OS lock's .debs) and ``.kiln/wheelhouse`` (the locked
third-party wheels), filled untimed first (each image's lock fetched as a release does;
with ``--os-cache``, the harness's own test, each checkout also gets that cache's OS
layer, as each repo does). Each
process's wall seconds, its CPU seconds (user + sys of it and its children, from
``wait4``) and the 1-minute load average as it started are recorded; the verdict is the
ratio of medians (b)/(a).

The machine has ``os.cpu_count()`` cores, shared by the 4 jobs (and by other people):
the jobs' phase cannot take less than their CPU seconds over the cores, so the figures
also give that floor and the ratio it would allow.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.harness import (
    KILN,
    Bench,
    BenchError,
    Measurement,
    Outcome,
    Repo,
    Sample,
    free_port,
    run,
)
from kiln._lock.format import read_lock
from kiln._servers.stack import LocalStack
from kiln._wheels.wheelhouse import PipDownload, SimplePages, fetch_locked
from kiln._workspace.discovery import discover
from kiln._workspace.model import StackConfig
from kiln._workspace.platforms import python_platform

JOBS = 4
TARGET = 0.4  # issue 20: (b) over (a), at most
SHARED = ("cache/debian", "wheelhouse")  # download caches, under .kiln


class _Servers:
    """A fresh index and registry of their own (a new stack, empty), stopped on exit."""

    def __init__(self, state: Path) -> None:
        config = StackConfig(index_port=free_port(), registry_port=free_port())
        self.stack = LocalStack(config, state)

    def __enter__(self) -> tuple[str, ...]:
        self.stack.up()
        return ("--index", self.stack.index_url, "--registry", self.stack.registry)

    def __exit__(self, *_exc: object) -> None:
        self.stack.down()


class _Checkouts:
    """Fresh clones of ``repo``, each with an empty build cache and the shared download
    caches linked in."""

    def __init__(self, repo: Repo, work: Path, os_cache: Path | None) -> None:
        self.repo = repo
        self.work = work
        self.os_cache = os_cache
        self.shared = work / "downloads"
        for folder in SHARED:
            (self.shared / folder).mkdir(parents=True, exist_ok=True)
        debs = repo.root / ".kiln" / "cache" / "debian"
        if debs.is_dir():  # the harness's seeded .debs (hard links, checked by kiln)
            shutil.copytree(debs, self.shared / "cache" / "debian", copy_function=os.link,
                            dirs_exist_ok=True)  # fmt: skip
        self.count = 0

    def new(self, name: str) -> Path:
        self.count += 1
        root = self.work / f"{self.count:03d}-{name}"
        run(("git", "clone", "-q", str(self.repo.root), str(root)), env=self.repo.env)
        state = root / ".kiln"
        (state / "cache").mkdir(parents=True)
        for folder in SHARED:
            (state / folder).symlink_to(self.shared / folder)
        if self.os_cache is not None:  # the harness's own test: the OS layer too, as for repos
            shutil.copytree(self.os_cache / "oci", state / "cache" / "oci", copy_function=os.link)
        return root

    def remove(self, *roots: Path) -> None:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


def _kiln(root: Path, env: dict[str, str], *args: str) -> Sample:
    return run((*KILN, args[0], "--repo", str(root), *args[1:]), env=env)


def _at_once(argvs: Sequence[tuple[Path, tuple[str, ...]]], env: dict[str, str]) -> list[Sample]:
    """Every (checkout, kiln arguments) started at once, each a process; their samples."""
    with ThreadPoolExecutor(len(argvs)) as pool:
        return list(pool.map(lambda a: _kiln(a[0], env, *a[1]), argvs))


class _Side:
    """One side's samples over the repetitions."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.load: dict[str, list[float]] = {}

    @property
    def loads(self) -> list[float]:
        return [x for values in self.load.values() for x in values]

    def add(self, label: str, seconds: float, cpu: float, load: float = -1.0) -> None:
        self.wall.setdefault(label, []).append(seconds)
        self.cpu.setdefault(label, []).append(cpu)
        if load >= 0:
            self.load.setdefault(label, []).append(load)

    def median(self, label: str) -> float:
        return statistics.median(self.wall[label])

    def cpu_median(self, label: str) -> float:
        return statistics.median(self.cpu[label])


def _one_process(checkouts: _Checkouts, b: Bench, side: _Side, r: int) -> None:
    root = checkouts.new(f"one-process-{r}")
    with _Servers(checkouts.work / f"stack-a-{r}") as target:
        sample = _kiln(root, b.env, "release", *target, "--json")
    result = json.loads(sample.stdout)
    if not result["pushed"]:
        raise BenchError(f"{root}: the cold release pushed nothing: {result}")
    side.add("one", sample.seconds, sample.cpu_seconds, sample.load)
    checkouts.remove(root)


def _matrix(checkouts: _Checkouts, b: Bench, side: _Side, r: int) -> tuple[int, int]:
    plan_root = checkouts.new(f"plan-{r}")
    jobs = [checkouts.new(f"job{j}-{r}") for j in range(JOBS)]
    final = checkouts.new(f"finalize-{r}")
    plan = checkouts.work / f"plan-{r}.json"
    with _Servers(checkouts.work / f"stack-b-{r}") as target:
        made = _kiln(plan_root, b.env, "plan", *target, "--jobs", str(JOBS), "--json")
        plan.write_text(made.stdout)
        side.add("plan", made.seconds, made.cpu_seconds, made.load)
        start = time.perf_counter()
        load = os.getloadavg()[0]
        runs = _at_once(
            [(root, ("release", *target, "--job", str(j), "--plan", str(plan), "--json"))
             for j, root in enumerate(jobs)],
            b.env,
        )  # fmt: skip
        side.add("jobs", time.perf_counter() - start, sum(s.cpu_seconds for s in runs), load)
        for j, sample in enumerate(runs):
            side.add(f"job {j}", sample.seconds, sample.cpu_seconds)
        done = _kiln(final, b.env, "release", "--finalize", "--plan", str(plan), *target, "--json")
        side.add("finalize", done.seconds, done.cpu_seconds, done.load)
    pushed = sum(len(json.loads(s.stdout)["pushed"]) for s in runs)
    images = sum(len(job["images"]) for job in json.loads(plan.read_text())["jobs"])
    if pushed != images:
        raise BenchError(f"the {JOBS} jobs pushed {pushed} image(s), the plan has {images}")
    manifest = json.loads((final / "dist" / "manifest.json").read_text())
    if len(manifest["images"]) != images:
        raise BenchError(f"finalize recorded {len(manifest['images'])} image(s) of {images}")
    side.add(
        "total",
        sum(side.wall[k][-1] for k in ("plan", "jobs", "finalize")),
        sum(side.cpu[k][-1] for k in ("plan", "jobs", "finalize")),
    )
    checkouts.remove(plan_root, *jobs, final)
    return images, sum(1 for job in json.loads(plan.read_text())["jobs"] if job["images"])


def _fill_wheelhouse(repo: Repo, cache: Path) -> None:
    """Every image's locked third-party wheels, fetched as a release fetches them into
    ``.kiln/wheelhouse`` (keyed by the lock's bytes) from the repo's upstream index."""
    ws = discover(repo.root)
    pages = [(ws.upstream_index, SimplePages(ws.upstream_index))]
    for image in ws.locked:
        lock = read_lock(image)
        others = image.platforms[1:]  # as prepare resolves each: the first as None
        for platform in (None, *(python_platform(image.platform, p) for p in others)):
            fetch_locked(lock, pages=pages, cache_dir=cache, download=PipDownload(),
                         platform=platform)  # fmt: skip


def matrix(b: Bench) -> Outcome:
    o = Outcome(
        10,
        f"release matrix: plan + {JOBS} jobs at once + finalize vs one process, cold",
        f"(b) matrix <= {TARGET}x (a) one process's time, same run (issue 20)",
    )
    repo = b.repo(b.matrix)
    repo.lock()
    n = repo.shape.helpers
    checkouts = _Checkouts(repo, b.workdir / f"{b.matrix}-matrix", b.os_cache)
    # Untimed: fill the shared download caches (.debs are seeded; the locked wheels).
    _fill_wheelhouse(repo, checkouts.shared / "wheelhouse")
    one, mat = _Side(), _Side()
    images = busy = 0
    for r in range(b.repeat):
        if r % 2 == 0:
            _one_process(checkouts, b, one, r)
            images, busy = _matrix(checkouts, b, mat, r)
        else:
            images, busy = _matrix(checkouts, b, mat, r)
            _one_process(checkouts, b, one, r)
    shutil.rmtree(checkouts.work, ignore_errors=True)

    def row(label: str, side: _Side, key: str) -> Measurement:
        return Measurement(label, tuple(side.wall[key]), loads=tuple(side.load.get(key, ())))

    o.rows = [
        row(f"N={n}: (a) one process: kiln release, cold", one, "one"),
        row(f"N={n}: (b) kiln plan --jobs {JOBS}", mat, "plan"),
        row(f"N={n}: (b) {JOBS} x kiln release --job J at once (the slowest)", mat, "jobs"),
        *(row(f"N={n}: (b)   job {j}", mat, f"job {j}") for j in range(JOBS)),
        row(f"N={n}: (b) kiln release --finalize", mat, "finalize"),
        row(f"N={n}: (b) plan + jobs + finalize", mat, "total"),
    ]
    a, total = one.median("one"), mat.median("total")
    cores = os.cpu_count() or 1
    ratio = total / a
    # The jobs' phase cannot beat their CPU seconds over the cores; nor can (a) beat its own.
    floor_jobs = mat.cpu_median("jobs") / cores
    floor = mat.median("plan") + floor_jobs + mat.median("finalize")
    loads = one.loads + mat.loads
    o.figures = {
        "cpu_count": cores,
        "load 1-min (min-max)": f"{min(loads):.1f}-{max(loads):.1f}",
        "(b) / (a)": round(ratio, 2),
        "plan / (a)": round(mat.median("plan") / a, 2),
        "slowest job / (a)": round(mat.median("jobs") / a, 2),
        "finalize / (a)": round(mat.median("finalize") / a, 2),
        "(a) CPU s / wall s": round(one.cpu_median("one") / a, 2),
        "jobs' CPU s / (a)'s CPU s": round(mat.cpu_median("jobs") / one.cpu_median("one"), 2),
        f"jobs' floor on {cores} cores (CPU s / cores) / (a)": round(floor_jobs / a, 2),
        "(b) / (a) with the jobs at that floor": round(floor / a, 2),
        "images": images,
        "jobs with images": busy,
    }
    o.note = (
        f"Each repetition runs both sides, alternating which goes first, each on a fresh "
        f"stack; every kiln process in its own fresh clone with an empty build cache, only "
        f"the .debs and the locked wheels shared (fetched untimed first). The {JOBS} "
        f"jobs share the machine's {cores} cores: their phase cannot take less than their "
        "CPU seconds over the cores. 'load' is the 1-minute load average as each phase "
        "started."
    )
    return o.judge(ratio <= TARGET)
