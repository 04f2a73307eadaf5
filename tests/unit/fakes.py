"""In-memory stand-ins for the index, the registry, the image builder, pip and uv."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import threading
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from kiln._context import LOCAL, Context, Services
from kiln._debian.layer import WRITER
from kiln._debian.lock import OS_LOCK, DebPin, LayerPin, OsLock, PackageSet
from kiln._debian.lock import render as render_os
from kiln._errors import ConfigError
from kiln._images.inputs import ImageInputs
from kiln._images.oci.base_image import BaseImage
from kiln._images.oci.builder import image_labels
from kiln._images.oci.image import BuiltImage
from kiln._images.oci.index import BuiltIndex
from kiln._lock.format import BasePin, Built, Pin, lock_path, render
from kiln._lock.inputs import OS_BASE, inputs_hash, no_deps_extra
from kiln._locking.debian import os_inputs
from kiln._options import Options
from kiln._release.components import components
from kiln._release.prepare import prepare
from kiln._release.stages import Outcome, execute, make_plan
from kiln._report import Reporter
from kiln._util.cmd import Runner
from kiln._util.files import sha256_file
from kiln._wheels.wheelhouse import PipDownload
from kiln._workspace.discovery import discover
from kiln._workspace.model import Image, Workspace
from tests import factory


@dataclass
class FakeIndex:
    url: str = "http://index.invalid"
    published: dict[str, dict[str, str]] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)  # each uploaded file's bytes

    def files(self, project: str) -> Mapping[str, str]:
        return dict(self.published.get(str(canonicalize_name(project)), {}))

    def upload(self, paths: Sequence[Path]) -> None:
        for path in paths:
            if path.name.endswith(".whl"):
                name = parse_wheel_filename(path.name)[0]
            else:  # a mirrored sdist
                name = parse_sdist_filename(path.name)[0]
            self.published.setdefault(str(name), {})[path.name] = sha256_file(path)
            self.uploads.append(path.name)
            self.contents[path.name] = path.read_bytes()


class IndexFiles(PipDownload):
    """kiln's PipDownload whose plain downloads from ``index`` (``fetch_file``) are served
    by the fake index's uploaded bytes; anything else as PipDownload does."""

    def __init__(self, index: FakeIndex, runner: Runner) -> None:
        super().__init__(runner)
        self.index = index

    def fetch_file(
        self, project: str, filename: str, sha256: str, *, index_url: str, dest: Path
    ) -> Path:
        if index_url != f"{self.index.url}/simple/" or filename not in self.index.contents:
            return super().fetch_file(project, filename, sha256, index_url=index_url, dest=dest)
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / filename
        target.write_bytes(self.index.contents[filename])
        if sha256_file(target) != sha256:
            raise ConfigError(f"{index_url}: {filename} does not have sha256 {sha256}")
        return target


class PagesAtOnce:
    """``index`` that records how its pages are asked for: each project's count
    (``asked``) and the projects in flight together (``together``). A page answers once
    another is in flight, or after ``wait`` seconds: asked at once, none waits; one at a
    time, each waits (and ``together`` holds only single projects). Only the pages of
    ``watched`` projects wait (None: every page's)."""

    def __init__(
        self, index: FakeIndex, watched: set[str] | None = None, wait: float = 2.0
    ) -> None:
        self.index = index
        self.url = index.url
        self.asked: Counter[str] = Counter()
        self.together: list[frozenset[str]] = []
        self._flying: list[str] = []
        self._wait = wait
        self._watched = watched
        self._cond = threading.Condition()

    def files(self, project: str) -> Mapping[str, str]:
        with self._cond:
            self.asked[project] += 1
            self._flying.append(project)
            self.together.append(frozenset(self._flying))
            self._cond.notify_all()
            if self._watched is None or project in self._watched:
                self._cond.wait_for(lambda: len(self._flying) >= 2, timeout=self._wait)
        try:
            return self.index.files(project)
        finally:
            with self._cond:
                self._flying.remove(project)

    def upload(self, paths: Sequence[Path]) -> None:
        self.index.upload(paths)


@dataclass
class FakeRegistry:
    host: str = "registry.invalid:5000"
    tags: dict[tuple[str, str], tuple[str, dict[str, str]]] = field(default_factory=dict)

    def digest(self, repository: str, tag: str) -> str | None:
        entry = self.tags.get((repository, tag))
        return entry[0] if entry else None

    lost: set[str] = field(default_factory=set)  # blobs the registry's storage lost

    def labels(self, repository: str, tag: str) -> dict[str, str]:
        """The labels of ``repository:tag``, or of the image a tag of it names by digest."""
        if (repository, tag) in self.tags:
            return dict(self.tags[(repository, tag)][1])
        found = [
            labels for (r, _t), (d, labels) in self.tags.items() if (r, d) == (repository, tag)
        ]
        if not found:
            raise ConfigError(f"registry {self.host} has no {repository}:{tag}")
        return dict(found[0])

    def manifest(self, repository: str, reference: str, *, lists: bool = False) -> bytes:
        """A manifest naming a config and a layer derived from its digest (the fake
        stores no blobs: every one exists unless it is ``lost``)."""
        if not any(d == reference for (r, _t), (d, _l) in self.tags.items() if r == repository):
            raise ConfigError(f"registry {self.host} has no {repository}:{reference}")
        config, layer = (blob_of(reference, part) for part in ("config", "layer"))
        return json.dumps({"config": {"digest": config}, "layers": [{"digest": layer}]}).encode()

    def blob_exists(self, repository: str, digest: str) -> bool:
        return digest not in self.lost


