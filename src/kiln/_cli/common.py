"""What every command shares: the reporter, output, the workspace, the servers.

Each command gets the parsed arguments with three things the entry point adds:
``report`` (the Reporter), ``options`` (the environment, checked once) and
``cleanup`` (callbacks run when the command ends, failed or not).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from kiln._errors import ConfigError
from kiln._options import Options
from kiln._report import Reporter
from kiln._workspace.model import Workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from kiln._release.stages import Services
    from kiln._servers.credentials import Credentials
    from kiln._servers.registry import RegistryClient
    from kiln._servers.stack import LocalStack


def report_of(args: argparse.Namespace) -> Reporter:
    report: Reporter = args.report
    return report


def options_of(args: argparse.Namespace) -> Options:
    options: Options = args.options
    return options


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """The command's result on stdout: JSON with --json, else text for a person. The open
    stage ends first, so its progress line is complete before the result."""
    report_of(args).end_stage()
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def workspace(args: argparse.Namespace) -> Workspace:
    """The monorepo (--repo, or found from the working directory); opens the command's log."""
    from kiln._workspace.discovery import discover, find_root  # noqa: PLC0415

    root = Path(args.repo).resolve() if args.repo else find_root(Path.cwd())
    ws = discover(root)
    report_of(args).open_log(ws.state_dir / "logs" / f"{args.command}.log")
    return ws


def local_stack(ws: Workspace) -> LocalStack:
    from kiln._servers.stack import LocalStack  # noqa: PLC0415

    return LocalStack(ws.stack, ws.state_dir / "stack")


def http_session(options: Options) -> requests.Session:
    """A session for kiln's own HTTPS clients, trusting ``options``' CA bundle."""
    session = requests.Session()
    if options.ca_bundle is not None:
        session.verify = str(options.ca_bundle)
    return session


def os_layers(
    ws: Workspace, options: Options, log: Callable[[str], None], *, copies: Any = None
) -> Any:
    """kiln's OS layers for ``ws``: its layer cache, .deb cache and Debian mirrors, and
    ``copies`` (the registry's copies of layers) as a source."""
    from kiln._debian.archive import Mirrors  # noqa: PLC0415
    from kiln._debian.build import OsLayers  # noqa: PLC0415
    from kiln._images.oci.builder import cache_dir  # noqa: PLC0415
    from kiln._images.oci.cache import LayerCache  # noqa: PLC0415

    mirrors = Mirrors(ws.os, http_session(options))
    return OsLayers(
        LayerCache(cache_dir(ws.state_dir)), debian_cache(ws), mirrors, copies=copies, log=log
    )


def debian_cache(ws: Workspace) -> Path:
    """Where kiln keeps Debian's checked indexes and .deb files (``.kiln/cache/debian``)."""
    return ws.state_dir / "cache" / "debian"


def _kiln_builder(
    ws: Workspace,
    reg: RegistryClient,
    options: Options,
    engine: Callable[[], Any],
    log: Callable[[str], None],
    *,
    credentials: Credentials | None,
) -> Any:
    """kiln's image builder (None: the repo builds no image); ``credentials``: the push
    registry's, which the engine needs to pull an image for its smoke check."""
    if not ws.images and (ws.packages is None or ws.packages.base is not None):
        return None
    from kiln._debian.build import RegistryCopies  # noqa: PLC0415
    from kiln._images.oci.builder import KilnBuilder, cache_dir  # noqa: PLC0415
    from kiln._servers.credentials import registry_credentials  # noqa: PLC0415
    from kiln._servers.registry import RegistryClient  # noqa: PLC0415

    def base_registry(host: str) -> RegistryClient:
        """The registry a base is read from (the target registry's own client for it)."""
        if host == reg.host:
            return reg
        return RegistryClient(
            host, credentials=registry_credentials(host, os.environ), session=http_session(options)
        )

    siblings = [f"{ws.org}/{i.name}" for i in ws.locked]
    return KilnBuilder(
        engine, cache_dir(ws.state_dir), reg, base_registry=base_registry,
        os_layers=lambda: os_layers(ws, options, log, copies=RegistryCopies(reg, siblings)),
        siblings=siblings, log=log, credentials=credentials,
    )  # fmt: skip


def services(
    args: argparse.Namespace, ws: Workspace, *, images: bool = True, read_only: bool = False
) -> Services:
    """Clients for the target index and registry (the local stack with --local, started
    if needed), kiln's image builder, and the logged runner; every server answers first.

    ``read_only`` (and --dry-run): a local stack this command had to start is stopped
    when it ends, so the machine is left as it was found."""
    from kiln._release.stages import Services  # noqa: PLC0415
    from kiln._servers.credentials import (  # noqa: PLC0415
        index_credentials,
        registry_credentials,
    )
    from kiln._servers.index import IndexClient  # noqa: PLC0415
    from kiln._servers.registry import RegistryClient  # noqa: PLC0415
    from kiln._util.cmd import reporting_runner  # noqa: PLC0415
    from kiln._wheels.wheelhouse import PipDownload, SimplePages  # noqa: PLC0415

    report, options = report_of(args), options_of(args)
    runner = reporting_runner(report)
    index_storage = None
    # Credentials come from the environment, netrc or docker's config, never from an
    # argument; the local stack needs none.
    index_auth: Credentials | None = None
    registry_auth: Credentials | None = None
    if getattr(args, "local", True):
        stack = local_stack(ws)
        was_running = any(s.running for s in stack.status())
        stack.up(echo=report.step)
        if (read_only or getattr(args, "dry_run", False)) and not was_running:
            # A dry run leaves the machine as it found it: stop what it had to start.
            args.cleanup.append(stack.down)
        index_url, registry = ws.stack.index_url, ws.stack.registry
        index_storage = stack.dir / "index"
    else:
        index_url, registry = args.index, args.registry
        if not index_url or not registry:
            raise ConfigError("give --local, or both --index URL and --registry HOST[:PORT]")
        index_auth = index_credentials(index_url, os.environ)
        registry_auth = registry_credentials(registry, os.environ)
        for what, auth in (("index", index_auth), ("registry", registry_auth)):
            report.detail(f"    {what} credentials: {auth.source if auth else 'none'}")
    from kiln._images.docker import docker_client  # noqa: PLC0415

    engines: list[Any] = []

    def engine() -> Any:  # connected on first use: kiln's builder may never need it
        if not engines:
            engines.append(docker_client(options.docker_host))
        return engines[0]

    index = IndexClient(
        index_url, runner=runner, credentials=index_auth, ca_bundle=options.ca_bundle
    )
    reg = RegistryClient(registry, credentials=registry_auth, session=http_session(options))
    index.ping()
    reg.ping()
    oci = None
    if images:
        oci = _kiln_builder(ws, reg, options, engine, report.detail, credentials=registry_auth)
    private = {f"{index.url}/simple/": index_auth.basic} if index_auth else {}
    download = PipDownload(runner, credentials=private, ca_bundle=options.ca_bundle)
    return Services(
        index=index,
        registry=reg,
        runner=runner,
        index_storage=index_storage,
        download=download,
        sources=download,
        oci=oci,
        upstream_pages=lambda url: SimplePages(url, ca_bundle=options.ca_bundle),
    )
