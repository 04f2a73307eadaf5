"""kiln's OCI builder on the real Docker Engine and a real registry: this repo's ``base``
image (on kiln's OS base, from the committed OS lock) built twice from different
folders gives one manifest, the registry stores it under the predicted digest, the
pulled image runs, and a helper change moves only the helper layer."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import docker
import docker.errors
import matplotlib  # the analytics helpers need it: the test environment has it
import pytest
from packaging.utils import parse_wheel_filename

from kiln._debian.archive import Mirrors
from kiln._debian.lock import read_os_lock
from kiln._images.oci.assemble import KFP_ENV, PythonLayer, assemble
from kiln._images.oci.base_image import BaseImage, base_image_python, probe_scheme
from kiln._images.oci.builder import build_on
from kiln._images.oci.cache import LayerCache
from kiln._images.oci.image import BuiltImage, labels
from kiln._images.oci.install import InstallScheme
from kiln._images.oci.push import push_image
from kiln._images.os_layers import OsLayers
from kiln._lock.format import Lock, read_lock
from kiln._servers.registry import RegistryClient
from kiln._servers.stack import LocalStack
from kiln._wheels.build import build_wheel
from kiln._wheels.wheelhouse import PipDownload, SimplePages, fetch_locked
from kiln._workspace.discovery import discover
from kiln._workspace.model import Helper, StackConfig
from tests.e2e.conftest import KilnCache, OsPins, _unavailable
from tests.e2e.tools import free_port, installed
from tests.unit.test_oci_install import make_wheel

pytestmark = pytest.mark.e2e

REPOSITORY = "acme/base"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on a free loopback port, stopped after."""
    if not shutil.which("docker-registry"):
        _unavailable("no docker-registry binary on PATH (apt-get install docker-registry)")
    config = StackConfig(index_port=free_port(), registry_port=free_port())
    stack = LocalStack(config, tmp_path_factory.mktemp("stack"))
    try:
        stack.up()
        yield config.registry
    finally:
        stack.down()


def spread(wheels: Sequence[Path], folder: Path, *, reverse: bool, seed: int) -> list[Path]:
    """Copies of ``wheels`` in ``folder``, written in another order with random mtimes."""
    folder.mkdir()
    rng = random.Random(seed)  # noqa: S311 - mtimes, not secrets
    copies = []
    for wheel in sorted(wheels, key=lambda p: p.name, reverse=reverse):
        copy = Path(shutil.copy(wheel, folder / wheel.name))
        stamp = rng.randint(0, 2_000_000_000)
        os.utime(copy, (stamp, stamp))
        copies.append(copy)
    return copies


def os_base(source: Path, cache: LayerCache, debs: Path) -> BaseImage:
    """kiln's OS base of the repo at ``source``: its layer built in ``cache`` from the
    .debs in ``debs`` (fetched from Debian's mirrors when missing)."""
    lock = read_os_lock(source)
    return OsLayers(cache, debs, Mirrors(discover(source).os)).base_image(lock)


def build(
    source: Path,
    cache: LayerCache,
    third: Sequence[Path],
    helpers: Sequence[Path],
    *,
    debs: Path,
) -> tuple[BuiltImage, list[PythonLayer], InstallScheme]:
    base = os_base(source, cache, debs)
    helper_pins = " ".join(
        f"{name}=={version}"
        for name, version, _, _ in map(parse_wheel_filename, (w.name for w in helpers))
    )
    oci = labels(title="base", version="0.2.1", created="1980-01-01T00:00:00Z",
                 extra={"org.kiln.helpers": helper_pins})  # fmt: skip
    return build_on(
        base, cache, (("third-party", third), ("helpers", helpers)),
        platform="x86_64-manylinux_2_28", env=KFP_ENV, labels=oci, what=f"image {REPOSITORY}",
    )  # fmt: skip


def run(docker_client: docker.DockerClient, ref: str, script: str) -> str:
    output = docker_client.containers.run(
        ref, ["sh", "-c", script], network_mode="none", remove=True, stderr=True
    )
    return bytes(output).decode()


@dataclasses.dataclass(frozen=True)
class BaseWheels:
    source: Path  # the repo (this one, or its relocked copy: see conftest.os_pins)
    debs: Path  # its .debs, fetched and checked once
    lock: Lock
    imgproc: Helper
    third: list[Path]  # the lock's wheels
    helper: Path  # acme-imgproc's wheel


@pytest.fixture(scope="module")
def base_wheels(
    tmp_path_factory: pytest.TempPathFactory, os_pins: OsPins, kiln_cache: KilnCache
) -> BaseWheels:
    """This repo's ``base`` image inputs: its locked wheels (from PyPI, or the run's
    wheelhouse that has them) and its helper."""
    tmp_path = tmp_path_factory.mktemp("base-wheels")
    workspace = discover(os_pins.source)
    lock = read_lock(workspace.image("base"))
    fetched = fetch_locked(
        lock,
        pages=[(workspace.upstream_index, SimplePages(workspace.upstream_index))],
        cache_dir=kiln_cache.state / "wheelhouse",
        download=PipDownload(),
    )
    imgproc = workspace.helper("imgproc")
    helper = build_wheel(imgproc, tmp_path / "helpers").path
    debs = os_pins.cache / "debian"
    return BaseWheels(os_pins.source, debs, lock, imgproc, [w.path for w in fetched], helper)


