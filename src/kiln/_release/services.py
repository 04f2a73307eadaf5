"""The side effects a release needs, passed in: ``kiln._context.connect`` builds the
real ones, unit tests hand in fakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiln._images.inputs import OciBuilder
from kiln._lock.sources import Pages
from kiln._servers.index import Index
from kiln._servers.registry import Registry
from kiln._util.cmd import Runner, call
from kiln._wheels.sdist import SourceFetch
from kiln._wheels.wheelhouse import Downloader, SimplePages


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
    # Fetches the sdists and build backends of wheels a lock builds (kiln._context passes
    # the same PipDownload as `download`: it holds the private index's credentials).
    sources: SourceFetch | None = None
