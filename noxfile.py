"""Thin sessions over the kiln CLI. Run them through ./noxw, which sets itself up.

./noxw -s demo          full local release on the embedded stack, then run every pipeline
./noxw -s lint tests    the whole test suite: static checks, unit and end-to-end tests
./noxw -s release       `kiln release --local` only
./noxw -s bench         benchmarks (not tests): `./noxw -s bench -- --preset scale`

What a session needs from the machine and cannot install itself (Docker Engine, Debian's
registry, Chromium, ...) is checked first: a missing one is named with its apt line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
HELPERS = sorted(str(p.parent) for p in ROOT.glob("helpers/*/pyproject.toml"))
PIPELINES = sorted(p.stem for p in ROOT.glob("pipelines/*.py") if not p.name.startswith("_"))

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "venv"

# What the sessions need from the machine: a check, and the Debian package that gives it.
DOCKER = ("Docker Engine (running)", "docker.io", "then: sudo systemctl start docker")
PROGRAMS = {
    "docker-registry": ("Debian's CNCF registry, the local stack's", "docker-registry"),
    "chromium": ("headless Chromium, which renders the component catalog", "chromium"),
    "gpgv": ("gpgv, which checks Debian's signed indexes", "gpgv"),
    "skopeo": ("skopeo, which reads kiln's images as other clients do", "skopeo"),
    "umoci": ("umoci, which unpacks kiln's images as other clients do", "umoci"),
}
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# The tests session's pytest-xdist workers: the end-to-end tests wait on servers,
# containers and downloads as much as they compute, so one more than two cores.
WORKERS = "3"


def _engine_runs() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, check=False)
    return done.returncode == 0


def _require(session: nox.Session, *programs: str, engine: bool = True) -> None:
    """Stop ``session`` naming what this machine lacks, with the apt line that adds it."""
    missing = [(PROGRAMS[p][0], PROGRAMS[p][1], "") for p in programs if not shutil.which(p)]
    if "gpgv" in programs and not KEYRING.is_file():
        missing.append(("Debian's archive keyring", "debian-archive-keyring", ""))
    if engine and not _engine_runs():
        missing.insert(0, DOCKER)
    if missing:
        lines = [f"  - {what}: sudo apt-get install {package}" for what, package, _ in missing]
        lines += [f"    {then}" for _what, _package, then in missing if then]
        packages = " ".join(package for _what, package, _ in missing)
        session.error(
            "this machine lacks what the session needs:\n"
            + "\n".join(lines)
            + f"\nall at once: sudo apt-get install --no-install-recommends {packages}"
        )


# lint and tests share one environment: the one ./noxw made and runs nox in (.venv/),
# with the test and lint extras and every helper added to it. Two nox environments
# installed kfp, numpy, pandas and the rest twice more (about a minute of a CI run).
CHECKS_BIN = Path(sys.executable).parent


def _install_checks(session: nox.Session) -> None:
    helpers = [arg for h in HELPERS for arg in ("-e", h)]
    pip = (sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
    session.run(*pip, "-e", ".[test,lint]", *helpers)


def _checks_env(**env: str) -> dict[str, str]:
    """What a session run in .venv/ gives its commands: .venv/bin first on PATH, as an
    activated environment would."""
    return {"PATH": f"{CHECKS_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env}


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Unit tests (no network), helper tests, and end-to-end tests on real servers."""
    _require(session, "docker-registry", "chromium", "gpgv", "skopeo", "umoci")
    _install_checks(session)
    # Tests reach only loopback servers, Debian's archive and the package registries.
    # WORKERS pytest-xdist workers; tests/e2e/conftest.py puts what shares a stack in one
    # group, so each stack is made once. `./noxw -s tests -- -n 0` runs in one process.
    parallel = ("-n", WORKERS, "--dist", "loadgroup")
    pytest = (sys.executable, "-m", "pytest", *parallel, *session.posargs)
    session.run(*pytest, env=_checks_env(KILN_OFFLINE="1"))


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) and mypy --strict."""
    _install_checks(session)
    for tool in (("ruff", "check", "."), ("ruff", "format", "--check", "."), ("mypy",)):
        session.run(sys.executable, "-m", *tool, env=_checks_env())


@nox.session
def release(session: nox.Session) -> None:
    """A full local release: wheels -> index, images -> registry, pinned YAMLs, manifest."""
    _require(session, "docker-registry")
    session.install(".")
    session.run("kiln", "release", "--local", *session.posargs)


def _os_pins_served(session: nox.Session) -> None:
    """A checkout older than Debian's archive pins packages no mirror serves any more: move
    its OS lock in place (and say so), so the demo still runs; `git diff` shows the move."""
    kiln = str(Path(session.bin) / "kiln")
    session.log("kiln lock --check --sources")
    code = subprocess.run([kiln, "lock", "--check", "--sources"], check=False).returncode
    if code not in (0, 5):
        session.error(f"kiln lock --check --sources failed (exit {code}); see its message above")
    if code == 5:
        session.warn(
            "images/os.lock pins Debian packages no mirror serves any more (this checkout "
            "is older than Debian's archive): moving it with `kiln lock --upgrade-os`. "
            "`git diff` shows what moved; `git checkout -- .` undoes it."
        )
        session.run("kiln", "lock", "--upgrade-os")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: a full local release, then every example pipeline in local containers."""
    _require(session, "docker-registry")
    session.install(".")
    _os_pins_served(session)
    session.run("kiln", "release", "--local")
    for pipeline in PIPELINES:
        session.run("kiln", "run", pipeline)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks, not tests: every scenario on generated repos and their own local stacks.

    ./noxw -s bench -- --preset scale --repeat 3      (see bench/README.md; writes bench/results/)
    """
    _require(session, "docker-registry")
    session.install(".")
    session.run("python", "-m", "bench.run", *session.posargs)