def test_base_image_is_reproducible_pushes_as_predicted_runs_and_moves_one_layer(
    docker_client: docker.DockerClient, registry: str, base_wheels: BaseWheels, tmp_path: Path
) -> None:
    lock, imgproc, third, helper = (
        base_wheels.lock, base_wheels.imgproc, base_wheels.third, base_wheels.helper
    )  # fmt: skip

    # Two cold builds from different folders: wheels copied in other orders, other
    # mtimes, another umask, separate caches.
    started = time.perf_counter()
    repo_root, debs = base_wheels.source, base_wheels.debs
    first, first_layers, scheme = build(
        repo_root,
        LayerCache(tmp_path / "cache-a"),
        spread(third, tmp_path / "a", reverse=False, seed=1),
        spread([helper], tmp_path / "a-helpers", reverse=False, seed=2),
        debs=debs,
    )
    cold = time.perf_counter() - started
    old_umask = os.umask(0o077)
    try:
        second, _, _ = build(
            repo_root,
            LayerCache(tmp_path / "cache-b"),
            spread(third, tmp_path / "b", reverse=True, seed=3),
            spread([helper], tmp_path / "b-helpers", reverse=True, seed=4),
            debs=debs,
        )
    finally:
        os.umask(old_umask)
    assert second.manifest == first.manifest
    assert second.config == first.config

    client = RegistryClient(registry)
    pushed = push_image(client, REPOSITORY, "0.2.1", first)
    assert pushed.digest == first.digest
    assert client.digest(REPOSITORY, "0.2.1") == first.digest  # the registry's own answer

    ref = f"{registry}/{REPOSITORY}@{first.digest}"
    pulled = docker_client.images.pull(ref)
    try:
        assert run(docker_client, ref, 'python3 -c "import imgproc, kfp, numpy"') == ""
        assert "_KFP_RUNTIME=true" in json.loads(first.config)["config"]["Env"]
        # What kiln installed, in Debian's scheme for it: the distributions the image's
        # python3 finds are exactly the lock's and the helper (the OS base has none).
        assert scheme.purelib == "/usr/local/lib/python3.11/dist-packages"
        assert installed(docker_client, ref) == {
            *((p.name, p.version) for p in lock.pins),
            ("acme-imgproc", imgproc.version),
        }
    finally:
        docker_client.images.remove(str(pulled.id), force=True)

    # A changed helper (same version, other code): with the cache warm only the helper
    # layer is rebuilt, and only its digest moves.
    source = tmp_path / "imgproc"
    shutil.copytree(imgproc.path, source, ignore=shutil.ignore_patterns("__pycache__"))
    init = source / "src" / "imgproc" / "__init__.py"
    init.write_text(init.read_text() + "\nCHANGED = True\n")
    changed = build_wheel(dataclasses.replace(imgproc, path=source), tmp_path / "changed").path
    started = time.perf_counter()
    third_image, layers, _ = build(
        repo_root, LayerCache(tmp_path / "cache-a"), third, [changed], debs=debs
    )
    incremental_push = push_image(client, REPOSITORY, "0.2.1-changed", third_image)
    incremental = time.perf_counter() - started
    assert [layer.cached for layer in layers] == [True, False]
    old = json.loads(first.manifest)["layers"]
    new = json.loads(third_image.manifest)["layers"]
    assert [o["digest"] == n["digest"] for o, n in zip(old, new, strict=True)] == [
        *([True] * (len(old) - 1)),
        False,
    ]
    assert layers[0].blob == first_layers[0].blob
    assert incremental_push.uploaded == (new[-1]["digest"], third_image.config_digest)
    print(
        f"\ncold build {cold:.2f} s; helper change build+push {incremental:.2f} s; "
        f"pushed {pushed.uploaded_bytes} bytes, then {incremental_push.uploaded_bytes}"
    )


def push_base(base: BaseImage, registry: str, tag: str) -> str:
    """The base alone, pushed as an image (kiln's OS base is no image of its own); its ref."""
    image = assemble(base, [], env={}, labels={}, annotations={}, what=f"kiln/os:{tag}")
    push_image(RegistryClient(registry), "kiln/os", tag, image)
    return f"{registry}/kiln/os@{image.digest}"


