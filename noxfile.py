"""Thin sessions over the kiln CLI.

nox -s demo          full local release on the embedded stack, then run every pipeline
nox -s lint tests    the whole test suite: static checks, unit and end-to-end tests
nox -s release       `kiln release --local` only
nox -s bench         benchmarks (not tests): `nox -s bench -- --preset scale`
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
HELPERS = sorted(str(p.parent) for p in ROOT.glob("helpers/*/pyproject.toml"))
PIPELINES = sorted(p.stem for p in ROOT.glob("pipelines/*.py") if not p.name.startswith("_"))

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "venv"


def _install_workspace(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec, *[arg for h in HELPERS for arg in ("-e", h)])


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests (no network), helper tests, and end-to-end tests on real servers."""
    _install_workspace(session, "test")
    # Tests reach only loopback servers and the package registries: `kiln lock` in them
    # pins base images from the local engine, never from Docker Hub.
    session.run("pytest", *session.posargs, env={"KILN_OFFLINE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) and mypy --strict."""
    _install_workspace(session, "test", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def release(session: nox.Session) -> None:
    """A full local release: wheels -> index, images -> registry, pinned YAMLs, manifest."""
    session.install(".")
    session.run("kiln", "release", "--local", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: a full local release, then every example pipeline in local containers."""
    session.install(".")
    session.run("kiln", "release", "--local")
    for pipeline in PIPELINES:
        session.run("kiln", "run", pipeline)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks, not tests: every scenario on generated repos and their own local stacks.

    nox -s bench -- --preset scale --repeat 3      (see bench/README.md; writes bench/results/)
    """
    session.install(".")
    session.run("python", "-m", "bench.run", *session.posargs)
