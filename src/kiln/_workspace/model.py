"""The repository as plain, frozen data (what discovery reads)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kiln._debian.config import OsConfig
from kiln._workspace.platforms import DEFAULT_PLATFORM, DEFAULT_PLATFORMS, python_platform

STATE_DIR = ".kiln"  # under the repository's root: git-ignored working state


@dataclass(frozen=True)
class Helper:
    """One helper distribution under ``helpers/<name>/``."""

    name: str  # folder name, e.g. "imgproc"
    path: Path
    distribution: str  # published name, e.g. "acme-imgproc"
    version: str
    dependencies: tuple[str, ...]  # requirement strings from [project].dependencies
    siblings: tuple[str, ...]  # names of other helpers it depends on (pinned ==)
    packages: tuple[str, ...] = ()  # the top-level import packages its wheel ships
    # what reading it found worth a word but not a refusal (a file above the size limit)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # [build-system] requires as discovery read them (``hatch.build_requires``); None: not
    # read (a Helper made by hand), the wheel cache reads pyproject.toml itself
    build_requires: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def wheel_stem(self) -> str:
        """The wheel filename prefix: normalized name and version."""
        return f"{self.distribution.replace('-', '_')}-{self.version}"


def sibling_closure(helpers: Iterable[Helper], names: Iterable[str]) -> tuple[str, ...]:
    """``names`` plus every sibling helper they pin, transitively, sorted."""
    return _closure({h.name: h for h in helpers}, names)


def _closure(by_name: Mapping[str, Helper], names: Iterable[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(by_name[name].siblings)
    return tuple(sorted(seen))


@dataclass(frozen=True)
class Image:
    """One image under ``images/<name>/``: ``image.toml`` and its ``requirements.lock``."""

    name: str
    path: Path
    version: str
    # None: kiln's OS base (images/os.lock); else a registry image pinned by digest
    base: str | None
    python: str  # "3.11": the interpreter in the base image
    helpers: tuple[str, ...]
    requirements: tuple[str, ...]  # extra third-party requirements
    platform: str = DEFAULT_PLATFORM  # "<arch>-manylinux_<glibc>": what its wheels are locked for
    # [image.env]: environment variables set in the image config
    env: tuple[tuple[str, str], ...] = ()
    # Debian packages beyond the shared OS layer's: a layer of their own (kiln's OS base)
    os_packages: tuple[str, ...] = ()
    # ``platforms`` (OCI, "linux/amd64"): every one is locked; the first is ``platform``'s
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS

    @property
    def python_platforms(self) -> tuple[str, ...]:
        """uv's ``--python-platform`` for each of ``platforms``, ``platform`` first."""
        return tuple(python_platform(self.platform, p) for p in self.platforms)


# How a component pins what it runs on: an image by digest, or exact helper versions
# that its pod installs from the private index when it starts (packages_to_install).
IMAGE_MODE = "image"
PACKAGES_MODE = "packages"


@dataclass(frozen=True)
class Component:
    """One lightweight component: a function in ``pipelines/components/<file>.py``."""

    name: str  # the function name
    path: Path
    image: str | None  # image mode: the image in images/ it runs on; packages mode: None
    # the top-level modules its function imports (read with ast, never imported)
    imports: tuple[str, ...] = ()
    helpers: tuple[str, ...] = ()  # the helpers those imports come from (folder names)

    @property
    def mode(self) -> str:
        return IMAGE_MODE if self.image is not None else PACKAGES_MODE


@dataclass(frozen=True)
class Pipeline:
    """A pipeline module ``pipelines/<name>.py`` defining ``build(load)``."""

    name: str
    path: Path


@dataclass(frozen=True)
class StackConfig:
    host: str = "127.0.0.1"
    index_port: int = 8765
    registry_port: int = 5765

    @property
    def index_url(self) -> str:
        return f"http://{self.host}:{self.index_port}"

    @property
    def registry(self) -> str:
        return f"{self.host}:{self.registry_port}"


@dataclass(frozen=True)
class Workspace:
    root: Path
    org: str
    upstream_index: str
    stack: StackConfig
    helpers: tuple[Helper, ...]
    images: tuple[Image, ...]
    components: tuple[Component, ...]
    pipelines: tuple[Pipeline, ...]
    # The repository's public address for image labels ([tool.kiln] source), if set: a
    # committed value, so every clone builds the same image bytes.
    source: str | None = None
    # Packages mode's pseudo-image ([tool.kiln.packages]): the plain Python base its pods
    # start from and the lock of what they install (pipelines/requirements.lock); None
    # when no component uses packages mode.
    packages: Image | None = None
    # [tool.kiln.os]: the OS layer kiln builds from Debian packages (images/os.lock)
    os: OsConfig = field(default_factory=OsConfig)

    @property
    def on_os(self) -> tuple[Image, ...]:
        """What is built on kiln's OS base: the images without a registry base, and
        packages mode's base when it has none either."""
        return tuple(i for i in self.locked if i.base is None)

    def settings_of(self, image: Image) -> Path | str:
        """Where ``image`` is configured, for messages: its image.toml, or packages mode's
        ``[tool.kiln.packages]``."""
        return "[tool.kiln.packages]" if image is self.packages else image.path / "image.toml"

    @property
    def warnings(self) -> tuple[str, ...]:
        """What reading the repository found worth a word but not a refusal."""
        return tuple(w for h in self.helpers for w in h.warnings)

    def helper(self, name: str) -> Helper:
        return self._helpers_by_name[name]

    @functools.cached_property
    def _helpers_by_name(self) -> dict[str, Helper]:
        """Each helper by folder name, made on first use: a check looks helpers up by name
        ~6000 times at N=500, each a search of 500 (the fields are frozen: never stale)."""
        return {h.name: h for h in self.helpers}

    def image(self, name: str) -> Image:
        return next(i for i in self.locked if i.name == name)

    @property
    def locked(self) -> tuple[Image, ...]:
        """Everything with a lock: the images, and packages mode's pseudo-image if used."""
        return self.images + ((self.packages,) if self.packages is not None else ())

    @property
    def state_dir(self) -> Path:
        """Git-ignored working state: stack data, caches, run outputs."""
        return self.root / STATE_DIR

    @property
    def stack_dir(self) -> Path:
        """The local stack's data, logs and process records."""
        return self.state_dir / "stack"

    @property
    def dist_dir(self) -> Path:
        return self.root / "dist"

    @functools.cached_property
    def component_dir(self) -> Path:
        """The committed, generated component YAMLs (one per component) and the catalog
        (worked out once: a release asks for it per component)."""
        return self.root / "pipelines" / "components" / "generated"


def helper_closure(workspace: Workspace, names: Iterable[str]) -> tuple[str, ...]:
    """``names`` plus every helper of ``workspace`` they pin, transitively, sorted."""
    return _closure(workspace._helpers_by_name, names)
