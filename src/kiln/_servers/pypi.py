"""The local stack's package index: pypiserver, with its folder's listing kept between
requests.

pypiserver without watchdog (kiln does not install it) lists and parses every file of
its folder on every request, so each simple page costs time in proportion to the whole
index: 9 ms of a page's 12 ms at 514 files, and a no-op release of 500 helpers asks for
500 pages (6 s, quadratic in the repo's size). ``ListedBackend`` parses the folder once
and again only when the names under it change (what ``os.walk`` gives is compared on
each request: 0.15 ms for 514 files); a project's page then looks at that project's
files alone. File contents are not kept: each page still hashes the files it lists.

Run as ``python -m kiln._servers.pypi run ARGS``: pypiserver's own arguments.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Sequence
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer

from pypiserver import app_from_config, setup_routes_from_config
from pypiserver.__main__ import WsgiHandler, init_logging
from pypiserver.backend import BackendProxy, SimpleFileBackend
from pypiserver.bottle_wrapper import run as bottle_run
from pypiserver.config import Config, RunConfig
from pypiserver.core import PkgFile
from pypiserver.pkg_helpers import normalize_pkgname


class ListedBackend(SimpleFileBackend):  # type: ignore[misc]  # pypiserver is untyped
    """pypiserver's folder backend, its listing parsed once per set of file names."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._names: tuple[tuple[str, ...], ...] | None = None
        self._packages: tuple[PkgFile, ...] = ()
        self._projects: dict[str, tuple[PkgFile, ...]] = {}
        self.parsed = 0  # how many times the folder was parsed (tests)

    def _walk(self) -> tuple[tuple[str, ...], ...]:
        """Every path under each root, sorted: what decides the listing."""
        return tuple(
            tuple(sorted(f"{d}/{f}" for d, _, files in os.walk(root) for f in files))
            for root in self.roots
        )

    def _listing(self) -> tuple[tuple[PkgFile, ...], dict[str, tuple[PkgFile, ...]]]:
        # Walked before parsing: a file added meanwhile changes the next walk, so it is
        # parsed again then (never a stale listing kept).
        names = self._walk()
        with self._lock:
            if names != self._names:
                packages = tuple(super().get_all_packages())
                projects: dict[str, list[PkgFile]] = {}
                for package in packages:
                    projects.setdefault(package.pkgname_norm, []).append(package)
                self._packages = packages
                self._projects = {k: tuple(v) for k, v in projects.items()}
                self._names = names
                self.parsed += 1
            return self._packages, self._projects

    def get_all_packages(self) -> Iterable[PkgFile]:
        return self._listing()[0]

    def find_project_packages(self, project: str) -> Iterable[PkgFile]:
        return self._listing()[1].get(normalize_pkgname(project), ())


class ThreadingServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server, a thread per request: pages asked for at once
    (``kiln._servers.index.files_of``) are answered at once."""

    daemon_threads = True


def main(argv: Sequence[str] | None = None) -> None:
    """pypiserver's ``run``, on ``ListedBackend``, a thread per request."""
    config = Config.from_args(list(sys.argv[1:] if argv is None else argv))
    if not isinstance(config, RunConfig):
        raise SystemExit("kiln's index runs pypiserver's `run` command only")
    init_logging(
        level=config.log_level,
        filename=config.log_file,
        frmt=config.log_frmt,
        stream=config.log_stream,
    )
    config.backend = BackendProxy(ListedBackend(config))
    app = setup_routes_from_config(app_from_config(config), config)
    bottle_run(
        app=app,
        host=config.host,
        port=config.port,
        server="wsgiref",
        handler_class=WsgiHandler,
        server_class=ThreadingServer,
    )


if __name__ == "__main__":
    main()
