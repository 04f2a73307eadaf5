"""Image locks without a network: uv and pip are fakes, asserted by the exact argv
they are given; the lock's bytes, header, staleness and the fetch of its files."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from kiln._errors import ConfigError, ServiceUnavailable
from kiln._images.registry_base import build_ref, resolve_base, split_reference
from kiln._lock.format import BasePin, Built, Lock, lock_path, parse_lock, read_lock
from kiln._lock.inputs import check_fresh
from kiln._lock.make import Uv, make_lock
from kiln._wheels.wheelhouse import PipDownload, fetch_locked
from kiln._workspace.discovery import discover
from kiln._workspace.model import Workspace
from tests import factory
from tests.unit.fakes import (
    KFP,
    NUMPY,
    UPSTREAM,
    FakeIndex,
    FakePip,
    FakeSdists,
    FakeUv,
    fake_sha,
    fake_upstream,
)

BASE = BasePin("python:3.11-slim", "digest", "sha256:" + "b" * 64)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return discover(factory.sample(tmp_path / "repo"))


def lock_text(
    ws: Workspace, uv: FakeUv, *, upgrade: Sequence[str] = (), ca: Path | None = None
) -> str:
    return make_lock(
        ws,
        ws.image("base"),
        kfp_version="2.17.3",
        uv=Uv(uv, "/opt/uv", UPSTREAM, ca),
        base=BASE,
        pages=fake_upstream(("numpy", "1.0"), ("kfp", "2.17.3")),
        sdists=FakeSdists(),
        upgrade=upgrade,
    )


# ------------------------------------------------------------------ making a lock
def test_uv_is_hermetic_and_targets_the_image(ws: Workspace, tmp_path: Path) -> None:
    uv = FakeUv()
    ca = tmp_path / "ca.pem"
    lock_text(ws, uv, ca=ca)

    (closure, _, env), (kfp, _, _) = uv.calls
    target = [
        "/opt/uv", "pip", "compile", "--no-config", "--quiet", "--no-progress",
        "--generate-hashes", "--no-header", "--python-version", factory.PYTHON,
        "--python-platform", "x86_64-manylinux_2_28", "--index-url", UPSTREAM,
    ]  # fmt: skip
    assert closure == [*target, "--output-file", "requirements.txt", "requirements.in"]
    assert kfp == [*target, "--no-deps", "--output-file", "requirements.txt", "requirements.in"]
    assert env == {"SSL_CERT_FILE": str(ca)}  # the machine's CAs, never on the command line


def test_the_inputs_are_the_closure_without_kfp_and_kfp_alone(ws: Workspace) -> None:
    seen: list[str] = []

    class Recording(FakeUv):
        def __call__(self, args: Sequence[str], **kw: object) -> str:
            cwd = kw["cwd"]
            assert isinstance(cwd, Path)
            seen.append((cwd / "requirements.in").read_text())
            return super().__call__(args, cwd=cwd)

    lock_text(ws, Recording())
    assert seen == ["numpy>=1.26\n", "kfp==2.17.3\n"]


def test_lock_bytes_are_deterministic_and_carry_no_local_path(ws: Workspace) -> None:
    first, second = lock_text(ws, FakeUv()), lock_text(ws, FakeUv())
    assert first == second
    assert str(ws.root) not in first
    assert "kiln-lock-" not in first  # uv ran in a temporary folder
    lock = parse_lock(Path("images/base/requirements.lock"), first)
    assert [(p.name, p.version, p.no_deps) for p in lock.pins] == [
        ("numpy", "1.0", False),
        ("kfp", "2.17.3", True),
    ]
    assert lock.python == factory.PYTHON
    assert "# format = 1\n" in first  # nothing built: every kiln reads it
    assert lock.platform == "x86_64-manylinux_2_28"
    assert lock.kfp == "2.17.3"
    assert lock.base == BASE
    assert lock.base.build_ref == f"python@sha256:{'b' * 64}"


def test_an_existing_lock_keeps_its_versions_unless_upgraded(ws: Workspace) -> None:
    path = lock_path(ws.image("base"))
    path.write_text(lock_text(ws, FakeUv()))

    uv = FakeUv()
    lock_text(ws, uv)
    kept = uv.seen_outputs[0]
    assert kept is not None
    assert kept.startswith("numpy==1.0 \\\n    --hash=sha256:")  # uv prefers these
    assert "kfp" not in kept

    uv = FakeUv()
    lock_text(ws, uv, upgrade=["numpy"])
    assert uv.calls[0][0][-5:-1] == [
        "--upgrade-package",
        "numpy",
        "--output-file",
        "requirements.txt",
    ]
    assert uv.seen_outputs[0] is not None  # others stay where they are

    uv = FakeUv()
    lock_text(ws, uv, upgrade=[""])
    assert "--upgrade" in uv.calls[0][0]
    assert uv.seen_outputs[0] is None  # everything moves


def _sdist_only_lock(ws: Workspace, sdists: FakeSdists, **kw: object) -> str:
    pages = fake_upstream(("kfp", "2.17.3"))
    pages.published["numpy"] = {
        "numpy-1.0.tar.gz": fake_sha("numpy", "1.0"),
        "numpy-1.0-cp311-cp311-macosx_14_0_arm64.whl": "f" * 64,  # no use on the image
    }
    return make_lock(
        ws, ws.image("base"), kfp_version="2.17.3", uv=Uv(FakeUv(), "uv", UPSTREAM),
        base=BASE, pages=pages, sdists=sdists, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_an_sdist_only_requirement_is_built_and_recorded_under_its_pin(ws: Workspace) -> None:
    sdists = FakeSdists()
    text = _sdist_only_lock(ws, sdists)
    assert sdists.asked == [("numpy==1.0", ("numpy-1.0.tar.gz", fake_sha("numpy", "1.0")), None)]
    assert "# format = 2\n" in text
    assert (
        f"numpy==1.0 \\\n    --hash=sha256:{fake_sha('numpy', '1.0')}\n"
        f"    # kiln: built numpy-1.0-py3-none-any.whl sha256:{'e' * 64} from sdist with "
        "flit-core==3.9\n    # via -r requirements.in\n"
    ) in text
    numpy, kfp = parse_lock(Path("images/base/requirements.lock"), text).pins
    assert numpy.built == Built("numpy-1.0-py3-none-any.whl", "e" * 64, ("flit-core==3.9",))
    assert kfp.built is None


def test_a_relock_keeps_the_build_backend_of_a_pin_that_did_not_move(ws: Workspace) -> None:
    lock_path(ws.image("base")).write_text(_sdist_only_lock(ws, FakeSdists()))
    kept = FakeSdists()
    _sdist_only_lock(ws, kept)
    assert kept.asked[0][2] == ("flit-core==3.9",)
    for upgrade in ([""], ["NumPy"]):
        moved = FakeSdists()
        _sdist_only_lock(ws, moved, upgrade=upgrade)
        assert moved.asked[0][2] is None  # resolved again


def test_a_requirement_with_neither_wheel_nor_sdist_is_named_with_the_fix(ws: Workspace) -> None:
    pages = fake_upstream(("kfp", "2.17.3"))
    pages.published["numpy"] = {"numpy-1.0.tar.gz": "0" * 64}  # not the locked bytes
    with pytest.raises(ConfigError) as err:
        make_lock(
            ws, ws.image("base"), kfp_version="2.17.3", uv=Uv(FakeUv(), "uv", UPSTREAM),
            base=BASE, pages=pages, sdists=FakeSdists(),
        )  # fmt: skip
    message = str(err.value)
    assert "numpy==1.0 has neither a wheel for Python" in message
    assert 'e.g. "numpy<1.0"' in message


def test_a_wheel_for_another_platform_does_not_count(ws: Workspace) -> None:
    pages = fake_upstream(("kfp", "2.17.3"))
    pages.published["numpy"] = {
        "numpy-1.0-cp311-cp311-macosx_14_0_arm64.whl": fake_sha("numpy", "1.0"),
        "numpy-1.0-cp311-cp311-manylinux_2_34_x86_64.whl": fake_sha("numpy", "1.0"),
    }
    with pytest.raises(ConfigError, match=r"numpy==1.0 has neither a wheel"):
        make_lock(
            ws, ws.image("base"), kfp_version="2.17.3", uv=Uv(FakeUv(), "uv", UPSTREAM),
            base=BASE, pages=pages, sdists=FakeSdists(),
        )  # fmt: skip


def test_kfp_required_by_the_image_is_refused(ws: Workspace) -> None:
    with pytest.raises(ConfigError, match=r"kiln adds kfp==2.17.3 itself"):
        lock_text(ws, FakeUv(closure=NUMPY + KFP))


# ------------------------------------------------------------------ reading a lock
def test_staleness_names_the_file_and_the_command(ws: Workspace) -> None:
    image = ws.image("base")
    lock_path(image).write_text(lock_text(ws, FakeUv()))
    check_fresh(read_lock(image), ws, image, "2.17.3")

    for changed in (
        replace(image, requirements=("six",)),
        replace(image, python="3.12"),
        replace(image, platform="x86_64-manylinux_2_17"),
        replace(image, base="python:3.12-slim"),  # was kiln's OS base
    ):
        with pytest.raises(ConfigError) as err:
            check_fresh(read_lock(image), ws, changed, "2.17.3")
        assert f"{lock_path(image)}: stale" in str(err.value)
        assert "run `kiln lock base`" in str(err.value)
    with pytest.raises(ConfigError, match="stale"):
        check_fresh(read_lock(image), ws, image, "2.18.0")
    with pytest.raises(ConfigError, match="stale"):
        check_fresh(
            read_lock(image), replace(ws, upstream_index="https://mirror/simple"), image, "2.17.3"
        )


def test_a_missing_lock_names_the_command(ws: Workspace) -> None:
    with pytest.raises(ConfigError) as err:
        read_lock(ws.image("base"))
    assert "requirements.lock: missing" in str(err.value)
    assert "run `kiln lock base`" in str(err.value)


def _built_line(project: str) -> str:
    return f"# kiln: built {project}-1.0-py3-none-any.whl sha256:{'e' * 64} from sdist"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace(f" \\\n    --hash=sha256:{fake_sha('numpy', '1.0')}", ""),
            "numpy==1.0 has no --hash",
        ),
        (lambda t: t.replace("numpy==1.0", "numpy>=1.0"), "must be an exact pin"),
        (lambda t: t.replace("--hash=sha256:", "--hash=md5:", 1), "takes only --hash=sha256"),
        (lambda t: t.replace("numpy==1.0 \\", "numpy==1.0 --index-url http://x \\"), "takes only"),
        (lambda t: t.replace("# [kiln]", "# kiln"), "no `# [kiln]` header"),
        (lambda t: t.replace('# python = "', "# python = 3"), "malformed `# [kiln]` header"),
        (lambda t: t + KFP, "kfp locked more than once"),
        (lambda t: t.replace("# format = 1", "# format = 4"), "lock format 4, this kiln reads"),
        (
            lambda t: t.replace("\n\nnumpy==", f"\n\n{_built_line('x')}\nnumpy=="),
            "is not a built-wheel line kiln wrote under a pin",
        ),
        (
            lambda t: t.replace("    # via -r", f"    {_built_line('six')}\n    # via -r"),
            "six-1.0-py3-none-any.whl is not a wheel of numpy==1.0",
        ),
        (
            lambda t: t.replace("    # via -r", f"    {_built_line('numpy')[:-11]}\n    # via -r"),
            "is not a built-wheel line",
        ),
    ],
)
def test_a_lock_that_kiln_did_not_write_is_refused(
    ws: Workspace, edit: object, message: str
) -> None:
    text = lock_text(ws, FakeUv())
    assert callable(edit)
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_lock(Path("images/base/requirements.lock"), str(edit(text)))


# ------------------------------------------------------------------ the base image
def test_docker_references_split_like_docker() -> None:
    assert split_reference("python:3.11-slim") == (
        "registry-1.docker.io",
        "library/python",
        "3.11-slim",
    )
    assert split_reference("acme/py") == ("registry-1.docker.io", "acme/py", "latest")
    assert split_reference("127.0.0.1:5765/acme/base:0.2.0") == (
        "127.0.0.1:5765",
        "acme/base",
        "0.2.0",
    )
    assert split_reference("ghcr.io/o/p@sha256:ab") == ("ghcr.io", "o/p", "sha256:ab")


def test_a_registry_base_is_pinned_by_digest_or_refused() -> None:
    asked: list[tuple[str, str, str]] = []
    where = Path("images/base/image.toml")

    def registry(host: str, repository: str, tag: str) -> str | None:
        asked.append((host, repository, tag))
        return "sha256:" + "d" * 64

    def unreachable(host: str, repository: str, tag: str) -> str | None:
        raise ServiceUnavailable(f"registry {host} is not reachable (ConnectionError); hint")

    def no_local(ref: str) -> None:
        return None

    pin, _ = resolve_base(
        "python:3.11-slim", where=str(where), registry_digest=registry, local=no_local
    )
    assert pin == BasePin("python:3.11-slim", "digest", "sha256:" + "d" * 64)
    assert asked == [("registry-1.docker.io", "library/python", "3.11-slim")]

    pulled = ("python@sha256:" + "e" * 64,)
    pin, how = resolve_base(
        "python:3.11-slim", where=str(where), registry_digest=unreachable, local=lambda r: pulled
    )
    assert pin == BasePin("python:3.11-slim", "digest", "sha256:" + "e" * 64)
    assert how == "repo digest from the local engine"

    # An imported image (no repo digest) or an unreachable registry: refused, with the fix.
    for local in (lambda r: (), no_local):
        with pytest.raises(ConfigError) as err:
            resolve_base(
                "kiln-local/py:3.11", where=str(where), registry_digest=unreachable, local=local
            )
        message = str(err.value)
        assert message.startswith(f"{where}: base kiln-local/py:3.11 could not be pinned")
        assert "registry registry-1.docker.io is not reachable (ConnectionError)" in message
        assert 'base = "kiln-local/py@sha256:<digest>"' in message
        assert "delete `base` to build on kiln's OS base" in message
    # Pinned in image.toml already: nothing is asked.
    pinned = "python@sha256:" + "f" * 64
    assert resolve_base(pinned, where="x", registry_digest=unreachable, local=no_local)[0] == (
        BasePin(pinned, "digest", "sha256:" + "f" * 64)
    )


def _lock(base: BasePin) -> Lock:
    return Lock(Path("images/base/requirements.lock"), "i", "3.11", "p", "2.17.3", base, (), "s")


def test_the_release_builds_from_the_locked_base(ws: Workspace) -> None:
    on_os = ws.image("base")  # no `base` in image.toml: kiln's OS base
    assert build_ref(on_os, _lock(BasePin("os", "os", "images/os.lock"))) is None
    with pytest.raises(ConfigError, match=r"stale: written for base python:3.11-slim"):
        build_ref(on_os, _lock(BASE))
    on_registry = replace(on_os, base="python:3.11-slim")
    assert build_ref(on_registry, _lock(BASE)) == f"python@sha256:{'b' * 64}"
    with pytest.raises(ConfigError, match=r"stale: written for kiln's OS base"):
        build_ref(on_registry, _lock(BasePin("os", "os", "images/os.lock")))


@pytest.mark.parametrize("key", ["base-id", "base-unpinned"])
def test_a_lock_from_a_machine_local_base_is_refused(ws: Workspace, key: str) -> None:
    text = lock_text(ws, FakeUv())
    text = re.sub(r"# base-digest = .*", f'# {key} = "sha256:{"f" * 64}"', text)
    with pytest.raises(ConfigError) as err:
        parse_lock(Path("images/base/requirements.lock"), text)
    assert "does not pin its base by a registry digest" in str(err.value)
    assert "run `kiln lock base`" in str(err.value)


# ------------------------------------------------------------------ fetching the files
def _written(ws: Workspace) -> Lock:
    image = ws.image("base")
    lock_path(image).write_text(lock_text(ws, FakeUv()))
    return read_lock(image)


def test_pip_download_is_isolated_hash_checked_and_targets_the_image(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)
    lock, pip = _written(ws), FakePip()
    dest = tmp_path / "dest"
    dest.mkdir()
    PipDownload(pip)(lock, lock.pins, index_url="http://private/simple/", dest=dest)
    (argv,) = pip.calls
    abi = "cp" + factory.PYTHON.replace(".", "")
    assert argv[1:] == [
        "-m", "pip", "download", "--isolated", "--no-input", "--quiet",
        "--no-deps", "--require-hashes", "--only-binary", ":all:",
        "--python-version", factory.PYTHON, "--implementation", "cp",
        "--abi", abi, "--abi", "abi3", "--abi", "none",
        *[arg for m in range(28, 4, -1) for arg in ("--platform", f"manylinux_2_{m}_x86_64")],
        "--platform", "manylinux2014_x86_64", "--platform", "manylinux2010_x86_64",
        "--platform", "manylinux1_x86_64",
        "--index-url", "http://private/simple/", "--dest", str(dest),
        "-r", str(dest / "requirements.txt"),
    ]  # fmt: skip
    assert sorted(p.name for p in dest.iterdir()) == [
        "kfp-2.17.3-py3-none-any.whl",
        "numpy-1.0-py3-none-any.whl",
    ]


@dataclass
class RecordingDownload:
    pip: FakePip = field(default_factory=FakePip)
    asked: list[tuple[str, list[str]]] = field(default_factory=list)

    def __call__(self, lock: Lock, pins: Sequence[object], *, index_url: str, dest: Path) -> None:
        self.asked.append((index_url, [p.name for p in pins]))  # type: ignore[attr-defined]
        PipDownload(self.pip)(lock, pins, index_url=index_url, dest=dest)  # type: ignore[arg-type]


def test_files_come_from_the_private_index_first_then_upstream_and_are_cached(
    ws: Workspace, tmp_path: Path
) -> None:
    lock = _written(ws)
    private = FakeIndex(url="http://private")
    private.published["numpy"] = {"numpy-1.0-py3-none-any.whl": fake_sha("numpy", "1.0")}
    pages = [("http://private/simple/", private), (UPSTREAM, fake_upstream(("kfp", "2.17.3")))]
    download = RecordingDownload()

    wheels = fetch_locked(lock, pages=pages, cache_dir=tmp_path / "cache", download=download)

    assert download.asked == [("http://private/simple/", ["numpy"]), (UPSTREAM, ["kfp"])]
    assert [(w.name, w.sha256) for w in wheels] == [
        ("kfp", fake_sha("kfp", "2.17.3")),
        ("numpy", fake_sha("numpy", "1.0")),
    ]
    again = fetch_locked(lock, pages=pages, cache_dir=tmp_path / "cache", download=download)
    assert again == wheels
    assert len(download.asked) == 2  # the second answer came from the cache


def test_two_kilns_fetching_one_lock_into_one_cache_both_get_its_wheels(
    ws: Workspace, tmp_path: Path
) -> None:
    """A second fetch of the same lock starts (and ends) while the first downloads, as
    when a release and `kiln release --dev` share the cache: neither breaks the other."""
    lock = _written(ws)
    pages = [(UPSTREAM, fake_upstream(("numpy", "1.0"), ("kfp", "2.17.3")))]
    cache = tmp_path / "cache"
    inner = RecordingDownload()
    nested: list[tuple[object, ...]] = []

    def racing(lock: Lock, pins: Sequence[object], *, index_url: str, dest: Path) -> None:
        if not nested:
            nested.append(fetch_locked(lock, pages=pages, cache_dir=cache, download=inner))
        PipDownload(FakePip())(lock, pins, index_url=index_url, dest=dest)  # type: ignore[arg-type]

    outer = fetch_locked(lock, pages=pages, cache_dir=cache, download=racing)

    assert [(w.name, w.sha256) for w in outer] == [
        ("kfp", fake_sha("kfp", "2.17.3")),
        ("numpy", fake_sha("numpy", "1.0")),
    ]
    assert nested == [outer]
    assert [p.name for p in cache.iterdir()] == [lock.sha256[:16]]  # no folder left behind


def test_a_hash_no_index_serves_names_the_lock_the_package_and_the_fix(
    ws: Workspace, tmp_path: Path
) -> None:
    lock = _written(ws)
    text = lock.path.read_text().replace(fake_sha("numpy", "1.0"), "0" * 64)
    lock.path.write_text(text)
    edited = read_lock(ws.image("base"))
    private = FakeIndex(url="http://private")
    private.published["numpy"] = {"numpy-1.0-py3-none-any.whl": fake_sha("numpy", "1.0")}
    download = RecordingDownload()
    with pytest.raises(ConfigError) as err:
        fetch_locked(
            edited,
            pages=[("http://private/simple/", private), (UPSTREAM, fake_upstream())],
            cache_dir=tmp_path / "cache",
            download=download,
        )
    message = str(err.value)
    assert (
        f"{lock.path}: numpy==1.0: http://private/simple/ serves numpy-1.0-py3-none-any.whl"
        in message
    )
    assert "which no --hash of the lock allows" in message
    assert "`kiln lock base --upgrade numpy`" in message
    assert download.asked == []  # nothing fetched


def test_a_downloaded_file_is_checked_against_the_lock(ws: Workspace, tmp_path: Path) -> None:
    lock = _written(ws)

    def tampering(lock: Lock, pins: Sequence[object], *, index_url: str, dest: Path) -> None:
        for name, version in (("numpy", "1.0"), ("kfp", "2.17.3")):
            (dest / f"{name}-{version}-py3-none-any.whl").write_bytes(b"other bytes")

    pages = [(UPSTREAM, fake_upstream(("numpy", "1.0"), ("kfp", "2.17.3")))]
    with pytest.raises(ConfigError, match=r"numpy==1.0: fetched numpy-1.0-py3-none-any.whl"):
        fetch_locked(lock, pages=pages, cache_dir=tmp_path, download=tampering)
    assert hashlib.sha256(b"other bytes").hexdigest() not in lock.path.read_text()


def test_pip_download_trusts_the_ca_bundle_it_is_given(ws: Workspace, tmp_path: Path) -> None:
    # pip --isolated ignores PIP_CERT: behind a TLS-inspecting proxy it must hear --cert.
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    lock, pip = _written(ws), FakePip()
    for name, ca in (("a", None), ("b", bundle)):
        dest = tmp_path / name
        dest.mkdir()
        PipDownload(pip, ca_bundle=ca)(lock, lock.pins, index_url="http://p/simple/", dest=dest)
    without, with_ca = pip.calls
    assert "--cert" not in without
    assert with_ca[with_ca.index("--cert") + 1] == str(bundle)
    assert with_ca.index("--cert") > with_ca.index("--isolated")


def test_pip_download_gets_index_credentials_from_a_netrc_in_memory_only(
    ws: Workspace, tmp_path: Path
) -> None:
    lock, seen = _written(ws), dict[str, str]()
    secret = "canary-s3cr3t"  # noqa: S105 - a test canary
    netrc_text = ""

    def runner(
        args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        assert env is not None
        netrc = Path(env["NETRC"])
        seen.update(
            argv=" ".join(args), text=netrc.read_text(), at=str(netrc), file=str(netrc.readlink())
        )
        nonlocal netrc_text
        netrc_text = netrc.read_text()
        return ""

    dest = tmp_path / "dest"
    dest.mkdir()
    download = PipDownload(runner, credentials={"http://127.0.0.1:9/simple/": ("ci", secret)})
    download(lock, lock.pins, index_url="http://127.0.0.1:9/simple/", dest=dest)

    assert seen["text"] == f"machine 127.0.0.1 login ci password {secret}\n"
    assert seen["text"] == netrc_text  # pip can read it again (on a second 401)
    # No file on any disk: this process's anonymous memory file, gone with it.
    assert seen["at"].startswith(f"/proc/{os.getpid()}/fd/")
    assert seen["file"].startswith("/memfd:kiln-netrc")
    assert secret not in seen["argv"]  # the command line is logged
    assert not Path(seen["at"]).exists()  # closed once pip is done
