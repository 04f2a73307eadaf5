"""Run a compiled pipeline locally with ``kfp.local.DockerRunner``.

Baked images contain everything, so containers run with no network at all.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kiln._components import pipeline_function
from kiln._errors import RunFailed
from kiln._model import Pipeline


def _plain(value: Any) -> Any:
    """Outputs as JSON-friendly values: artifacts become their local path."""
    uri = getattr(value, "uri", None)
    if isinstance(uri, str):
        return {"artifact": type(value).__name__, "path": getattr(value, "path", uri)}
    return value


def run_pipeline(
    pipeline: Pipeline,
    component_dir: Path,
    *,
    pipeline_root: Path,
    arguments: Mapping[str, Any],
    network_mode: str = "none",
) -> dict[str, Any]:
    """Run ``pipeline`` on the local Docker Engine; return its outputs by name."""
    from kfp import local  # noqa: PLC0415 - kfp is slow to import; only `kiln run` needs it

    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.DockerRunner(network_mode=network_mode),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )
    func = pipeline_function(pipeline, component_dir)
    try:
        # kfp.local logs to stdout; kiln keeps stdout for its result (--json).
        with contextlib.redirect_stdout(sys.stderr):
            task = func(**arguments)
    except Exception as exc:
        raise RunFailed(
            f"pipeline {pipeline.name} ({pipeline.path}) failed under kfp.local: {exc}; "
            f"outputs and logs are under {pipeline_root}. To see a task's own error, run its "
            "image and command with `docker run`"
        ) from exc
    outputs = getattr(task, "outputs", None)
    if isinstance(outputs, Mapping):
        return {name: _plain(v) for name, v in outputs.items()}
    return {"output": _plain(getattr(task, "output", None))}