def test_the_unpacked_base_python_is_the_image_s_own(
    docker_client: docker.DockerClient, registry: str, base_wheels: BaseWheels, tmp_path: Path
) -> None:
    """The base's python3 run from its unpacked layers (no container) reports the scheme
    and writes the bytecode that the same python3 inside a container does."""
    cache = LayerCache(tmp_path / "cache")
    base = os_base(base_wheels.source, cache, base_wheels.debs)
    ref = push_base(base, registry, "unpacked")
    python = base_image_python(base, cache)
    scheme = probe_scheme(base, cache, python)
    inside = json.loads(
        run(
            docker_client,
            ref,
            "python3 -c 'import json, sys, sysconfig; print(json.dumps("
            '[sys.version, sysconfig.get_paths()["purelib"]]))\'',
        )
    )
    assert python.run("import sys; print(sys.version)").strip() == inside[0]
    assert scheme.purelib == inside[1]

    # Modules whose bytes differ between patch releases of Python 3.11 among them.
    sources = tmp_path / "src"
    sources.mkdir()
    for name in ("font_manager.py", "widgets.py", "_afm.py"):
        shutil.copy(Path(matplotlib.__file__).parent / name, sources / name)
    script = (
        "import py_compile, sys\n"
        "for name in sys.argv[1:]:\n"
        "    py_compile.compile(f'/src/{name}', cfile=f'/src/{name}.TAG.pyc', dfile=name,"
        " doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)\n"
    )
    names = sorted(p.name for p in sources.iterdir())
    sources.chmod(0o777)
    docker_client.containers.run(
        ref,
        ["python3", "-S", "-c", script.replace("TAG", "ctr"), *names],
        environment={"PYTHONHASHSEED": "0"},
        volumes={str(sources): {"bind": "/src", "mode": "rw"}},
        network_mode="none",
        remove=True,
    )
    python.run(script.replace("/src/", f"{sources}/").replace("TAG", "host"), names)
    for name in names:
        built_here = (sources / f"{name}.host.pyc").read_bytes()
        assert built_here == (sources / f"{name}.ctr.pyc").read_bytes(), name


# Run inside kiln's OS base by Debian's own python3.11 (3.11.2; the host's may be another
# patch release): the same build as this module's ``build``, with kiln imported from
# this checkout and its dependencies from the test environment, read-only; its caches
# empty but for the .debs (no network in the container).
_IN_CONTAINER = """\
import sys
from pathlib import Path
from kiln._images.oci.cache import LayerCache
from tests.e2e.test_oci_builder import build
third = sorted(Path("/wheels/third").iterdir())
helpers = sorted(Path("/wheels/helpers").iterdir())
image, _, _ = build(Path(sys.argv[1]), LayerCache(Path("/cache")), third, helpers,
                    debs=Path("/debs"))
print(sys.version.split()[0], image.digest)
"""


def test_kiln_on_another_distribution_s_python_builds_the_same_digest(
    docker_client: docker.DockerClient, registry: str, base_wheels: BaseWheels, tmp_path: Path
) -> None:
    """kiln on this machine's Python and kiln inside a Debian container (its python3.11,
    building the OS layer and the image from the .debs and wheels alone) build one
    manifest digest."""
    # A module whose bytecode differs between Python 3.11.2 and 3.11.7: were it compiled
    # by the interpreter kiln runs on, the digests would differ.
    afm = (Path(matplotlib.__file__).parent / "_afm.py").read_bytes()
    probe = make_wheel(tmp_path / "probe", "acme-probe", "1.0", {"acme_probe.py": afm})
    helpers = [base_wheels.helper, probe]
    here, _, _ = build(
        base_wheels.source, LayerCache(tmp_path / "host-cache"), base_wheels.third, helpers,
        debs=base_wheels.debs,
    )  # fmt: skip
    ref = push_base(os_base(base_wheels.source, LayerCache(tmp_path / "host-cache"),
                            base_wheels.debs), registry, "kiln")  # fmt: skip
    wheels = tmp_path / "wheels"
    for name, files in (("third", base_wheels.third), ("helpers", helpers)):
        (wheels / name).mkdir(parents=True)
        for wheel in files:
            shutil.copy(wheel, wheels / name / wheel.name)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache").chmod(0o777)
    site = sysconfig.get_paths()["purelib"]
    project = Path(__file__).resolve().parents[2]
    mounts = {str(project): {"bind": "/project", "mode": "ro"}}
    source = "/project"  # the repo, unless its OS lock had to be relocked in a copy
    if base_wheels.source != project:
        source = "/source"
        mounts[str(base_wheels.source)] = {"bind": source, "mode": "ro"}
    output = docker_client.containers.run(
        ref,
        ["python3", "-c", _IN_CONTAINER, source],
        environment={"PYTHONPATH": f"/project/src:/project:{site}"},
        volumes={
            **mounts,
            site: {"bind": site, "mode": "ro"},
            str(wheels): {"bind": "/wheels", "mode": "ro"},
            str(base_wheels.debs): {"bind": "/debs", "mode": "ro"},
            str(tmp_path / "cache"): {"bind": "/cache", "mode": "rw"},
        },
        network_mode="none",
        remove=True,
        stderr=True,
    )
    version, digest = bytes(output).decode().split()[-2:]
    print(f"\nkiln on Python {sys.version.split()[0]}: {here.digest}")
    print(f"kiln on the base's Python {version}: {digest}")
    assert digest == here.digest
