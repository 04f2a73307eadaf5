"""Wheels built from sdists, without a network: a tiny sdist and a tiny PEP 517 backend
are written here and served by fakes; the venvs, pip (offline, from files) and the
backend's build run for real, so reproducibility is measured, not assumed."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import textwrap
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from kiln._context import Services
from kiln._errors import ConfigError
from kiln._images.oci.image import BuiltImage
from kiln._lock.format import BasePin, lock_path, parse_lock, read_lock
from kiln._lock.make import Uv, make_lock
from kiln._release.prepare import prepare
from kiln._release.stages import execute, make_plan
from kiln._report import Reporter
from kiln._util.cmd import call
from kiln._wheels.sdist import SdistBuilder, sdist_cache_dir
from kiln._wheels.sdist_files import differences
from kiln._wheels.wheelhouse import PipDownload, build_locked
from kiln._workspace.discovery import discover
from kiln._workspace.model import Workspace
from tests import factory
from tests.unit.fakes import (
    UPSTREAM,
    FakeIndex,
    FakeOci,
    FakePip,
    FakeRegistry,
    fake_sha,
    fake_upstream,
    write_fake_os_lock,
)

PRIVATE = "http://index.invalid/simple/"  # FakeIndex's simple URL, as prepare() names it
BACKEND = "kiln_test_backend-1.0-py3-none-any.whl"

# A PEP 517 backend: a wheel of the project's package, dated by SOURCE_DATE_EPOCH. A
# project holding a file STAMP gets the build's time in its wheel (not reproducible).
# It warns, as setuptools often does: pyproject_hooks re-raises that in kiln's process.
BACKEND_SOURCE = """
import base64, email.parser, hashlib, os, time, warnings, zipfile
from pathlib import Path

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    warnings.warn("this backend is for tests only")
    info = email.parser.Parser().parsestr(Path("PKG-INFO").read_text())
    dist, version = info["Name"].replace("-", "_"), info["Version"]
    files = {p.as_posix(): p.read_bytes() for p in sorted(Path(dist).rglob("*.py"))}
    if Path("STAMP").exists():
        files[dist + "/_stamp.py"] = ("BUILT = %d\\n" % time.time_ns()).encode()
    meta = dist + "-" + version + ".dist-info/"
    files[meta + "METADATA"] = ("Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n"
                                % (info["Name"], version)).encode()
    files[meta + "WHEEL"] = (b"Wheel-Version: 1.0\\nGenerator: GENERATOR\\n"
                             b"Root-Is-Purelib: true\\nTag: py3-none-any\\n")
    def digest(data):
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record = "".join("%s,sha256=%s,%d\\n" % (n, digest(d), len(d)) for n, d in files.items())
    files[meta + "RECORD"] = (record + meta + "RECORD,,\\n").encode()
    when = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time())))[:6]
    name = dist + "-" + version + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as out:
        for n, d in files.items():
            out.writestr(zipfile.ZipInfo(n, when), d)
    return name
"""


def _zip(files: Mapping[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name, data in files.items():
            out.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def backend_wheel(generator: str = "kiln-test-backend") -> bytes:
    """The wheel of the backend above; ``generator`` changes the wheels it builds."""
    meta = "kiln_test_backend-1.0.dist-info/"
    return _zip(
        {
            "kiln_test_backend.py": BACKEND_SOURCE.replace("GENERATOR", generator),
            meta + "METADATA": "Metadata-Version: 2.1\nName: kiln-test-backend\nVersion: 1.0\n",
            meta + "WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            meta + "RECORD": "",
        }
    )


def sdist(*, stamp: bool = False) -> bytes:
    """tiny-1.0.tar.gz, built with kiln-test-backend (``stamp``: not reproducibly)."""
    files = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n",
        "pyproject.toml": textwrap.dedent("""
            [build-system]
            requires = ["kiln-test-backend>=1"]
            build-backend = "kiln_test_backend"
            """),
        "tiny/__init__.py": "ANSWER = 42\n",
        **({"STAMP": ""} if stamp else {}),
    }
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(
        fileobj=gz, mode="w"
    ) as tar:  # fmt: skip
        for name, text in sorted(files.items()):
            info = tarfile.TarInfo(f"tiny-1.0/{name}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FakeSources:
    """Serves the sdist and the backend's wheels as ``PipDownload`` would fetch them."""

    sdist: bytes = field(default_factory=sdist)
    backend: bytes = field(default_factory=backend_wheel)
    files: list[tuple[str, str]] = field(default_factory=list)  # (index, filename)
    backends: list[tuple[str, tuple[str, ...], bool]] = field(default_factory=list)

    def fetch_file(
        self, project: str, filename: str, sha256: str, *, index_url: str, dest: Path
    ) -> Path:
        assert (project, filename, sha256) == ("tiny", "tiny-1.0.tar.gz", sha(self.sdist))
        self.files.append((index_url, filename))
        dest.mkdir(parents=True, exist_ok=True)
        (dest / filename).write_bytes(self.sdist)
        return dest / filename

    def fetch_backend(
        self, requirements: Sequence[str], *, index_url: str, dest: Path, resolve: bool
    ) -> None:
        self.backends.append((index_url, tuple(requirements), resolve))
        dest.mkdir(parents=True, exist_ok=True)
        name, version, _build, _tags = parse_wheel_filename(BACKEND)
        for raw in requirements:
            req = Requirement(raw)
            if canonicalize_name(req.name) == name and req.specifier.contains(version):
                (dest / BACKEND).write_bytes(self.backend)


