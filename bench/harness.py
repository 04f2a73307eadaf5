"""The benchmark harness: timed subprocesses, generated repos on their own stacks, results.

Scenarios (``bench/scenarios.py``) get a :class:`Bench`: it writes each synthetic repo
once (``bench/generate.py``), locks and cold-releases it on its own local stack when a
scenario first asks for it, and stops every stack it started at the end. Every timed
command is a subprocess; its wall-clock seconds and its peak resident memory (``ru_maxrss``
of the process and the children it waited for, from ``wait4``) are recorded.
"""

from __future__ import annotations

import json
import os
import platform
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

ROOT = Path(__file__).resolve().parents[1]
KILN = (sys.executable, "-m", "kiln")  # the kiln this Python imports
STATUSES = ("met", "not met", "measured", "not measured", "not available", "failed")


class BenchError(Exception):
    """A step of a scenario failed; the scenario is reported as failed with this text."""


@dataclass(frozen=True)
class Sample:
    seconds: float
    maxrss_mb: float  # peak RSS of the process tree it waited for
    stdout: str


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Sample:
    """Run ``argv``; time it and read its peak memory from ``wait4``."""
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
    return Sample(seconds, usage.ru_maxrss / 1024, stdout)


@dataclass(frozen=True)
class Measurement:
    """One timed case: a sample per repetition."""

    label: str
    seconds: tuple[float, ...]
    maxrss_mb: tuple[float, ...] = ()

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
        return row


def measured(label: str, samples: Sequence[Sample]) -> Measurement:
    return Measurement(
        label, tuple(s.seconds for s in samples), tuple(s.maxrss_mb for s in samples)
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
        self, workdir: Path, preset: str, repeat: int, curve: Sequence[str] = ("n10", "scale")
    ) -> None:
        self.workdir = workdir
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

    def repo(self, name: str | None = None, shape: Shape | None = None, **options: Any) -> Repo:
        """The repo of preset ``name`` (default: the run's), or of ``shape`` under ``name``;
        ``options`` go to ``generate`` (``pin_modes=False``)."""
        name = name or self.preset
        if name not in self.repos:
            shape = shape or PRESETS[name]
            root = self.workdir / name
            generate(root, shape, index_port=free_port(), registry_port=free_port(), **options)
            repo = Repo(root, shape, self.env)
            repo.git("init", "-q")
            repo.commit("generated")
            self.repos[name] = repo
        return self.repos[name]

    def close(self) -> None:
        for repo in self.repos.values():
            repo.stop()


@contextmanager
def bench(
    workdir: Path | None, preset: str, repeat: int, curve: Sequence[str] = ("n10", "scale")
) -> Iterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        b = Bench(workdir or Path(tmp), preset, repeat, curve)
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
        "base_image": os.environ.get("KILN_BASE_IMAGE", "unset"),
    }


def _cell(value: float) -> str:
    return f"{value:.2f}"


def markdown(result: Mapping[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# kiln benchmarks, {result['date']}",
        "",
        (
            f"Preset `{result['preset']}` ({result['shape']}), {result['repeat']} repetition(s) "
            f"per case; {m['cores']} cores, {m['memory_gb']} GB, {m['os']}, Python {m['python']}, "
            f"Docker {m['docker']}, kiln {m['kiln']} ({m['kiln_revision']}), kfp {m['kfp']}, "
            f"base image `{m['base_image']}`. Seconds: min / median / max."
        ),
        "",
        "| # | scenario | case | seconds | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for s in result["scenarios"]:
        first = True
        for row in s["rows"] or [None]:
            head = f"| {s['number']} | {s['title']} " if first else "| | "
            first = False
            if row is None:
                lines.append(head + "| - | - | - |")
                continue
            times = " / ".join(_cell(row[k]) for k in ("min", "median", "max"))
            rss = f"{row['peak_rss_mb']:.0f}" if "peak_rss_mb" in row else "-"
            lines.append(head + f"| {row['label']} | {times} | {rss} |")
    lines += ["", "| # | target | status | figures and note |", "|---|---|---|---|"]
    for s in result["scenarios"]:
        figures = ", ".join(f"{k} {_figure(v)}" for k, v in s["figures"].items())
        text = "; ".join(x for x in (figures, s["note"]) if x).replace("|", "\\|")
        lines.append(f"| {s['number']} | {s['target']} | **{s['status']}** | {text} |")
    return "\n".join(lines) + "\n"


def _figure(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def write_results(
    out_dir: Path, *, date: str, preset: str, repeat: int, outcomes: Sequence[Outcome]
) -> tuple[Path, Path]:
    """``<out_dir>/<date>.json`` and ``<date>.md``; returns both paths."""
    shape = PRESETS[preset]
    result = {
        "date": date,
        "preset": preset,
        "shape": f"N={shape.helpers}, M={shape.images}, K={shape.components}",
        "repeat": repeat,
        "machine": machine(),
        "scenarios": [o.as_json() for o in outcomes],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{date}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path = out_dir / f"{date}.md"
    md_path.write_text(markdown(result))
    return json_path, md_path


Scenario = Callable[[Bench], Outcome]
