"""An image lock for several platforms (``platforms``): one resolution per platform with
uv's ``--python-platform``, the same pins for each, every platform's hashes; a lock for
one platform is what it always was."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kiln._errors import CommandFailed, ConfigError
from kiln._lock.format import BasePin, lock_path, parse_lock
from kiln._lock.inputs import check_fresh, inputs_hash
from kiln._lock.make import Uv, make_lock
from kiln._workspace.discovery import discover
from kiln._workspace.model import Workspace
from tests import factory
from tests.unit.fakes import KFP, NUMPY, UPSTREAM, FakeIndex, FakeSdists, FakeUv, fake_sha

BASE = BasePin("python:3.11-slim", "digest", "sha256:" + "b" * 64)
X86, ARM = "x86_64-manylinux_2_28", "aarch64-manylinux_2_28"
WHERE = Path("images/base/requirements.lock")


def _workspace(root: Path, platforms: str | None) -> Workspace:
    factory.sample(root)
    if platforms is not None:
        pyproject = root / "pyproject.toml"
        text = pyproject.read_text().replace('org = "acme"\n', f'org = "acme"\n{platforms}\n')
        pyproject.write_text(text + '\n[tool.kiln.os]\narchitectures = ["amd64", "arm64"]\n')
    return discover(root)


@pytest.fixture
def one(tmp_path: Path) -> Workspace:
    return _workspace(tmp_path / "one", None)


@pytest.fixture
def two(tmp_path: Path) -> Workspace:
    return _workspace(tmp_path / "two", 'platforms = ["linux/amd64", "linux/arm64"]')


def _pin(name: str, version: str, *hashes: str) -> str:
    lines = [f"{name}=={version}", *(f"    --hash=sha256:{h}" for h in hashes)]
    return " \\\n".join(lines) + "\n    # via -r requirements.in\n"


@dataclass
class PerPlatformUv(FakeUv):
    """uv answering each --python-platform with its own closure (default: NUMPY)."""

    closures: Mapping[str, str] = field(default_factory=dict)

    def __call__(
        self, args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        self.closure = self.closures.get(args[args.index("--python-platform") + 1], NUMPY)
        return super().__call__(args, cwd=cwd, env=env)


def _wheels(*files: tuple[str, str]) -> FakeIndex:
    """Upstream serving kfp's wheel and ``files`` (filename, sha256) of numpy."""
    index = FakeIndex(url=UPSTREAM)
    index.published["kfp"] = {"kfp-2.17.3-py3-none-any.whl": fake_sha("kfp", "2.17.3")}
    index.published["numpy"] = dict(files)
    return index


ANY = ("numpy-1.0-py3-none-any.whl", fake_sha("numpy", "1.0"))


