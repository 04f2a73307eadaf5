"""The tools ``kiln lock`` and ``kiln bump`` write locks with, made from a ``Context``.

Every server is asked as a release asks it: uv, pip and kiln's own HTTPS clients trust
the CA bundle (``Options.ca_bundle``), and a base's registry is read with the client a
release reads bases with (``kiln._context.base_registry_client``: its credentials).
"""

from __future__ import annotations

import uv

from kiln._context import Context, base_registry_client, debian_cache, os_layers
from kiln._debian.archive import Indexes, Mirrors
from kiln._lock.make import Uv
from kiln._locking.bases import BasePinner
from kiln._locking.flow import LockTools, OsSources
from kiln._options import Options
from kiln._report import Reporter
from kiln._util.cmd import reporting_runner
from kiln._wheels.sdist import SdistBuilder, sdist_cache_dir
from kiln._wheels.wheelhouse import PipDownload, SimplePages
from kiln._workspace.model import Workspace


def base_pinner(options: Options, report: Reporter) -> BasePinner:
    """The pinner of registry bases, each registry asked with its credentials."""
    return BasePinner(
        lambda host: base_registry_client(host, options),
        options.docker_host,
        log=report.detail,
        offline=options.offline,
    )


def lock_tools(ws: Workspace, ctx: Context) -> LockTools:
    """uv, the upstream index, the sdist builder, the base pinner, Debian's indexes and
    the OS layers, for ``ws``."""
    options, report = ctx.options, ctx.report
    runner = reporting_runner(report)
    mirrors = Mirrors(ws.os, ca_bundle=options.ca_bundle)
    return LockTools(
        uv=Uv(runner, uv.find_uv_bin(), ws.upstream_index, options.ca_bundle),
        pages=SimplePages(ws.upstream_index, ca_bundle=options.ca_bundle),
        sdists=SdistBuilder(
            PipDownload(runner, ca_bundle=options.ca_bundle),
            runner,
            cache_dir=sdist_cache_dir(ws.state_dir),
            index_url=ws.upstream_index,
            report=report,
        ),
        bases=base_pinner(options, report),
        indexes=Indexes(ws.os, mirrors, runner, debian_cache(ws), log=report.detail),
        layers=os_layers(ws, options, report.detail),
    )


def os_sources(ws: Workspace, options: Options) -> OsSources:
    """The Debian mirrors of ``ws`` and kiln's .deb cache."""
    return OsSources(Mirrors(ws.os, ca_bundle=options.ca_bundle), debian_cache(ws))