@dataclass
class Recorder:
    """The real runner (offline here: venv, pip from files, the backend), recorded."""

    calls: list[list[str]] = field(default_factory=list)

    def __call__(
        self, args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        self.calls.append(list(args))
        return call(args, cwd=cwd, env=env, echo=False)


def upstream(sources: FakeSources) -> FakeIndex:
    index = fake_upstream(("numpy", "1.0"), ("kfp", "2.17.3"))
    index.published["tiny"] = {"tiny-1.0.tar.gz": sha(sources.sdist)}
    index.published["kiln-test-backend"] = {BACKEND: sha(sources.backend)}
    return index


@dataclass
class FakeUvRunner:
    """`uv pip compile`: numpy and tiny (sdist-only, so its one hash is the sdist's)."""

    tiny_sha: str

    def __call__(
        self, args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        assert cwd is not None
        kfp = f"kfp==2.17.3 \\\n    --hash=sha256:{fake_sha('kfp', '2.17.3')}\n"
        closure = (
            f"numpy==1.0 \\\n    --hash=sha256:{fake_sha('numpy', '1.0')}\n"
            "    # via acme-imgproc\n"
            f"tiny==1.0 \\\n    --hash=sha256:{self.tiny_sha}\n    # via -r requirements.in\n"
        )
        (cwd / args[args.index("--output-file") + 1]).write_text(
            kfp if "--no-deps" in args else closure
        )
        return ""


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = discover(factory.sample(tmp_path / "repo"))
    write_fake_os_lock(ws)
    return ws


def builder(ws: Workspace, sources: FakeSources, **kw: object) -> SdistBuilder:
    return SdistBuilder(
        sources,
        Recorder(),
        cache_dir=sdist_cache_dir(ws.state_dir),
        index_url=UPSTREAM,
        **kw,  # type: ignore[arg-type]
    )


def lock(ws: Workspace, sdists: SdistBuilder, sources: FakeSources, **kw: object) -> str:
    image = ws.image("base")
    text = make_lock(
        ws,
        image,
        kfp_version="2.17.3",
        uv=Uv(FakeUvRunner(sha(sources.sdist)), "uv", UPSTREAM),
        base=BasePin("os", "os", "images/os.lock"),
        pages=upstream(sources),
        sdists=sdists,
        **kw,  # type: ignore[arg-type]
    )
    lock_path(image).write_text(text)
    return text


def built_wheel(ws: Workspace) -> Path:
    (path,) = sdist_cache_dir(ws.state_dir).glob("*/tiny-1.0-py3-none-any.whl")
    return path


# ------------------------------------------------------------------ kiln lock
def test_lock_builds_the_sdist_twice_in_two_folders_and_records_the_wheel(ws: Workspace) -> None:
    sources, shown = FakeSources(), io.StringIO()
    sdists = builder(ws, sources, report=Reporter(stream=shown, verbose=True))
    text = lock(ws, sdists, sources)  # the backend's warnings do not escape (pytest: error)

    assert sdists.builds == 2
    assert shown.getvalue().count("tiny==1.0: the backend warns: this backend is for") == 2
    runner = sdists._runner
    assert isinstance(runner, Recorder)
    venvs = [c[-1] for c in runner.calls if c[1:3] == ["-m", "venv"]]
    assert len(venvs) == 2
    assert Path(venvs[0]).parent.name == "first"
    assert Path(venvs[1]).parent.name == "second"
    # The backend was resolved from the sdist's [build-system] requires, wheels only.
    assert sources.backends == [(UPSTREAM, ("kiln-test-backend>=1",), True)]
    assert sources.files == [(UPSTREAM, "tiny-1.0.tar.gz")]

    wheel = built_wheel(ws)
    with zipfile.ZipFile(wheel) as whl:
        assert whl.read("tiny/__init__.py") == b"ANSWER = 42\n"
        assert {i.date_time for i in whl.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    line = f"    # kiln: built {wheel.name} sha256:{sha(wheel.read_bytes())} from sdist with "
    assert line + "kiln-test-backend==1.0\n    # via -r requirements.in\n" in text
    assert "# format = 2\n" in text
    (tiny,) = [p for p in parse_lock(lock_path(ws.image("base")), text).pins if p.name == "tiny"]
    assert tiny.hashes == (sha(sources.sdist),)  # the sdist's, from uv
    assert tiny.built is not None
    assert (tiny.built.filename, tiny.built.backend) == (wheel.name, ("kiln-test-backend==1.0",))


def test_a_build_that_is_not_reproducible_is_refused_naming_the_package(ws: Workspace) -> None:
    sources = FakeSources(sdist=sdist(stamp=True))
    with pytest.raises(ConfigError) as err:
        lock(ws, builder(ws, sources), sources)
    message = str(err.value)
    assert "requirements.lock: tiny==1.0: its build is not reproducible" in message
    assert "tiny/_stamp.py: content" in message
    assert not lock_path(ws.image("base")).exists()
    assert not list(sdist_cache_dir(ws.state_dir).glob("*/*.whl"))  # nothing kept


def test_differences_name_the_files_that_differ(tmp_path: Path) -> None:
    a, b = tmp_path / "a.whl", tmp_path / "b.whl"
    a.write_bytes(_zip({"x.py": "1", "y.py": "2"}))
    b.write_bytes(_zip({"x.py": "1", "y.py": "3", "z.py": ""}))
    assert differences(a, b) == ["y.py: content", "z.py: in one wheel only"]
    assert differences(a, a) == []


def test_kiln_on_another_python_is_told_which_python_to_get(ws: Workspace) -> None:
    sources = FakeSources()
    with pytest.raises(ConfigError) as err:
        lock(ws, builder(ws, sources, python="3.99"), sources)
    message = str(err.value)
    assert f"tiny==1.0 has no wheel for Python {factory.PYTHON}, only an sdist" in message
    assert "kiln runs on Python 3.99" in message
    assert f"`uv python install {factory.PYTHON}`" in message
    assert sources.files == []  # refused before fetching anything


def test_a_relock_keeps_the_backend_and_uses_the_cache_unless_upgraded(ws: Workspace) -> None:
    sources = FakeSources()
    first = lock(ws, builder(ws, sources), sources)

    again = builder(ws, sources)
    assert lock(ws, again, sources) == first  # same bytes
    assert again.builds == 0  # the locked backend's build is in the cache

    shutil.rmtree(sdist_cache_dir(ws.state_dir))
    rebuilt = builder(ws, sources)
    assert lock(ws, rebuilt, sources) == first
    assert rebuilt.builds == 2
    assert sources.backends[-1] == (UPSTREAM, ("kiln-test-backend==1.0",), False)  # kept

    lock(ws, builder(ws, sources), sources, upgrade=["tiny"])
    assert sources.backends[-1] == (UPSTREAM, ("kiln-test-backend>=1",), True)  # resolved


# ------------------------------------------------------------------ release
def services(ws: Workspace, sources: FakeSources, index: FakeIndex | None = None) -> Services:
    registry = FakeRegistry()
    pages = upstream(sources)
    return Services(
        index or FakeIndex(),
        registry,
        FakeOci(registry),
        Recorder(),  # builds for real
        upstream_pages=lambda _url: pages,
        download=PipDownload(FakePip()),  # numpy and kfp: FakePip's wheels
        sources=sources,
    )


def test_a_release_installs_the_built_wheel_and_mirrors_its_sources(ws: Workspace) -> None:
    sources = FakeSources()
    lock(ws, builder(ws, sources), sources)
    locked_sha = sha(built_wheel(ws).read_bytes())
    shutil.rmtree(sdist_cache_dir(ws.state_dir))  # a fresh clone: nothing cached
    sources.files.clear()
    sources.backends.clear()
    svc = services(ws, sources)

    prepared = prepare(ws, svc)
    plan = make_plan(ws, prepared, svc)
    execute(ws, prepared, plan, svc)

    (tiny,) = [w for w in prepared.images[0].wheelhouse.third_party if w.name == "tiny"]
    assert (tiny.filename, tiny.sha256, tiny.built) == (
        "tiny-1.0-py3-none-any.whl", locked_sha, True,
    )  # fmt: skip
    assert sources.files == [(UPSTREAM, "tiny-1.0.tar.gz")]  # rebuilt from the upstream sdist
    assert sources.backends == [(UPSTREAM, ("kiln-test-backend==1.0",), False)]
    mirrored = {s.filename for s in plan.files if s.kind == "mirror"}
    assert {"tiny-1.0.tar.gz", BACKEND} <= mirrored
    assert "tiny-1.0-py3-none-any.whl" not in mirrored  # kiln's build is not upstream's file
    built = prepared.images[0].built
    assert isinstance(built, BuiltImage)
    assert locked_sha in json.loads(built.manifest)["wheels"]  # the image has kiln's build
    assert sha(tiny.path.read_bytes()) == locked_sha

    # A second clone rebuilds from the private index alone, where the release mirrored them.
    shutil.rmtree(sdist_cache_dir(ws.state_dir))
    private = svc.index
    assert isinstance(private, FakeIndex)
    prepare(ws, services(ws, sources, index=private))
    assert sources.files[-1] == (PRIVATE, "tiny-1.0.tar.gz")
    assert sources.backends[-1] == (PRIVATE, ("kiln-test-backend==1.0",), False)


def test_a_cached_build_is_not_rebuilt_at_release(ws: Workspace) -> None:
    sources = FakeSources()
    lock(ws, builder(ws, sources), sources)
    lock_file = read_lock(ws.image("base"))
    pages = [(UPSTREAM, upstream(sources))]
    release = builder(ws, sources)

    wheels, mirrored = build_locked(lock_file, pages=pages, sdists=release)
    assert release.builds == 0
    assert sources.files == [(UPSTREAM, "tiny-1.0.tar.gz")]  # only the lock's fetch
    assert [w.filename for w in wheels] == ["tiny-1.0-py3-none-any.whl"]
    assert sorted(s.filename for s in mirrored) == [BACKEND, "tiny-1.0.tar.gz"]

    wheel = built_wheel(ws)
    wheel.write_bytes(b"altered")  # an entry that does not check out is rebuilt
    wheels, _ = build_locked(lock_file, pages=pages, sdists=release)
    assert release.builds == 1
    assert sha(wheels[0].path.read_bytes()) != sha(b"altered")


def test_a_release_rebuild_with_another_result_is_refused(ws: Workspace) -> None:
    sources = FakeSources()
    lock(ws, builder(ws, sources), sources)
    shutil.rmtree(sdist_cache_dir(ws.state_dir))
    # The same backend version, other bytes (a re-uploaded file, a patched mirror).
    changed = replace(sources, backend=backend_wheel("patched"), files=[], backends=[])
    with pytest.raises(ConfigError) as err:
        build_locked(
            read_lock(ws.image("base")),
            pages=[(UPSTREAM, upstream(changed))],
            sdists=builder(ws, changed),
        )
    message = str(err.value)
    assert (
        f"{lock_path(ws.image('base'))}: tiny==1.0: rebuilding it from tiny-1.0.tar.gz" in message
    )
    assert "but the lock records tiny-1.0-py3-none-any.whl with sha256" in message
    assert "`kiln lock base --upgrade tiny`" in message
    assert not list(sdist_cache_dir(ws.state_dir).glob("*/*.whl"))  # not cached either


def test_a_release_refuses_an_sdist_whose_bytes_the_lock_does_not_allow(ws: Workspace) -> None:
    sources = FakeSources()
    lock(ws, builder(ws, sources), sources)
    shutil.rmtree(sdist_cache_dir(ws.state_dir))
    other = upstream(sources)
    other.published["tiny"] = {"tiny-1.0.tar.gz": "0" * 64}
    with pytest.raises(ConfigError, match=r"serves tiny-1.0.tar.gz with sha256 0{64}"):
        build_locked(
            read_lock(ws.image("base")), pages=[(UPSTREAM, other)], sdists=builder(ws, sources)
        )
    assert sources.files == [(UPSTREAM, "tiny-1.0.tar.gz")]  # the lock's only