def _lock(ws: Workspace, uv: FakeUv, pages: FakeIndex | None = None, **kw: object) -> str:
    return make_lock(
        ws, ws.image("base"), kfp_version="2.17.3", uv=Uv(uv, "uv", UPSTREAM), base=BASE,
        pages=pages or _wheels(ANY), sdists=kw.pop("sdists", FakeSdists()), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _platforms_asked(uv: FakeUv) -> list[tuple[str, bool]]:
    return [(a[a.index("--python-platform") + 1], "--no-deps" in a) for a, _, _ in uv.calls]


def test_one_platform_resolves_once_and_its_lock_says_nothing_new(one: Workspace) -> None:
    uv = FakeUv()
    text = _lock(one, uv)
    assert _platforms_asked(uv) == [(X86, False), (X86, True)]
    assert "# format = 1\n" in text
    assert "platforms" not in text
    lock = parse_lock(WHERE, text)
    assert (lock.platform, lock.platforms) == (X86, (X86,))
    # The inputs hash of a lock for one platform is what kiln wrote before platforms.
    assert inputs_hash(one, one.image("base"), "2.17.3") == (
        "sha256:" + hashlib.sha256(
            b'{"base": "os", "index": "https://upstream.invalid/simple", "kfp": "2.17.3", '
            b'"platform": "x86_64-manylinux_2_28", "python": "3.11", "requirements": '
            b'["numpy>=1.26"]}'
        ).hexdigest()
    )  # fmt: skip


def test_each_platform_is_resolved_over_the_first_ones_versions(two: Workspace) -> None:
    path = lock_path(two.image("base"))
    uv = FakeUv()
    text = _lock(two, uv, upgrade=["numpy"])
    # The first platform first (closure, then kfp), then arm64 over its output, not upgraded.
    assert _platforms_asked(uv) == [(X86, False), (ARM, False), (X86, True), (ARM, True)]
    assert "--upgrade-package" in uv.calls[0][0]
    assert "--upgrade-package" not in uv.calls[1][0]
    assert uv.seen_outputs[1] == NUMPY
    assert "# format = 3\n" in text
    assert f'# platform = "{X86}"\n# platforms = ["{X86}", "{ARM}"]\n' in text
    lock = parse_lock(path, text)
    assert lock.platforms == (X86, ARM)
    assert [(p.name, p.version) for p in lock.pins] == [("numpy", "1.0"), ("kfp", "2.17.3")]
    check_fresh(lock, two, two.image("base"), "2.17.3")


def test_a_lock_for_one_platform_is_stale_for_two(one: Workspace, two: Workspace) -> None:
    single = parse_lock(WHERE, _lock(one, FakeUv()))
    with pytest.raises(ConfigError, match=r"stale: .* run `kiln lock base`"):
        check_fresh(single, two, two.image("base"), "2.17.3")


def test_every_platforms_hashes_are_allowed(two: Workspace) -> None:
    x86, arm, shared = "1" * 64, "2" * 64, fake_sha("numpy", "1.0")
    uv = PerPlatformUv(closures={X86: _pin("numpy", "1.0", shared, x86),
                                 ARM: _pin("numpy", "1.0", arm, shared)})  # fmt: skip
    text = _lock(two, uv)
    numpy = parse_lock(WHERE, text).pins[0]
    assert numpy.hashes == tuple(sorted((x86, arm, shared)))
    assert _pin("numpy", "1.0", *sorted((x86, arm, shared))) in text  # uv's comment kept


def test_versions_that_differ_name_the_requirement_and_the_fix(two: Workspace) -> None:
    uv = PerPlatformUv(closures={ARM: _pin("numpy", "0.9", fake_sha("numpy", "0.9"))})
    with pytest.raises(ConfigError) as err:
        _lock(two, uv)
    assert str(err.value) == (
        f"{lock_path(two.image('base'))}: numpy resolves to 1.0 on {X86} and to 0.9 on {ARM}: "
        "a lock pins one version for every platform. Pin one that both offer in "
        f'{two.image("base").path / "image.toml"} `requirements` (e.g. "numpy==1.0"), '
        "or drop linux/arm64 from platforms"
    )


def test_a_project_needed_on_one_platform_only_is_named(two: Workspace) -> None:
    extra = _pin("armonly", "2.0", "3" * 64)
    uv = PerPlatformUv(closures={ARM: NUMPY + extra})
    with pytest.raises(ConfigError, match=rf"armonly==2.0 is required on {ARM} only"):
        _lock(two, uv)


def test_an_sdist_only_requirement_on_a_foreign_platform_is_an_error(two: Workspace) -> None:
    wheel, sdist = "4" * 64, "5" * 64
    uv = PerPlatformUv(closures={p: _pin("numpy", "1.0", wheel, sdist) for p in (X86, ARM)})
    pages = _wheels(
        ("numpy-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", wheel),
        ("numpy-1.0.tar.gz", sdist),
    )
    sdists = FakeSdists()
    with pytest.raises(ConfigError) as err:
        _lock(two, uv, pages, sdists=sdists)
    assert str(err.value) == (
        f"{lock_path(two.image('base'))}: numpy==1.0 has no wheel for Python 3.11 on {ARM} "
        "(linux/arm64), only its sdist numpy-1.0.tar.gz: kiln cannot build it for a foreign "
        "platform without emulation. Pin a version of numpy that ships such a wheel, or drop "
        "linux/arm64 from platforms (`kiln lock base` again after)"
    )
    assert sdists.asked == []  # the first platform has a wheel: nothing was built


def test_a_pure_wheel_built_from_an_sdist_serves_every_platform(two: Workspace) -> None:
    sdist = fake_sha("numpy", "1.0")
    pages = _wheels(("numpy-1.0.tar.gz", sdist))
    sdists = FakeSdists()
    text = _lock(two, FakeUv(), pages, sdists=sdists)
    assert [asked[0] for asked in sdists.asked] == ["numpy==1.0"]  # built once, on this machine
    assert "# format = 3\n" in text
    assert "# kiln: built numpy-1.0-py3-none-any.whl" in text


def test_a_foreign_platform_with_neither_wheel_nor_sdist_is_named(two: Workspace) -> None:
    pages = _wheels(("numpy-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", fake_sha("numpy", "1.0")))
    with pytest.raises(
        ConfigError, match=rf"numpy==1.0 has neither a wheel for Python 3.11 on {ARM}"
    ):
        _lock(two, FakeUv(), pages)


@pytest.mark.parametrize(
    "value",
    [f'["{X86}"]', f'["{ARM}", "{X86}"]', '"x"', "[1, 2]"],
)
def test_a_header_whose_platforms_kiln_did_not_write_is_refused(two: Workspace, value: str) -> None:
    text = _lock(two, FakeUv())
    edited = re.sub(r"# platforms = .*", f"# platforms = {value}", text)
    with pytest.raises(ConfigError, match=r"is not a list of several platforms starting with"):
        parse_lock(WHERE, edited)


def test_a_lock_an_older_kiln_wrote_reads_as_one_platform() -> None:
    text = (
        '# [kiln]\n# format = 1\n# inputs = "sha256:x"\n# python = "3.11"\n'
        f'# platform = "{X86}"\n# index = "{UPSTREAM}"\n# kfp = "2.17.3"\n# base = "os"\n'
        f'# base-os = "images/os.lock"\n\n{NUMPY}\n# kiln: --no-deps\n{KFP}'
    )
    lock = parse_lock(WHERE, text)
    assert (lock.platform, lock.platforms) == (X86, (X86,))
    assert [p.name for p in lock.pins] == ["numpy", "kfp"]


def test_a_platform_uv_cannot_resolve_is_named_with_the_fix(two: Workspace) -> None:
    class NoArm(FakeUv):
        def __call__(
            self, args: Sequence[str], *, cwd: Path | None = None,
            env: Mapping[str, str] | None = None,
        ) -> str:  # fmt: skip
            if ARM in args:
                raise CommandFailed("`uv pip compile` failed: numpy has no wheels", returncode=1)
            return super().__call__(args, cwd=cwd, env=env)

    with pytest.raises(CommandFailed) as err:
        _lock(two, NoArm())
    assert str(err.value) == (
        "`uv pip compile` failed: numpy has no wheels\n"
        f"{lock_path(two.image('base'))}: resolving for {ARM} (linux/arm64) failed, where {X86} "
        "resolved: if uv says a requirement has no wheel for it, pin a version that ships one, "
        "or drop linux/arm64 from platforms"
    )
    assert err.value.returncode == 1
