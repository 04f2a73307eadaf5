"""The local index's pypiserver keeps its folder's listing between requests
(``kiln._servers.pypi``): it parsed every file of the index for every simple page, so a
page cost time in proportion to the index (12 ms at 514 files) and a no-op release of 500
helpers spent 6 s on its 500 pages."""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path

# pypiserver's imports warn on Python 3.11 (cgi, crypt, bottle's old-style import hook):
# the index runs it in a process of its own, so only this test imports it.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pypiserver.config import Config

    from kiln._servers.pypi import ListedBackend

# Importing it put bottle's `bottle.ext` import hook (an old-style finder, without
# find_spec) on sys.meta_path: every later import in this process that reaches it warns
# (pandas' of pyarrow, in the tests of the helpers that share this worker), which this
# suite makes an error. The listing needs no bottle extension: the hook goes.
sys.meta_path[:] = [f for f in sys.meta_path if hasattr(f, "find_spec")]


def _backend(folder: Path) -> ListedBackend:
    return ListedBackend(Config.from_args(["run", "-a", ".", "-P", ".", str(folder)]))


def _touch(folder: Path, name: str) -> None:
    (folder / name).write_bytes(name.encode())


def _names(found: object) -> list[str]:
    return sorted(Path(p.fn).name for p in found)  # type: ignore[attr-defined]


def test_a_page_reads_the_listing_parsed_once(tmp_path: Path) -> None:
    for i in range(30):
        _touch(tmp_path, f"acme_h{i:03d}-0.1.0-py3-none-any.whl")
    _touch(tmp_path, "acme_h001-0.1.1-py3-none-any.whl")
    backend = _backend(tmp_path)

    for _ in range(5):
        assert _names(backend.find_project_packages("acme-h001")) == [
            "acme_h001-0.1.0-py3-none-any.whl",
            "acme_h001-0.1.1-py3-none-any.whl",
        ]
        assert _names(backend.find_project_packages("ACME_H002")) == [
            "acme_h002-0.1.0-py3-none-any.whl"
        ]
        assert list(backend.find_project_packages("nothing")) == []

    assert backend.parsed == 1
    assert len(list(backend.get_all_packages())) == 31
    assert backend.parsed == 1


def test_an_upload_or_a_removal_is_listed_at_once(tmp_path: Path) -> None:
    _touch(tmp_path, "acme_h000-0.1.0-py3-none-any.whl")
    backend = _backend(tmp_path)
    assert _names(backend.find_project_packages("acme-h000")) == [
        "acme_h000-0.1.0-py3-none-any.whl"
    ]

    _touch(tmp_path, "acme_h000-0.1.1-py3-none-any.whl")  # as pypiserver writes an upload
    (tmp_path / "sub").mkdir()
    _touch(tmp_path / "sub", "acme_h000-0.2.0.tar.gz")
    assert _names(backend.find_project_packages("acme-h000")) == [
        "acme_h000-0.1.0-py3-none-any.whl",
        "acme_h000-0.1.1-py3-none-any.whl",
        "acme_h000-0.2.0.tar.gz",
    ]
    assert backend.parsed == 2

    (tmp_path / "acme_h000-0.1.0-py3-none-any.whl").unlink()
    assert _names(backend.find_project_packages("acme-h000")) == [
        "acme_h000-0.1.1-py3-none-any.whl",
        "acme_h000-0.2.0.tar.gz",
    ]
    assert backend.parsed == 3


def test_a_page_hashes_the_files_as_they_are_now(tmp_path: Path) -> None:
    name = "acme_h000-0.1.0-py3-none-any.whl"
    _touch(tmp_path, name)
    backend = _backend(tmp_path)
    (first,) = backend.find_project_packages("acme-h000")
    before = backend.digest(first)
    (tmp_path / name).write_bytes(b"other bytes")  # the same name, other contents
    (again,) = backend.find_project_packages("acme-h000")
    assert backend.digest(again) != before
    assert backend.digest(again) == ("sha256=" + hashlib.sha256(b"other bytes").hexdigest())
