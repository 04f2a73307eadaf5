"""Build helper wheels, byte-reproducibly, with the pinned hatchling.

The backend is called in-process through ``build.ProjectBuilder`` when the
running environment already satisfies the helper's ``[build-system]`` (the fast
path, ~0.3 s per helper); otherwise an isolated build environment is made.
``SOURCE_DATE_EPOCH`` is a constant, never the commit time: an unchanged helper
must give the same bytes at every commit.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import build
import build.env
import pyproject_hooks

from kiln._errors import CommandFailed
from kiln._util.files import sha256_file
from kiln._workspace.model import Helper

# 1980-01-01T00:00:00Z, the earliest time a zip file can record.
SOURCE_DATE_EPOCH = "315532800"


@dataclass(frozen=True)
class BuiltWheel:
    helper: str
    distribution: str
    version: str
    path: Path
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.name


def _hook_runner(
    cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None
) -> None:
    env = {**(extra_environ or {}), "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    pyproject_hooks.quiet_subprocess_runner(cmd, cwd, env)


def _build_one(helper: Helper, outdir: Path) -> Path:
    builder = build.ProjectBuilder(
        helper.path, python_executable=sys.executable, runner=_hook_runner
    )
    backend_ready = not any(build.check_dependency(r) for r in builder.build_system_requires)
    if backend_ready and not builder.check_dependencies("wheel"):
        return Path(builder.build("wheel", outdir))
    with build.env.DefaultIsolatedEnv() as env:
        builder = build.ProjectBuilder.from_isolated_env(env, helper.path, runner=_hook_runner)
        env.install(builder.build_system_requires)
        env.install(builder.get_requires_for_build("wheel"))
        return Path(builder.build("wheel", outdir))


def _output_tail(output: bytes | str | None, lines: int = 20) -> str:
    if not output:
        return ""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    tail = "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])
    return f"; its output ends:\n{tail}"


def _backend_output(exc: Exception) -> str:
    """What the build backend itself printed: ``build`` keeps it on the wrapped error."""
    cause = getattr(exc, "exception", None) or exc.__cause__
    if cause is None:
        return ""
    output = getattr(cause, "output", None) or getattr(cause, "stderr", None)
    if output:
        return _output_tail(output)
    return f" ({type(cause).__name__}: {cause})"


def build_wheel(helper: Helper, outdir: Path) -> BuiltWheel:
    """Build ``helper``'s wheel into ``outdir`` (replacing an older build of it)."""
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kiln-wheel-") as tmp:
        try:
            built = _build_one(helper, Path(tmp))
        except (build.BuildException, build.BuildBackendException) as exc:
            raise CommandFailed(
                f"building the wheel of {helper.path} failed: {exc}{_backend_output(exc)}\n"
                f"fix the helper, then check with `python -m build --wheel {helper.path}`"
            ) from None
        except subprocess.CalledProcessError as exc:  # installing an isolated build env
            raise CommandFailed(
                f"preparing an isolated build environment for {helper.path} failed "
                f"(`{shlex.join(str(a) for a in exc.cmd)}` exited {exc.returncode})"
                f"{_output_tail(exc.output)}\ncheck [build-system] requires in "
                f"{helper.path / 'pyproject.toml'} and that its index is reachable"
            ) from None
        expected_prefix = helper.wheel_stem + "-"
        if not built.name.startswith(expected_prefix):
            raise CommandFailed(
                f"{helper.path}: the build produced {built.name}, expected {expected_prefix}*.whl; "
                "check [project] name and version"
            )
        target = outdir / built.name
        shutil.move(built, target)
    return BuiltWheel(
        helper=helper.name,
        distribution=helper.distribution,
        version=helper.version,
        path=target,
        sha256=sha256_file(target),
    )


def build_wheels(helpers: Sequence[Helper], outdir: Path) -> tuple[BuiltWheel, ...]:
    return tuple(build_wheel(h, outdir) for h in helpers)
