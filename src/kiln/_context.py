"""How a flow reaches its servers: the context it runs in, where it publishes, and the
clients, builder and runner built from them.

A ``Context`` is what every flow gets from whoever calls it (the CLI, a test): the
``Options`` read once from the environment, the ``Reporter``, and ``cleanup`` (callbacks
the caller runs when the flow ends, failed or not). A ``Target`` says where it publishes:
the repository's local stack, or an index URL and a registry host. ``connect`` turns the
two into the ``Services`` a release passes down.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kiln._debian.archive import Mirrors
from kiln._errors import ConfigError
from kiln._images.inputs import OciBuilder
from kiln._images.oci.builder import KilnBuilder, cache_dir
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.smoke_foreign import runner_for
from kiln._images.os_layers import OsLayers, RegistryCopies
from kiln._lock.sources import Pages
from kiln._options import Options
from kiln._report import Reporter
from kiln._servers.credentials import Credentials, index_credentials, registry_credentials
from kiln._servers.index import Index, IndexClient
from kiln._servers.registry import Registry, RegistryClient
from kiln._servers.stack import LocalStack
from kiln._util.cmd import Runner, call, reporting_runner
from kiln._util.docker import docker_client
from kiln._wheels.sdist import SourceFetch
from kiln._wheels.wheelhouse import Downloader, PipDownload, SimplePages
from kiln._workspace.model import Workspace

if TYPE_CHECKING:
    import docker


@dataclass(frozen=True)
class Services:
    """The side effects a release needs, passed in (fakes in unit tests)."""

    index: Index
    registry: Registry
    # kiln's image builder (None: a command that builds no image, e.g. `kiln publish`)
    oci: OciBuilder | None = None
    runner: Runner = call
    # Where the index keeps its files, when kiln knows (the local stack), for messages.
    index_storage: Path | None = None
    # The upstream index's simple pages, by URL; fetches locked wheels (None: pip download).
    upstream_pages: Callable[[str], Pages] = SimplePages
    download: Downloader | None = None
    # Fetches the sdists and build backends of wheels a lock builds (``connect`` passes
    # the same PipDownload as `download`: it holds the private index's credentials).
    sources: SourceFetch | None = None


@dataclass
class Context:
    """What a flow runs with: settings, the progress reporter, and callbacks to run when
    it ends (the caller runs them, in order, failed or not). ``services``: what every
    flow uses instead of connecting to its target (unit tests hand in fakes)."""

    options: Options
    report: Reporter
    cleanup: list[Callable[[], object]] = field(default_factory=list)
    services: Services | None = None


@dataclass(frozen=True)
class Target:
    """Where a flow publishes: the repository's local stack (``local``, started if
    needed), or the index at ``index`` (base URL) and the registry at ``registry``
    (host[:port])."""

    local: bool = True
    index: str | None = None
    registry: str | None = None


LOCAL = Target()


def local_stack(ws: Workspace, options: Options) -> LocalStack:
    return LocalStack(ws.stack, ws.stack_dir, docker_host=options.docker_host)


def os_layers(
    ws: Workspace,
    options: Options,
    log: Callable[[str], None],
    *,
    copies: RegistryCopies | None = None,
) -> OsLayers:
    """kiln's OS layers for ``ws``: its layer cache, .deb cache and Debian mirrors, and
    ``copies`` (the registry's copies of layers) as a source."""
    mirrors = Mirrors(ws.os, ca_bundle=options.ca_bundle)
    return OsLayers(
        LayerCache(cache_dir(ws.state_dir)), debian_cache(ws), mirrors, copies=copies, log=log
    )


def debian_cache(ws: Workspace) -> Path:
    """Where kiln keeps Debian's checked indexes and .deb files (``.kiln/cache/debian``)."""
    return ws.state_dir / "cache" / "debian"


def base_registry_client(host: str, options: Options) -> RegistryClient:
    """A client for the registry a base is read from (a release's build, ``kiln lock``'s
    pin): its credentials (``Options.env``: the environment, docker's config) and the CA
    bundle."""
    credentials = registry_credentials(host, options.env)
    return RegistryClient(host, credentials=credentials, ca_bundle=options.ca_bundle)


def _kiln_builder(
    ws: Workspace,
    reg: RegistryClient,
    options: Options,
    engine: Callable[[], docker.DockerClient],
    log: Callable[[str], None],
    *,
    credentials: Credentials | None,
    note: Callable[[str], None] | None = None,
) -> KilnBuilder | None:
    """kiln's image builder (None: the repo builds no image); ``credentials``: the push
    registry's, which the engine needs to pull an image for its smoke check."""
    if not ws.images and (ws.packages is None or ws.packages.base is not None):
        return None

    def base_registry(host: str) -> RegistryClient:
        """The registry a base is read from (the target registry's own client for it)."""
        if host == reg.host:
            return reg
        return base_registry_client(host, options)

    siblings = [f"{ws.org}/{i.name}" for i in ws.locked]
    return KilnBuilder(
        engine, cache_dir(ws.state_dir), reg, base_registry=base_registry,
        os_layers=lambda: os_layers(ws, options, log, copies=RegistryCopies(reg, siblings)),
        siblings=siblings, log=log, credentials=credentials, note=note,
        foreign=functools.partial(runner_for, note=note or log),
    )  # fmt: skip


def connect(
    ws: Workspace,
    ctx: Context,
    target: Target = LOCAL,
    *,
    images: bool = True,
    read_only: bool = False,
) -> Services:
    """Clients for ``target``'s index and registry (the local stack started if needed),
    kiln's image builder (unless not ``images``), and the logged runner; every server
    answers first.

    ``read_only``: a local stack this flow had to start is stopped when it ends (through
    ``ctx.cleanup``), so the machine is left as it was found. A context that carries
    ``services`` gets those, and nothing is started or asked."""
    if ctx.services is not None:
        return ctx.services
    report, options = ctx.report, ctx.options
    runner = reporting_runner(report)
    index_storage = None
    # Credentials come from the environment, netrc or docker's config, never from an
    # argument; the local stack needs none.
    index_auth: Credentials | None = None
    registry_auth: Credentials | None = None
    if target.local:
        stack = local_stack(ws, options)
        was_running = any(s.running for s in stack.status())
        stack.up(echo=report.step)
        if read_only and not was_running:
            # A dry run leaves the machine as it found it: stop what it had to start.
            ctx.cleanup.append(stack.down)
        index_url, registry = ws.stack.index_url, ws.stack.registry
        index_storage = stack.dir / "index"
    else:
        if not target.index or not target.registry:
            raise ConfigError("give --local, or both --index URL and --registry HOST[:PORT]")
        index_url, registry = target.index, target.registry
        index_auth = index_credentials(index_url, options.env)
        registry_auth = registry_credentials(registry, options.env)
        for what, auth in (("index", index_auth), ("registry", registry_auth)):
            report.detail(f"    {what} credentials: {auth.source if auth else 'none'}")

    engines: list[docker.DockerClient] = []

    def engine() -> docker.DockerClient:  # connected on first use: the builder may not need it
        if not engines:
            engines.append(docker_client(options.docker_host))
        return engines[0]

    index = IndexClient(
        index_url, runner=runner, credentials=index_auth, ca_bundle=options.ca_bundle
    )
    reg = RegistryClient(registry, credentials=registry_auth, ca_bundle=options.ca_bundle)
    index.ping()
    reg.ping()
    oci = None
    if images:
        oci = _kiln_builder(
            ws, reg, options, engine, report.detail, credentials=registry_auth, note=report.step
        )
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
