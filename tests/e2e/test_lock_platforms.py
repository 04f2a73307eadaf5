"""An image lock for linux/amd64 and linux/arm64, resolved for real: uv against PyPI
for the example's analytics image (numpy, pandas, matplotlib), in process (the OS lock
is not locked again for arm64: that is tests/e2e/test_os_arm64.py's)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import uv

from kiln._lock.format import BasePin, Built, Pin, lock_path, parse_lock
from kiln._lock.inputs import OS_BASE
from kiln._lock.make import Uv, make_lock
from kiln._lock.tags import supported_tags, wheels_for
from kiln._util.cmd import call
from kiln._wheels.wheelhouse import SimplePages
from kiln._workspace.discovery import discover
from tests.e2e.conftest import copy_project

pytestmark = pytest.mark.e2e

ARM = "aarch64-manylinux_2_28"


class NoSdists:
    """The example builds nothing from an sdist: a lock asking to is a failure here."""

    def lock(
        self, lock_file: Path, pin: Pin, sdist: tuple[str, str], *, python: str, platform: str,
        backend: tuple[str, ...] | None,
    ) -> Built:  # fmt: skip
        raise AssertionError(f"{pin.requirement} built from {sdist[0]}")


def _header_and_body(text: str) -> tuple[list[str], str]:
    head, _, body = text.partition("\n\n")
    return head.splitlines(), body


def _lock(root: Path, pages: SimplePages) -> str:
    ws = discover(root)
    image = ws.image("analytics")
    kfp = parse_lock(lock_path(image), lock_path(image).read_text()).kfp
    return make_lock(
        ws, image, kfp_version=kfp, uv=Uv(call, uv.find_uv_bin(), ws.upstream_index),
        base=BasePin(OS_BASE, "os", "images/os.lock"), pages=pages, sdists=NoSdists(),
    )  # fmt: skip


def test_the_analytics_lock_covers_amd64_and_arm64_with_the_same_pins(tmp_path: Path) -> None:
    copy_project(tmp_path)  # made for linux/amd64 and linux/arm64, as committed
    committed = (tmp_path / "images" / "analytics" / "requirements.lock").read_text()
    pages = SimplePages("https://pypi.org/simple")
    double = _lock(tmp_path, pages)
    assert double == committed  # both platforms: byte for byte the committed lock

    # The same repo made for linux/amd64 alone: the lock it would have without arm64.
    pyproject = tmp_path / "pyproject.toml"
    text = pyproject.read_text()
    both = 'platforms = ["linux/amd64", "linux/arm64"]\n'
    assert both in text
    pyproject.write_text(text.replace(both, 'platforms = ["linux/amd64"]\n'))
    single = _lock(tmp_path, pages)

    # The same pins and hashes (uv hashes every file of a version); the header says more.
    single_head, single_body = _header_and_body(single)
    double_head, double_body = _header_and_body(double)
    assert double_body == single_body
    added = [line for line in double_head if line not in single_head]
    assert added[0] == "# format = 3"
    assert added[1].startswith("# inputs = ")
    assert added[2:] == [f'# platforms = ["x86_64-manylinux_2_28", "{ARM}"]']
    lock = parse_lock(lock_path(discover(tmp_path).image("analytics")), double)
    assert lock.platforms == ("x86_64-manylinux_2_28", ARM)

    # Each compiled project installs on arm64 from a wheel whose hash the lock allows.
    tags = supported_tags("3.11", ARM)
    native = {"numpy", "pandas", "matplotlib", "contourpy", "kiwisolver", "pillow"}
    pins = {p.name: p for p in lock.pins}
    assert native <= set(pins)
    for name in sorted(native):
        pin = pins[name]
        arm_wheels = wheels_for(pages.files(name), name, pin.version, tags)
        allowed: Sequence[str] = [f for f, sha in arm_wheels.items() if sha in pin.hashes]
        assert any("aarch64" in f for f in allowed), (name, sorted(arm_wheels))
