"""The HTTP API through the front door, on the real demo index."""

import pytest
from fastapi.testclient import TestClient

from conftest import topic_papers
from paperlens.api import create_app
from paperlens.config import Settings


@pytest.fixture(scope="module")
def client(demo_index_dir):
    with TestClient(create_app(Settings(index=demo_index_dir))) as client:
        yield client


@pytest.fixture()
def fresh_client(tmp_path):
    with TestClient(create_app(Settings(index=tmp_path / "api-index"))) as client:
        yield client


def test_health(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["papers"] == 53 and body["layout"] == "flat"
    assert body["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_search_by_title_returns_that_paper_first(client, demo_papers):
    hits = [client.get("/search", params={"q": p.title, "k": 1}).json()["results"][0]["id"] for p in demo_papers]
    assert sum(h == p.id for h, p in zip(hits, demo_papers)) / len(demo_papers) >= 0.95


def test_similar_by_id_and_by_text(client, demo_papers):
    paper = demo_papers[3]
    results = client.get(f"/papers/{paper.id}/similar", params={"k": 5}).json()["results"]
    assert len(results) == 5 and paper.id not in {r["id"] for r in results}
    results = client.post("/similar", json={"text": paper.abstract, "k": 3}).json()["results"]
    assert results[0]["id"] == paper.id


def test_paper_and_errors(client, demo_papers):
    paper = demo_papers[0]
    assert client.get(f"/papers/{paper.id}").json()["title"] == paper.title
    missing = client.get("/papers/no-such-paper")
    assert missing.status_code == 404 and "no-such-paper" in missing.json()["detail"]
    assert client.get("/papers/no-such-paper/similar").status_code == 404
    for params in ({"q": ""}, {"q": "x", "k": 0}, {"q": "x", "k": 100000}, {"q": "x", "k": "ten"}, {}, {"q": "x", "since": "yesterday"}):
        response = client.get("/search", params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"]
    assert client.post("/similar", json={"text": ""}).status_code == 422
    assert client.post("/recommend", json={"positive": []}).status_code == 422
    assert client.post("/recommend", json={"positive": ["nope"]}).status_code == 404
    assert client.post("/recommend", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422


def test_recommend_leaves_out_inputs(client, demo_papers):
    liked = [demo_papers[0].id, demo_papers[1].id]
    body = client.post("/recommend", json={"positive": liked, "negative": [{"id": demo_papers[2].id, "weight": 2}], "k": 5}).json()
    ids = [r["id"] for r in body["results"]]
    assert len(ids) == 5 and not set(ids) & {*liked, demo_papers[2].id}


def test_filters_by_date(client):
    results = client.get("/search", params={"q": "language models", "k": 50, "since": "2025-06-01"}).json()["results"]
    assert results and all(r["date"] >= "2025-06-01" for r in results)


def test_ingest_search_delete_cycle(fresh_client):
    papers = [p.to_dict() for p in topic_papers()]
    created = fresh_client.post("/papers", json={"papers": papers})
    assert created.status_code == 201 and created.json()["added"] == 6
    again = fresh_client.post("/papers", json=papers).json()
    assert again["added"] == 0 and again["unchanged"] == 6
    no_id = fresh_client.post("/papers", json=[{"title": "Ocean tides", "abstract": "The moon raises tides in the ocean."}]).json()
    assert no_id["ids"][0].startswith("h")
    assert fresh_client.get("/search", params={"q": "tides of the ocean", "k": 1}).json()["results"][0]["id"] == no_id["ids"][0]
    assert fresh_client.delete("/papers/2402.00003").json() == {"deleted": "2402.00003"}
    assert fresh_client.delete("/papers/2402.00003").status_code == 404
    ids = [r["id"] for r in fresh_client.get("/search", params={"q": "dark matter galaxy", "k": 10}).json()["results"]]
    assert "2402.00003" not in ids and fresh_client.get("/health").json()["papers"] == 6


def test_bad_papers_are_refused_whole(fresh_client):
    response = fresh_client.post("/papers", json=[{"title": "ok", "abstract": "fine"}, {"title": "", "abstract": ""}])
    assert response.status_code == 422 and "no title and no abstract" in response.json()["detail"]
    assert fresh_client.post("/papers", json=[{"title": 5}]).status_code == 422
    assert fresh_client.post("/papers", json=[{"id": "../etc/passwd", "title": "x"}]).status_code == 422
    assert fresh_client.post("/papers", json=[]).status_code == 422
    assert fresh_client.get("/health").json()["papers"] == 0


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    assert "/search" in client.get("/openapi.json").json()["paths"]


def test_docs_pages_load_their_scripts_from_this_server(client):
    """Offline, a page that loads Swagger UI or ReDoc from a CDN is blank."""
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources and all(src.startswith("/") for src in sources), (page, sources)
        for src in sources:
            assert client.get(src).status_code == 200, src
    assert "swagger-ui-bundle.js" in client.get("/docs").text and "redoc.standalone.js" in client.get("/redoc").text


def test_an_unknown_category_says_so(client):
    response = client.get("/search", params={"q": "video", "category": "cs.CVV"})
    assert response.status_code == 422
    assert response.json()["detail"] == "no paper in this index has the category 'cs.CVV'; its papers have no categories"


def test_a_size_error_names_the_paper_by_position_and_title(fresh_client):
    papers = [{"title": "Fine", "abstract": "short"}, {"title": "Too long", "abstract": "word " * 12_000}]
    response = fresh_client.post("/papers", json=papers)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("paper 2 (“Too long”): abstract is 59999 characters")


def test_authors_are_one_shape_everywhere(client, fresh_client):
    """A list of names with author_count beside it, in a hit and in the paper; the display string is the page's."""
    hit = client.get("/search", params={"q": "financial sentiment analysis trading", "k": 1}).json()["results"][0]
    assert (hit["authors"], hit["author_count"]) == ([], 3)
    paper = client.get(f"/papers/{hit['id']}").json()
    assert (paper["authors"], paper["author_count"]) == ([], 3)
    assert "3 authors" in client.get(f"/paper/{hit['id']}").text
    named = {"id": "2401.00031", "title": "Named authors", "abstract": "A paper whose authors are named.",
             "authors": "Ada Lovelace, Alan Turing and Grace Hopper"}
    assert fresh_client.post("/papers", json=[named]).status_code == 201
    hit = fresh_client.get("/search", params={"q": "named authors", "k": 1}).json()["results"][0]
    assert (hit["authors"], hit["author_count"]) == (["Ada Lovelace", "Alan Turing", "Grace Hopper"], 3)
    assert fresh_client.get("/papers/2401.00031").json()["author_count"] == 3
    assert "Ada Lovelace, Alan Turing and Grace Hopper" in fresh_client.get("/?q=named+authors").text