def blob_of(digest: str, part: str) -> str:
    """The digest of the fake image ``digest``'s ``part`` ("config" or "layer")."""
    return "sha256:" + hashlib.sha256(f"{digest} {part}".encode()).hexdigest()


@dataclass
class FakeOci:
    """kiln's builder in memory: the manifest is JSON over the image's exact wheels, env,
    base and source, so the digest moves with the inputs and nothing else."""

    registry: FakeRegistry
    builds: list[str] = field(default_factory=list)
    pushes: list[str] = field(default_factory=list)
    # what the registry stores instead of what was sent (None: exactly what was sent)
    rewrite: str | None = None

    def read_ahead(self, inputs: ImageInputs, platform: str) -> None:
        """Nothing to read: the fake builds from the inputs alone."""

    def build(
        self, inputs: ImageInputs, *, source: str | None, platform: str | None = None
    ) -> tuple[BuiltImage, BaseImage]:
        self.builds.append(inputs.ref)
        if isinstance(inputs.base, str):
            if "@sha256:" not in inputs.base:
                raise ConfigError(f"base image {inputs.base!r} is not pinned by digest")
            base_id = inputs.base.split("@", 1)[1]
        else:  # kiln's OS base: its identity is its layers'
            layer = inputs.base.lock.os.layer
            assert layer is not None
            base_id = layer.digest
        wh = inputs.wheelhouse
        doc = {
            "base": base_id,
            "env": {**dict(inputs.env), **dict(inputs.image.env)},
            "source": source,
            "wheels": sorted([w.sha256 for w in wh.third_party] + [w.sha256 for w in wh.helpers]),
        }
        built = BuiltImage(config=b"{}", manifest=json.dumps(doc).encode(), layers=())
        return built, BaseImage(inputs.base_name, base_id, {}, ())

    def preflight(self, index_repository: str | None = None) -> None:
        pass

    def push(self, inputs: ImageInputs, image: BuiltImage | BuiltIndex) -> str:
        digest = self.rewrite or image.digest
        labels = image_labels(inputs, source=None)  # what the real builder's config holds
        self.registry.tags[(inputs.path_in_registry, inputs.tag)] = (digest, labels)
        self.pushes.append(inputs.ref)
        return digest


@dataclass
class FakePip:
    """Answers `pip download --no-deps --require-hashes --dest DIR -r FILE` (hermetic) with
    one wheel per pinned line, holding `fake_wheel` bytes."""

    calls: list[list[str]] = field(default_factory=list)

    def __call__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        self.calls.append(list(args))
        assert "--isolated" in args
        assert env is not None
        assert env["PIP_CONFIG_FILE"] == "/dev/null"
        assert "download" in args
        assert "--no-deps" in args
        assert "--require-hashes" in args
        dest = Path(args[args.index("--dest") + 1])
        for line in Path(args[args.index("-r") + 1]).read_text().splitlines():
            if "==" in line:
                name, version = line.split(" ")[0].split("==")
                wheel = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
                (dest / wheel).write_bytes(fake_wheel(name, version))
        return ""


def fake_wheel(name: str, version: str) -> bytes:
    """The bytes FakePip downloads for ``name==version``: a minimal, deterministic wheel
    (its import package, named like the project, and its metadata)."""
    module = name.replace("-", "_")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path, text in (
            (f"{module}/__init__.py", ""),
            (f"{module}-{version}.dist-info/METADATA", f"Name: {name}\nVersion: {version}\n"),
        ):
            zf.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


def fake_sha(name: str, version: str) -> str:
    return hashlib.sha256(fake_wheel(name, version)).hexdigest()


UPSTREAM = factory.UPSTREAM


def fake_upstream(*pins: tuple[str, str]) -> FakeIndex:
    """An upstream index serving FakePip's wheel of each (name, version)."""
    index = FakeIndex(url=UPSTREAM)
    for name, version in pins:
        filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        index.published.setdefault(name, {})[filename] = fake_sha(name, version)
    return index


NUMPY = (
    f"numpy==1.0 \\\n    --hash=sha256:{fake_sha('numpy', '1.0')}\n    # via -r requirements.in\n"
)
KFP = f"kfp==2.17.3 \\\n    --hash=sha256:{fake_sha('kfp', '2.17.3')}\n"


