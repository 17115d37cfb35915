"""Text that reaches XML, BibTeX, HTML or e-mail is safe: every export of a paper full of the
characters XML 1.0 forbids, stored before ingest dropped them, is well formed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import bibtexparser
import feedparser
import pytest
from fastapi.testclient import TestClient

from conftest import topic_papers
from paperlens.api import create_app
from paperlens.config import Settings
from paperlens.exports import feed_document
from paperlens.library import ingest, open_library
from paperlens.papers import Paper, papers_from_records

FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
DIRTY = Paper(
    id="2401.00099", title="Protein\x00 folding\x0b at\ufffe scale\x1f with\x08 attention",
    abstract="We\x01 predict\x02 protein\x03 structures\x04 from\x05 sequences\x06 with\x07 attention\x0c and\uffff more.",
    authors=["Ada\x02 Lovelace", "Bo\x1b Author"], date="2024-02-02", categories=["q-bio.BM\x03"], popularity=100,
    extra={"note\x01": "x\x02"},
)
TITLE = "Protein folding at scale with attention"


def words(text: str) -> str:
    """Whitespace collapsed: a vertical tab or separator became a space beside another."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dirty") / "index"
    with open_library(Settings(index=folder, show_progress=False), create=True) as library:
        ingest(library, [*topic_papers(), DIRTY])  # Papers made in Python skip the readers' cleaning: an older store
        assert FORBIDDEN.search(library.store.get(DIRTY.id).paper.title)
    with TestClient(create_app(Settings(index=folder))) as client:
        user = client.post("/users", json={"name": "Ada"}).json()["id"]
        client.put(f"/users/{user}/collections/dirty")
        client.post(f"/users/{user}/collections/dirty/papers", json={"paper_id": DIRTY.id})
        client.user = user
        yield client


def _atom_ok(response) -> feedparser.FeedParserDict:
    assert response.status_code == 200, response.text
    assert not FORBIDDEN.search(response.text)
    ET.fromstring(response.content)  # well-formed XML
    parsed = feedparser.parse(response.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


def test_atom_feeds_of_users_and_collections(client):
    base = f"/users/{client.user}"
    feed = _atom_ok(client.get(f"{base}/feed.atom"))  # a new user's feed: the most popular papers, the dirty one first
    assert words(feed.entries[0].title) == TITLE and feed.entries[0].authors[0].name == "Ada Lovelace"
    assert _atom_ok(client.get(f"{base}/feed", params={"format": "atom"})).entries[0].title == feed.entries[0].title
    more = _atom_ok(client.get(f"{base}/collections/dirty/feed.atom"))
    assert f"because of “{TITLE}”" in words(more.entries[0].summary)


def test_bibtex_exports(client):
    for path, params in ((f"/users/{client.user}/feed.bib", {}), ("/search.bib", {"q": "protein folding"}),
                         (f"/users/{client.user}/collections/dirty/feed.bib", {})):
        response = client.get(path, params=params)
        assert response.status_code == 200 and not FORBIDDEN.search(response.text), path
        entries = bibtexparser.parse_string(response.text).entries
        assert entries and not bibtexparser.parse_string(response.text).failed_blocks
    search = bibtexparser.parse_string(client.get("/search.bib", params={"q": "protein folding"}).text)
    assert TITLE in [words(e.fields_dict["title"].value) for e in search.entries]


def test_digest_html_and_the_web_page(client):
    digest = feed_document(client.app.state.library, client.user, 5, "html")
    assert TITLE in words(digest.text()) and not FORBIDDEN.search(digest.text())
    for path in (f"/paper/{DIRTY.id}", "/?q=protein+folding"):
        page = client.get(path)
        assert page.status_code == 200 and not FORBIDDEN.search(page.text), path
        assert TITLE in words(page.text)


def test_ingest_drops_the_characters_from_new_papers():
    papers, skipped = papers_from_records([{**DIRTY.to_dict(), "id": "2401.00098"}])
    assert not skipped
    paper = papers[0]
    assert (paper.title, paper.authors, paper.categories, paper.extra) == (
        TITLE, ["Ada Lovelace", "Bo Author"], ["q-bio.BM"], {"note": "x"})
    assert not FORBIDDEN.search(paper.abstract)
