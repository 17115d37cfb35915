"""Semantic Scholar's own Python client, unmodified, against a live `paperlens serve` (api_s2.py)."""

from __future__ import annotations

import httpx
import pytest
from semanticscholar import SemanticScholar
from semanticscholar.SemanticScholarException import (
    BadQueryParametersException,
    ObjectNotFoundException,
)

from conftest import topic_papers
from paperlens.config import Settings
from paperlens.library import ingest, open_library
from paperlens.papers import papers_from_records
from serverproc import ServerProcess

S2_SHA = "649def34f8be52c8b66281af98ae884c09aef38b"
RECORDS = [
    # as the arXiv snapshot keeps it: the DOI in extra
    {"id": "2404.00007", "title": "Ocean circulation under a warming climate",
     "abstract": "Simulations show the Atlantic overturning circulation weakens as the climate warms.",
     "date": "2024-04-01", "categories": ["physics.ao-ph"], "doi": "10.1234/Ocean.2024"},
    # as a Semantic Scholar record has it: sha, corpus id, external ids, authors as objects
    {"paperId": S2_SHA, "corpusId": 4242, "externalIds": {"DOI": "10.5555/glacier", "MAG": "777"},
     "title": "Glacier retreat measured from satellite images",
     "abstract": "Satellite imagery over two decades measures the retreat of mountain glaciers.",
     "authors": [{"authorId": "1", "name": "C. Author"}], "date": "2021-08-09", "citationCount": 12},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s2") / "index"
    extra, skipped = papers_from_records(RECORDS)
    assert not skipped
    with open_library(Settings(index=folder, show_progress=False), create=True) as library:
        ingest(library, topic_papers() + extra)
    server = ServerProcess(folder, folder.parent / "serve.log")
    yield server
    server.kill()


@pytest.fixture(scope="module")
def s2(server):
    return SemanticScholar(api_url=server.url, timeout=60, retry=False)


def test_recommendations_from_lists(s2):
    papers = s2.get_recommended_papers_from_lists(["arXiv:2401.00001v2"], ["ARXIV:2402.00003"], limit=3,
                                                  fields=["title", "year", "authors", "externalIds"])
    assert papers[0].title == "Protein structure prediction at scale"
    assert papers[0].year == 2024 and papers[0].externalIds["ArXiv"] == "2401.00002"
    assert [a.name for a in papers[0].authors] == ["A. Author", "B. Author"]
    assert len(papers) == 3 and not {"2401.00001", "2402.00003"} & {p.paperId for p in papers}


def test_recommendations_for_one_paper(s2):
    papers = s2.get_recommended_papers("2403.00005", limit=2, pool_from="all-cs")
    assert papers[0].title == "Sim-to-real transfer for robotic manipulation" and len(papers) == 2


def test_a_paper_by_its_arxiv_id_with_the_clients_default_fields(s2):
    paper = s2.get_paper("arXiv:2401.00002")
    assert paper.paperId == "2401.00002" and paper.title == "Protein structure prediction at scale"
    assert paper.fieldsOfStudy == ["Biology", "Computer Science"] and paper.publicationDate.year == 2024
    assert paper.citations == [] and paper.tldr is None
    assert "@misc" in paper.citationStyles["bibtex"]


def test_a_batch_by_every_kind_of_id_with_null_for_unknown_ones(s2):
    ids = ["2401.00001", "DOI:10.1234/ocean.2024", "CorpusId:4242", S2_SHA, "DOI:10.5555/GLACIER", "arXiv:9999.99999"]
    papers, missing = s2.get_papers(ids, fields=["title", "externalIds", "citationCount", "corpusId"], return_not_found=True)
    assert [p.title for p in papers] == ["Protein folding with deep networks", "Ocean circulation under a warming climate",
                                         *["Glacier retreat measured from satellite images"] * 3]
    assert missing == ["arXiv:9999.99999"]
    glacier = papers[2]
    assert glacier.citationCount == 12 and glacier.corpusId == 4242
    assert glacier.externalIds == {"DOI": "10.5555/glacier", "MAG": "777", "CorpusId": 4242}


def test_paperlens_own_routes_take_the_same_ids(server):
    """One resolver (library.resolve_ids) behind S2's routes and paperlens' own."""
    for paper_id in ("CorpusId:4242", "DOI:10.5555/GLACIER", "https://doi.org/10.5555/glacier", S2_SHA, "MAG:777"):
        response = httpx.get(f"{server.url}/papers/{paper_id}", timeout=60)
        assert response.status_code == 200 and response.json()["title"] == "Glacier retreat measured from satellite images", paper_id
    assert httpx.get(f"{server.url}/papers/10.1234/OCEAN.2024", timeout=60).json()["id"] == "2404.00007"


def test_search_follows_pages_and_filters(s2):
    results = s2.search_paper("protein structure", limit=3, fields=["title", "year"])
    titles = [p.title for p in results]  # iterating fetches every page
    assert len(titles) == len(set(titles)) == 8
    assert set(titles[:2]) == {"Protein folding with deep networks", "Protein structure prediction at scale"}
    in_2025 = s2.search_paper("robot", year="2025", fields=["title", "year"])
    assert {p.year for p in in_2025} == {2025} and len(list(in_2025)) == 2
    biology = s2.search_paper("structure", fields_of_study=["Biology"], publication_date_or_year="2024-02:2024-12")
    assert [p.title for p in biology] == ["Protein structure prediction at scale"]


def test_a_field_of_study_no_paper_has_is_an_empty_page(server):
    response = httpx.get(server.url + "/graph/v1/paper/search", params={"query": "structure", "fieldsOfStudy": "Medicine"}, timeout=60)
    assert response.status_code == 200 and response.json() == {"total": 0, "offset": 0, "data": []}


def test_errors_in_semantic_scholars_shape(s2, server):
    with pytest.raises(ObjectNotFoundException):
        s2.get_paper("arXiv:9999.99999")
    with pytest.raises(BadQueryParametersException, match="bogus"):
        s2.get_paper("2401.00001", fields=["title", "bogus"])
    for method, path, kwargs, status in [
        ("post", "/recommendations/v1/papers/", {"json": {"positivePaperIds": ["nope"]}}, 404),
        ("post", "/recommendations/v1/papers", {"json": {"positivePaperIds": []}}, 400),
        ("post", "/recommendations/v1/papers", {"json": {"positivePaperIds": ["2401.00001"]}, "params": {"limit": 501}}, 400),
        ("get", "/recommendations/v1/papers/forpaper/2401.00001", {"params": {"from": "everything"}}, 400),
        ("post", "/graph/v1/paper/batch/", {"json": {"ids": "2401.00001"}}, 400),
        ("get", "/graph/v1/paper/search/", {"params": {"query": "x", "offset": 950, "limit": 100}}, 400),
        ("get", "/graph/v1/paper/search", {"params": {"query": "x", "year": "20x4"}}, 400),
        ("get", "/graph/v1/paper/DOI:10.1/none", {}, 404),
    ]:
        response = getattr(httpx, method)(server.url + path, timeout=60, **kwargs)
        assert response.status_code == status and set(response.json()) == {"error"}, (path, response.text)


def test_paths_with_and_without_a_trailing_slash_answer_alike(server):
    for path in ("/graph/v1/paper/2401.00001", "/graph/v1/paper/search?query=protein&limit=2"):
        plain = httpx.get(server.url + path, timeout=60)
        slashed = httpx.get(server.url + path.replace("?", "/?") if "?" in path else server.url + path + "/", timeout=60)
        assert plain.status_code == slashed.status_code == 200 and plain.json() == slashed.json()
    assert httpx.get(server.url + "/graph/v1/paper/2401.00001").json() == {"paperId": "2401.00001", "title": "Protein folding with deep networks"}