@dataclass
class FakeUv:
    """Stands in for uv: answers `uv pip compile` by writing its output file."""

    closure: str = NUMPY
    calls: list[tuple[list[str], Path | None, dict[str, str]]] = field(default_factory=list)
    seen_outputs: list[str | None] = field(default_factory=list)  # output file before each run

    def __call__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        assert cwd is not None
        self.calls.append((list(args), cwd, dict(env or {})))
        out = cwd / args[args.index("--output-file") + 1]
        self.seen_outputs.append(out.read_text() if out.is_file() else None)
        out.write_text(KFP if "--no-deps" in args else self.closure)
        return ""


@dataclass
class FakeSdists:
    """Stands in for kiln._wheels.sdist: records what it is asked to build."""

    asked: list[tuple[str, tuple[str, str], tuple[str, ...] | None]] = field(default_factory=list)

    def lock(
        self, lock_file: Path, pin: Pin, sdist: tuple[str, str], *, python: str, platform: str,
        backend: tuple[str, ...] | None,
    ) -> Built:  # fmt: skip
        self.asked.append((pin.requirement, sdist, backend))
        return Built(f"{pin.name}-{pin.version}-py3-none-any.whl", "e" * 64, ("flit-core==3.9",))


def write_fake_lock(
    workspace: Workspace,
    image: Image,
    pins: Sequence[tuple[str, str]] = (("numpy", "1.0"),),
    *,
    base: BasePin | None = None,
    kfp: str = "2.17.3",
) -> Path:
    """``image``'s requirements.lock as `kiln lock` would write it, for FakePip's wheels."""
    body = "".join(f"{Pin(n, v, (fake_sha(n, v),)).lines()}\n" for n, v in pins)
    text = render(
        image,
        inputs=inputs_hash(workspace, image, kfp),
        kfp=kfp,
        index=workspace.upstream_index,
        base=base or _base_pin(image),
        body=body,
        no_deps=[
            Pin(n, v, (fake_sha(n, v),), no_deps=True)
            for n, v in (
                ("kfp", kfp),
                *(("pip", "25.0"),) * ("pip" in no_deps_extra(workspace, image)),
            )
        ],
    )
    path = lock_path(image)
    path.write_text(text)
    return path


def _base_pin(image: Image) -> BasePin:
    if image.base is None:
        return BasePin(OS_BASE, "os", "images/os.lock")
    return BasePin(image.base, "digest", BASE_DIGEST)


BASE_DIGEST = "sha256:" + "b" * 64  # what a fake registry base is pinned to
OS_LAYER = LayerPin("sha256:" + "1" * 64, "sha256:" + "2" * 64, 1000)


def write_fake_os_lock(workspace: Workspace, *, release: str = "12.8") -> OsLock:
    """``images/os.lock`` as `kiln lock` would write it for ``workspace``'s [tool.kiln.os],
    with one made-up package and layer (FakeOci never reads them)."""
    pin = DebPin(
        "libc6", "2.36-9+deb12u9", "amd64", "glibc", "debian",
        "pool/main/g/glibc/libc6_2.36-9+deb12u9_amd64.deb", 100, "a" * 64,
    )  # fmt: skip
    lock = OsLock(
        path=workspace.root / OS_LOCK, inputs=os_inputs(workspace), writer=WRITER,
        suite="bookworm", release=release, architecture="amd64", python=factory.PYTHON,
        os=PackageSet((pin,), (), OS_LAYER),
    )  # fmt: skip
    lock.path.write_text(render_os(lock))
    return lock


@dataclass
class Setup:
    """A sample repo (one helper, one locked image) and fakes for every server."""

    ws: Workspace
    index: FakeIndex
    registry: FakeRegistry
    oci: FakeOci
    pip: FakePip
    upstream: FakeIndex

    @property
    def services(self) -> Services:
        return Services(
            self.index,
            self.registry,
            self.oci,
            self.pip,
            upstream_pages=lambda _url: self.upstream,
            sources=IndexFiles(self.index, self.pip),
        )

    def release(self) -> Outcome:
        prepared = prepare(self.ws, self.services)
        plan = make_plan(self.ws, prepared, self.services)
        return execute(self.ws, prepared, plan, self.services)


def release_setup(tmp_path: Path) -> Setup:
    registry = FakeRegistry()
    ws = discover(factory.sample(tmp_path / "repo"))
    write_fake_os_lock(ws)
    write_fake_lock(ws, ws.image("base"))  # numpy==1.0, and kfp==2.17.3 without its deps
    return Setup(
        ws,
        FakeIndex(),
        registry,
        FakeOci(registry),
        FakePip(),
        fake_upstream(("numpy", "1.0"), ("kfp", "2.17.3"), ("pip", "25.0")),
    )


GIT = ["git", "-c", "user.name=k", "-c", "user.email=k@example.invalid"]


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        [*GIT, "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def tagged_release_setup(tmp_path: Path) -> Setup:
    """``release_setup``'s sample, its YAMLs generated, committed and tagged v0.1.0 (what
    a tag release, its matrix jobs and its finalize job start from)."""
    setup = release_setup(tmp_path)
    components(setup.ws, Context(Options(), Reporter.null(), services=setup.services), LOCAL)
    root = setup.ws.root
    (root / ".gitignore").write_text(".kiln/\ndist/\n")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "sample")
    git(root, "tag", "v0.1.0")
    return setup
