"""Run a compiled pipeline locally with ``kfp.local.DockerRunner``.

Baked images contain everything, so containers run with no network at all.
kfp.local writes its executor logs to stdout; kiln keeps them in the run's log
file and shows one line per task instead (all of it with ``--verbose``).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kiln._components.generate import pipeline_arguments, pipeline_function
from kiln._errors import ConfigError, RunFailed
from kiln._report import Reporter, strip_ansi
from kiln._util.docker import docker_client
from kiln._workspace.model import Pipeline, Workspace

# kfp.local's own lines about a task's progress.
_TASK_START = re.compile(r"Executing task '([^']+)'")
_TASK_END = re.compile(r"Task '([^']+)' finished with status (\w+)")

# Artifact types whose files have a known extension.
_EXTENSIONS = {"HTML": ".html", "Markdown": ".md"}
# File signatures, for artifacts whose type says nothing about their format.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"%PDF-", ".pdf"))


class _TaskLines(io.TextIOBase):
    """A text stream that keeps everything in the report's log and turns kfp.local's
    task start/finish lines into one progress line each."""

    def __init__(self, report: Reporter) -> None:
        self._report = report
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = ""

    def _line(self, raw: str) -> None:
        line = strip_ansi(raw)
        self._report.detail(line)
        if end := _TASK_END.search(line):
            mark = "ok" if end.group(2) == "SUCCESS" else end.group(2).lower()
            self._report.step(f"    {end.group(1)}: {mark}")
        elif start := _TASK_START.search(line):
            self._report.detail(f"    {start.group(1)}: running")


def _extension(artifact_type: str, path: Path, metadata: Mapping[str, Any]) -> str:
    if artifact_type in _EXTENSIONS:
        return _EXTENSIONS[artifact_type]
    fmt = metadata.get("format")
    if isinstance(fmt, str) and re.fullmatch(r"[A-Za-z0-9]{1,8}", fmt):
        return f".{fmt.lower()}"
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError:
        return ""
    return next((ext for magic, ext in _MAGIC if head.startswith(magic)), "")


def openable(artifact_type: str, path: Path, metadata: Mapping[str, Any]) -> Path:
    """A path a person can open: a sibling copy of ``path`` with its type's extension
    (``page`` -> ``page.html``), or ``path`` itself when no extension is known."""
    ext = _extension(artifact_type, path, metadata)
    if not ext or path.suffix == ext or not path.is_file():
        return path
    target = path.with_name(path.name + ext)
    shutil.copyfile(path, target)
    return target


def _plain(value: Any) -> Any:
    """Outputs as JSON-friendly values: artifacts become a file a person can open."""
    uri = getattr(value, "uri", None)
    if isinstance(uri, str):
        kind = type(value).__name__
        path = Path(getattr(value, "path", uri))
        metadata = getattr(value, "metadata", None) or {}
        return {"artifact": kind, "path": str(openable(kind, path, metadata)), "uri": uri}
    return value


def show(value: Any) -> str:
    """How ``kiln run`` prints one output in text mode."""
    if isinstance(value, dict) and "artifact" in value:
        return f"{value['path']}  ({value['artifact']})"
    return str(value)


@contextlib.contextmanager
def _quiet_kfp(report: Reporter) -> Iterator[None]:
    """kfp.local's stdout and warnings go to the run's log (kiln keeps stdout for --json)."""
    stream = _TaskLines(report)
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(stream):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            stream.flush()
            for warning in caught:
                report.detail(f"warning: {warning.message}")


def run_pipeline(
    pipeline: Pipeline,
    component_dir: Path,
    *,
    pipeline_root: Path,
    arguments: Mapping[str, Any],
    network_mode: str = "none",
    report: Reporter | None = None,
) -> dict[str, Any]:
    """Run ``pipeline`` on the local Docker Engine; return its outputs by name."""
    from kfp import local  # noqa: PLC0415 - kfp is slow to import; only `kiln run` needs it

    report = report or Reporter.null()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    # kfp.local makes a /tmp/kfp-workspace-* folder per init when given none, and removes
    # it only when a pipeline ran to its end or failed inside kfp: a run stopped before
    # (a bad pipeline, a kill) left it in /tmp. One folder under the runs' root instead.
    workspace = pipeline_root / ".kfp-workspace"
    workspace.mkdir(exist_ok=True)
    local.init(
        runner=local.DockerRunner(network_mode=network_mode),
        pipeline_root=str(pipeline_root),
        workspace_root=str(workspace),
        raise_on_error=True,
    )
    func = pipeline_function(pipeline, component_dir)
    try:
        with _quiet_kfp(report):
            task = func(**arguments)
    except Exception as exc:
        logs = f"the task logs are in {report.log_path}, " if report.log_path else ""
        raise RunFailed(
            f"pipeline {pipeline.name} ({pipeline.path}) failed under kfp.local: "
            f"{strip_ansi(str(exc)).rstrip('.')}; {logs}outputs under {pipeline_root}. "
            "To see a task's own error, run its image and command with `docker run`"
        ) from exc
    outputs = getattr(task, "outputs", None)
    if isinstance(outputs, Mapping):
        return {name: _plain(v) for name, v in outputs.items()}
    return {"output": _plain(getattr(task, "output", None))}


def run(
    ws: Workspace,
    name: str,
    *,
    docker_host: str,
    arguments: Mapping[str, Any],
    dev: bool = False,
    network: str = "auto",
    report: Reporter | None = None,
) -> dict[str, Any]:
    """Run the pipeline ``name`` (``pipelines/<name>.py``) on its generated YAMLs (the last
    dev release's with ``dev``), ``arguments`` over its ``RUN_ARGS``; its outputs by name.
    ``network`` "auto": the host's when a component is in packages mode (its pod installs
    from the local index), else none."""
    report = report or Reporter.null()
    pipeline = next((p for p in ws.pipelines if p.name == name), None)
    if pipeline is None:
        known = ", ".join(p.name for p in ws.pipelines) or "none"
        raise ConfigError(f"no pipeline {name!r} under pipelines/ (known: {known})")
    component_dir = ws.dist_dir / "dev" / "components" if dev else ws.component_dir
    if not any(component_dir.glob("*.yaml")):
        command = "kiln release --dev --local" if dev else "kiln release --local"
        raise ConfigError(f"{component_dir}: no generated components; run `{command}`")
    if network == "auto":  # packages-mode pods install from the index, on loopback
        network = "host" if any(c.image is None for c in ws.components) else "none"
    merged = {**pipeline_arguments(pipeline), **arguments}
    # The engine runs every task: one that cannot be reached is the service's fault
    # (exit 5), not the pipeline's.
    docker_client(docker_host).close()
    report.stage("run", f"run {pipeline.name} with kfp.local.DockerRunner (network {network})")
    return run_pipeline(
        pipeline,
        component_dir,
        pipeline_root=ws.state_dir / "runs" / pipeline.name,
        arguments=merged,
        network_mode=network,
        report=report,
    )
