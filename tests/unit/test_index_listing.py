"""An index's one-page listing of all its files (pypiserver's ``/packages/``): ``files_of``
reads it instead of hundreds of simple pages when the caller names the files it will look
up; a file the listing lacks is still asked for on its project's simple page. Fake
transports; the real pypiserver's listing is read in tests/e2e/test_release_library.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import requests

from kiln._servers.index import LISTING_MIN_PROJECTS, IndexClient, files_for, files_of
from tests.unit.fakes import FakeIndex
from tests.unit.test_credentials import FakeTransport, session_with

N = LISTING_MIN_PROJECTS


def _sha(i: int) -> str:
    return f"{i:064x}"


def _wheel(project: str) -> str:
    return f"{project.replace('-', '_')}-1.0-py3-none-any.whl"


@dataclass
class ListingIndex(FakeIndex):
    """A FakeIndex with a one-page listing of ``published`` (None: it has none); counts
    the pages and listings asked for."""

    has_listing: bool = True
    pages: list[str] = field(default_factory=list)
    listings: int = 0

    def files(self, project: str) -> Mapping[str, str]:
        self.pages.append(project)
        return super().files(project)

    def listing(self) -> Mapping[str, str] | None:
        self.listings += 1
        if not self.has_listing:
            return None
        return {f: sha for files in self.published.values() for f, sha in files.items()}


def _published(count: int) -> dict[str, dict[str, str]]:
    return {f"p{i:03d}": {_wheel(f"p{i:03d}"): _sha(i)} for i in range(count)}


def _wanted(projects: list[str]) -> list[tuple[str, str]]:
    return [(p, _wheel(p)) for p in projects]


def test_the_listing_answers_for_every_file_it_lists_and_no_page_is_read() -> None:
    index = ListingIndex(published=_published(N))
    projects = sorted(index.published)

    got = files_of(index, projects, wanted=_wanted(projects))

    assert index.listings == 1
    assert index.pages == []
    assert got == index.published
    assert list(got) == projects


def test_a_file_the_listing_lacks_is_asked_for_on_its_projects_page() -> None:
    index = ListingIndex(published=_published(N + 1))
    projects = sorted(index.published)
    wanted = _wanted(projects)
    wanted.append(("p000", "p000-2.0.tar.gz"))  # not published: the page must say so

    got = files_of(index, projects, wanted=wanted)

    assert index.pages == ["p000"]  # that project only; the rest from the listing
    assert got["p000"] == index.published["p000"]
    assert got["p001"] == {_wheel("p001"): _sha(1)}


def test_below_the_threshold_or_without_wanted_files_pages_are_read() -> None:
    few = ListingIndex(published=_published(N - 1))
    projects = sorted(few.published)
    assert files_of(few, projects, wanted=_wanted(projects)) == few.published
    assert (few.listings, len(few.pages)) == (0, N - 1)

    whole = ListingIndex(published=_published(N))  # the dev release reads whole pages
    projects = sorted(whole.published)
    assert files_of(whole, projects) == whole.published
    assert (whole.listings, len(whole.pages)) == (0, N)


def test_an_index_without_a_listing_is_read_page_by_page() -> None:
    index = ListingIndex(published=_published(N), has_listing=False)
    projects = sorted(index.published)

    got = files_of(index, projects, wanted=_wanted(projects))

    assert index.listings == 1
    assert sorted(index.pages) == projects
    assert got == index.published


# ---------------------------------------------------------------- IndexClient.listing()
def _listing_html(links: list[tuple[str, str]]) -> bytes:
    """pypiserver 2.4's /packages/ page for ``links`` (filename, fragment)."""
    rows = "".join(
        f'            <a href="/packages/{name}{fragment}">{name}</a><br>\n'
        for name, fragment in links
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n    <head>\n        <meta charset="utf-8">\n'
        "        <title>Index of packages</title>\n    </head>\n    <body>\n"
        f"        <h1>Index of packages</h1>\n{rows}    </body>\n</html>\n"
    ).encode()


def _client(answer: tuple[int, dict[str, str], bytes]) -> tuple[IndexClient, FakeTransport]:
    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        assert request.url == "http://index.test/packages/"
        return answer

    transport = FakeTransport(handler)
    return IndexClient("http://index.test", session=session_with(transport)), transport


HTML = {"Content-Type": "text/html; charset=UTF-8"}


def test_the_client_reads_pypiservers_listing() -> None:
    links = [
        ("acme_a-1.0-py3-none-any.whl", f"#sha256={_sha(1)}"),
        ("acme-a-1.0.tar.gz", f"#sha256={_sha(2)}"),
        ("twice-1.0-py3-none-any.whl", f"#sha256={_sha(3)}"),
        ("twice-1.0-py3-none-any.whl", f"#sha256={_sha(4)}"),  # which is it? neither
    ]
    client, transport = _client((200, HTML, _listing_html(links)))

    assert client.listing() == {
        "acme_a-1.0-py3-none-any.whl": _sha(1),
        "acme-a-1.0.tar.gz": _sha(2),
    }
    assert transport.lines() == ["GET http://index.test/packages/"]


def test_no_listing_is_asked_for_again_and_a_page_without_digests_is_none() -> None:
    client, transport = _client((404, {}, b"Not Found"))
    assert client.listing() is None
    assert client.listing() is None
    assert len(transport.seen) == 1  # an index without one is not asked again

    unhashed = _listing_html([("acme_a-1.0-py3-none-any.whl", "")])
    client, transport = _client((200, HTML, unhashed))
    assert client.listing() is None
    assert client.listing() is None
    assert len(transport.seen) == 1

    client, transport = _client((503, {}, b""))  # failing now: the pages will say so
    assert client.listing() is None
    assert client.listing() is None
    assert len(transport.seen) > 1


def test_files_for_asks_for_the_projects_of_its_pairs_in_their_order() -> None:
    index = ListingIndex(published=_published(N))
    pairs = _wanted(sorted(index.published, reverse=True))

    got = files_for(index, iter(pairs))  # read once: a generator is enough

    assert list(got) == [project for project, _ in pairs]
    assert got == index.published
    assert (index.listings, index.pages) == (1, [])
