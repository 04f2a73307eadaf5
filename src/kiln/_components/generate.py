"""Generate pinned component YAMLs and compile pipelines (KFP SDK).

Component sources are plain functions in ``pipelines/components/*.py`` with
``IMAGE = "<image>"``. kiln wraps each with ``dsl.component`` pinned to
``<registry>/<repo>@sha256:...`` and ``install_kfp_package=False`` (kfp is
baked into the image, so a pod installs nothing when it starts).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from kiln._errors import ConfigError, KilnError
from kiln._workspace.model import Component, Pipeline


def _load_module(path: Path, prefix: str) -> ModuleType:
    name = f"_kiln_{prefix}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    return module


def generate_component(component: Component, image_ref: str, out_dir: Path) -> Path:
    """Write ``<out_dir>/<component>.yaml`` pinned to ``image_ref`` (repo@sha256:...)."""
    from kfp import compiler, dsl  # noqa: PLC0415 - kfp is slow to import; only this stage needs it

    if "@sha256:" not in image_ref:
        raise ValueError(f"component images are pinned by digest, got {image_ref!r}")
    module = _load_module(component.path, "component")
    func = getattr(module, component.name)
    try:
        comp = dsl.component(func, base_image=image_ref, install_kfp_package=False)
    except Exception as exc:
        raise ConfigError(
            f"{component.path}: {component.name} is not a valid KFP component: {exc}"
        ) from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{component.name}.yaml"
    compiler.Compiler().compile(comp, str(target))
    return target


def component_loader(component_dir: Path) -> Callable[[str], Any]:
    from kfp import components  # noqa: PLC0415

    def load(name: str) -> Any:
        path = component_dir / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in component_dir.glob("*.yaml"))
            raise ConfigError(f"load({name!r}): no component {name!r}; known: {known}")
        return components.load_component_from_file(str(path))

    return load


def pipeline_function(pipeline: Pipeline, component_dir: Path) -> Any:
    """The ``@dsl.pipeline`` function that ``build(load)`` returns."""
    module = _load_module(pipeline.path, "pipeline")
    try:
        return module.build(component_loader(component_dir))
    except KilnError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{pipeline.path}: build(load) failed: {type(exc).__name__}: {exc}; fix the pipeline "
            "module (check it with `kiln components --local`)"
        ) from exc


def compile_pipeline(pipeline: Pipeline, component_dir: Path, out_dir: Path) -> Path:
    from kfp import compiler  # noqa: PLC0415

    func = pipeline_function(pipeline, component_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{pipeline.name}.yaml"
    try:
        compiler.Compiler().compile(func, str(target))
    except Exception as exc:
        raise ConfigError(
            f"{pipeline.path}: KFP cannot compile the pipeline build(load) returns: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return target


def pipeline_arguments(pipeline: Pipeline) -> Mapping[str, Any]:
    """Default run arguments: ``RUN_ARGS`` in the pipeline module, if any."""
    module = _load_module(pipeline.path, "pipeline_args")
    args = getattr(module, "RUN_ARGS", {})
    if not isinstance(args, dict):
        raise ConfigError(f"{pipeline.path}: RUN_ARGS must be a dict of pipeline arguments")
    return args
