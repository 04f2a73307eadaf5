"""The benchmark harness: timed subprocesses, generated repos on their own stacks, results.

Scenarios (``bench/scenarios.py``) get a :class:`Bench`: it writes each synthetic repo
once (``bench/generate.py``), locks and cold-releases it on its own local stack when a
scenario first asks for it, and stops every stack it started at the end. Every timed
command is a subprocess; its wall-clock seconds and its peak resident memory (``ru_maxrss``
of the process and the children it waited for, from ``wait4``) are recorded.

Every repo builds on kiln's OS base from this repository's ``images/os.lock``: its 43
``.deb`` files are fetched once per run (untimed) and hard-linked into each repo's
``.kiln/cache/debian``, so a repo's first release builds the OS layer from a warm .deb
cache and nothing else of the OS is seeded (no layer). The Docker baselines build FROM
kiln's ``<org>/packages`` base (the OS layer and pip), pulled into the engine by digest
from the first released repo's registry (``Bench.python_base``).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.generate import PRESETS, Shape, generate
from kiln._debian.archive import Mirrors
from kiln._debian.lock import OsLock, read_os_lock
from kiln._images.os_layers import deb_path, fetch_debs
from kiln._workspace.discovery import discover

ROOT = Path(__file__).resolve().parents[1]
KILN = (sys.executable, "-m", "kiln")  # the kiln this Python imports
STATUSES = ("met", "not met", "measured", "not measured", "not available", "failed")
PYTHON_BASE = "kiln-bench/python:3.11-pip"  # the Docker baselines' FROM, tagged in the engine
_COPY_IGNORE = shutil.ignore_patterns(
    ".kiln", "dist", ".nox", ".git", "__pycache__", "*.egg-info", ".pytest_cache"
)


class BenchError(Exception):
    """A step of a scenario failed; the scenario is reported as failed with this text."""


@dataclass(frozen=True)
class Sample:
    seconds: float
    maxrss_mb: float  # peak RSS of the process tree it waited for
    stdout: str
    load: float = -1.0  # the machine's 1-minute load average when it started (-1: unknown)
    cpu_seconds: float = -1.0  # user + sys of the process tree it waited for (-1: unknown)


def load_average() -> float:
    """The 1-minute load average (the machine is shared: every sample records it)."""
    return round(os.getloadavg()[0], 2)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Sample:
    """Run ``argv``; time it and read its peak memory from ``wait4``."""
    load = load_average()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=None if env is None else dict(env), stdout=out, stderr=err
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    if check and proc.returncode != 0:
        tail = "\n".join(stderr.rstrip().splitlines()[-15:])
        raise BenchError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(seconds, usage.ru_maxrss / 1024, stdout, load, cpu)


@dataclass(frozen=True)
class Measurement:
    """One timed case: a sample per repetition."""

    label: str
    seconds: tuple[float, ...]
    maxrss_mb: tuple[float, ...] = ()
    loads: tuple[float, ...] = ()  # the 1-minute load average as each sample started

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def row(self) -> dict[str, Any]:
        s = self.seconds
        row: dict[str, Any] = {
            "label": self.label,
            "seconds": list(s),
            "min": min(s),
            "median": statistics.median(s),
            "max": max(s),
        }
        if self.maxrss_mb:
            row["peak_rss_mb"] = max(self.maxrss_mb)
        if self.loads:
            row["load_1min"] = list(self.loads)
        return row


def measured(label: str, samples: Sequence[Sample]) -> Measurement:
    return Measurement(
        label,
        tuple(s.seconds for s in samples),
        tuple(s.maxrss_mb for s in samples),
        tuple(s.load for s in samples if s.load >= 0),
    )


@dataclass
class Outcome:
    """What a scenario reports: its rows, figures, and whether its target was met."""

    number: int
    title: str
    target: str
    status: str = "not measured"
    rows: list[Measurement] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    # Compressed bytes read from a registry: (image, layer, bytes) rows, if any.
    sizes: list[tuple[str, str, int]] = field(default_factory=list)

    def judge(self, met: bool, note: str = "") -> Outcome:
        self.status = "met" if met else "not met"
        self.note = note or self.note
        return self

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [m.row() for m in self.rows]
        return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class OsSeed:
    """The OS lock the repos get and a .kiln/cache/debian folder holding its .debs."""

    lock: OsLock
    debs: Path
    relocked: str = ""  # what `kiln lock --upgrade-os` moved, when the committed pins are gone


def fetch_seed(work: Path, env: Mapping[str, str]) -> OsSeed:
    """This repository's OS lock and its .debs (each checked by sha256). Debian drops
    superseded versions from its mirrors: when a pin is gone, a generated repo's lock is
    moved with `kiln lock --upgrade-os` and used instead (the results say so)."""
    lock = read_os_lock(ROOT)
    mirrors = Mirrors(discover(ROOT).os)
    fetched = fetch_debs(lock.os.packages, mirrors, work / "debian")
    if not fetched.gone:
        return OsSeed(lock, work / "debian")
    gone = ", ".join(f"{p.name} {p.version}" for p in fetched.gone)
    relock = generate(work / "relocked", Shape(1, 1, 0))
    moved = run((*KILN, "lock", "--upgrade-os", "--repo", str(relock)), env=env).stdout
    lock = read_os_lock(relock)
    fetched = fetch_debs(lock.os.packages, mirrors, work / "debian")
    if fetched.gone:
        raise BenchError(f"no mirror serves {', '.join(p.name for p in fetched.gone)}")
    changes = "; ".join(line.strip() for line in moved.splitlines() if "->" in line)
    why = f"moved by `kiln lock --upgrade-os` ({gone} gone): {changes}"
    return OsSeed(lock, work / "debian", why)


class Repo:
    """A generated monorepo on its own stack ports, with its git history."""

    def __init__(self, root: Path, shape: Shape, env: Mapping[str, str]) -> None:
        self.root = root
        self.shape = shape
        self.env = dict(env)
        self.locked = False
        self.cold_release: Sample | None = None
        self.stack_started = False

    def kiln(self, *args: str, check: bool = True) -> Sample:
        argv = [*KILN, args[0], "--repo", str(self.root), *args[1:]]
        return run(argv, env=self.env, check=check)

    def git(self, *args: str) -> None:
        run(("git", "-C", str(self.root), *args), env=self.env)

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)

    def lock(self) -> None:
        if not self.locked:
            self.kiln("lock")
            self.commit("kiln lock")
            self.locked = True

    def release(self) -> Sample:
        """The first (cold) release: everything published; timed once."""
        if self.cold_release is None:
            self.lock()
            self.stack_started = True
            self.kiln("stack", "up")
            self.cold_release = self.kiln("release", "--local", "--json")
            self.commit("generated components")
        return self.cold_release

    def stop(self) -> None:
        if self.stack_started:
            self.kiln("stack", "down", check=False)
            self.stack_started = False


class Bench:
    """The run's settings and its repos (one per shape, written on first use)."""

    def __init__(
        self,
        workdir: Path,
        preset: str,
        repeat: int,
        curve: Sequence[str] = ("n10", "scale"),
        os_cache: Path | None = None,
        *,
        matrix: str = "n200",
    ) -> None:
        self.workdir = workdir
        self.matrix = matrix  # scenario 10's preset
        # A kiln cache (``.kiln/cache``) holding this repository's OS .debs and layer:
        # each repo's cache starts with them (a harness check, not a measurement).
        self.os_cache = os_cache
        self.preset = preset
        self.repeat = repeat
        self.curve = tuple(curve)  # scenario 6's presets, smallest first
        self.env = {k: v for k, v in os.environ.items() if k != "KILN_NO_WHEEL_CACHE"}
        self.env.setdefault("KILN_OFFLINE", "1")
        self.env.setdefault("GIT_AUTHOR_NAME", "bench")
        self.env.setdefault("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        self.env.setdefault("GIT_COMMITTER_NAME", "bench")
        self.env.setdefault("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        self.repos: dict[str, Repo] = {}
        self.memo: dict[str, Any] = {}  # what one scenario measured and another reuses
        self._seed: OsSeed | None = None
        self.docker_base = ""  # what the Docker baselines built FROM, once pulled

    def seed(self) -> OsSeed:
        """The OS lock every repo gets and its .debs, fetched once (see module)."""
        if self._seed is None and self.os_cache is not None:
            self._seed = OsSeed(read_os_lock(ROOT), self.os_cache / "debian")
        if self._seed is None:
            self._seed = fetch_seed(self.workdir / "os-seed", self.env)
        return self._seed

    def _add(self, name: str, root: Path, shape: Shape) -> Repo:
        seed = self.seed()
        debs = root / ".kiln" / "cache" / "debian" / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        for pin in seed.lock.os.packages:  # hard links: kiln checks each sha256 again
            os.link(deb_path(seed.debs, pin), deb_path(debs.parent, pin))
        if self.os_cache is not None:  # and the OS layer, content-addressed and checked
            shutil.copytree(self.os_cache / "oci", root / ".kiln" / "cache" / "oci",
                            copy_function=os.link, dirs_exist_ok=True)  # fmt: skip
        repo = Repo(root, shape, self.env)
        repo.git("init", "-q")
        repo.commit("generated")
        self.repos[name] = repo
        return repo

    def repo(self, name: str | None = None, shape: Shape | None = None, **options: Any) -> Repo:
        """The repo of preset ``name`` (default: the run's), or of ``shape`` under ``name``;
        ``options`` go to ``generate`` (``pin_modes=False``)."""
        name = name or self.preset
        if name not in self.repos:
            shape = shape or PRESETS[name]
            root = self.workdir / name
            generate(root, shape, index_port=free_port(), registry_port=free_port(),
                     os_lock=self.seed().lock.path, **options)  # fmt: skip
            self._add(name, root, shape)
        return self.repos[name]

    def example(self, name: str = "example") -> Repo:
        """A copy of this repository's helpers, images and pipelines (the example repo:
        ``base``, ``analytics`` and packages mode) on its own stack ports, in the folder
        ``name`` (another name: another copy, for a scenario that changes its config)."""
        if name not in self.repos:
            root = self.workdir / name
            for folder in ("helpers", "images", "pipelines"):
                shutil.copytree(ROOT / folder, root / folder, ignore=_COPY_IGNORE)
            (root / "images" / "os.lock").write_bytes(self.seed().lock.path.read_bytes())
            text = (ROOT / "pyproject.toml").read_text()
            text = re.sub(r"(?m)^index-port = \d+$", f"index-port = {free_port()}", text)
            text = re.sub(r"(?m)^registry-port = \d+$", f"registry-port = {free_port()}", text)
            (root / "pyproject.toml").write_text(text)
            (root / ".gitignore").write_text(".kiln/\ndist/\n__pycache__/\n")
            ws = discover(root)
            self._add(name, root, Shape(len(ws.helpers), len(ws.images), len(ws.components)))
        return self.repos[name]

    def python_base(self) -> str:
        """A Python with pip in the engine for the Docker baselines: kiln's packages-mode
        base (Debian's python3.11, the locked pip, PIP_BREAK_SYSTEM_PACKAGES=1) of the run's
        repo, released first if needed, pulled by digest and tagged ``PYTHON_BASE``."""
        if not self.docker_base:
            repo = self.repo()
            repo.release()
            manifest = json.loads((repo.root / "dist" / "manifest.json").read_text())
            ref = next(i["ref"] for i in manifest["images"] if i["name"] == "packages")
            run(("docker", "pull", "-q", ref), env=self.env)
            run(("docker", "tag", ref, PYTHON_BASE), env=self.env)
            self.docker_base = ref
        return PYTHON_BASE

    def setup(self) -> dict[str, str]:
        """What the run built on, for the results."""
        seed = self._seed
        lock = seed.lock if seed else read_os_lock(ROOT)
        layer = lock.os.layer
        digest = f"{layer.digest[:19]} ({layer.size} bytes)" if layer else "none"
        return {
            "os_base": (
                f"debian {lock.suite} {lock.release} {lock.architecture}, "
                f"{len(lock.os.packages)} packages, OS layer {digest}"
            ),
            "os_lock": seed.relocked if seed and seed.relocked else "this repository's",
            "os_seed": (
                f".debs and the OS layer from {self.os_cache}"
                if self.os_cache is not None
                else ".debs only (each repo's first release builds the OS layer from them)"
            ),
            "docker_base": (
                f"{PYTHON_BASE}: kiln's packages base {self.docker_base.split('@')[-1][:19]}"
                if self.docker_base
                else "not used"
            ),
        }

    def close(self) -> None:
        for repo in self.repos.values():
            repo.stop()


@contextmanager
def bench(
    workdir: Path | None,
    preset: str,
    repeat: int,
    curve: Sequence[str] = ("n10", "scale"),
    os_cache: Path | None = None,
    *,
    matrix: str = "n200",
) -> Iterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        b = Bench(workdir or Path(tmp), preset, repeat, curve, os_cache, matrix=matrix)
        try:
            yield b
        finally:
            b.close()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """Cores, memory, Python, Docker, kiln and kfp versions."""
    meminfo = Path("/proc/meminfo")
    mem_kb = 0
    if meminfo.exists():
        line = next(x for x in meminfo.read_text().splitlines() if x.startswith("MemTotal"))
        mem_kb = int(line.split()[1])
    docker = run(("docker", "version", "--format", "{{.Server.Version}}"), check=False)
    revision = run(("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"), check=False)
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "docker": docker.stdout.strip() or "unavailable",
        "kiln": _version("kiln"),
        "kiln_revision": revision.stdout.strip(),
        "kfp": _version("kfp"),
    }


def _cell(value: float) -> str:
    return f"{value:.2f}"


def markdown(result: Mapping[str, Any]) -> str:
    m = result["machine"]
    setup = result.get("setup") or {}
    on = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in setup.items())
    lines = [
        f"# kiln benchmarks, {result['date']}",
        "",
        (
            f"Preset `{result['preset']}` ({result['shape']}), {result['repeat']} repetition(s) "
            f"per case; {m['cores']} cores, {m['memory_gb']} GB, {m['os']}, Python {m['python']}, "
            f"Docker {m['docker']}, kiln {m['kiln']} ({m['kiln_revision']}), kfp {m['kfp']}. "
            + (f"Built on: {on}. " if on else "")
            + "Seconds: min / median / max."
        ),
        "",
        "| # | scenario | case | seconds | peak RSS MB | load |",
        "|---|---|---|---|---|---|",
    ]
    for s in result["scenarios"]:
        first = True
        for row in s["rows"] or [None]:
            head = f"| {s['number']} | {s['title']} " if first else "| | "
            first = False
            if row is None:
                lines.append(head + "| - | - | - | - |")
                continue
            times = " / ".join(_cell(row[k]) for k in ("min", "median", "max"))
            rss = f"{row['peak_rss_mb']:.0f}" if "peak_rss_mb" in row else "-"
            label = row["label"].replace("|", "\\|")
            loads = row.get("load_1min") or []
            load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
            lines.append(head + f"| {label} | {times} | {rss} | {load} |")
    sized = [s for s in result["scenarios"] if s.get("sizes")]
    if sized:
        lines += ["", "| # | image | layer | compressed bytes | MB |", "|---|---|---|---|---|"]
        for s in sized:
            for image, layer, size in s["sizes"]:
                lines.append(f"| {s['number']} | {image} | {layer} | {size:,} | {size / 1e6:.1f} |")
    lines += ["", "| # | target | status | figures and note |", "|---|---|---|---|"]
    for s in result["scenarios"]:
        figures = ", ".join(f"{k} {_figure(v)}" for k, v in s["figures"].items())
        text = "; ".join(x for x in (figures, s["note"]) if x).replace("|", "\\|")
        lines.append(f"| {s['number']} | {s['target']} | **{s['status']}** | {text} |")
    return "\n".join(lines) + "\n"


def _figure(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def write_results(
    out_dir: Path,
    *,
    date: str,
    preset: str,
    repeat: int,
    outcomes: Sequence[Outcome],
    setup: Mapping[str, str] | None = None,
) -> tuple[Path, Path]:
    """``<out_dir>/<date>.json`` and ``<date>.md``; returns both paths. ``setup``: what
    the run built on (``Bench.setup``)."""
    shape = PRESETS[preset]
    result = {
        "date": date,
        "preset": preset,
        "shape": f"N={shape.helpers}, M={shape.images}, K={shape.components}",
        "repeat": repeat,
        "machine": machine(),
        "setup": dict(setup or {}),
        "scenarios": [o.as_json() for o in outcomes],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{date}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path = out_dir / f"{date}.md"
    md_path.write_text(markdown(result))
    return json_path, md_path


Scenario = Callable[[Bench], Outcome]
