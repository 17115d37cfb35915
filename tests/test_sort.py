"""sort=date and sort=popularity reorder the relevant papers (the top max(k, sort_pool) by relevance), nothing else."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import topic_papers
from paperlens.api import create_app
from paperlens.cli import main
from paperlens.config import Settings
from paperlens.errors import InvalidInput
from paperlens.library import ingest, open_library
from paperlens.papers import Paper
from paperlens.search import search_text, similar_to_paper

POOL = 4


@pytest.fixture()
def sort_library(tmp_path):
    papers = [*topic_papers(),
              Paper("u1", "Undated protein folding notes", "Notes on protein folding and structure prediction with networks.", popularity=30),
              Paper("t1", "Protein design with diffusion", "Diffusion models design new protein structures.", date="2025-01-01", popularity=5)]
    with open_library(Settings(show_progress=False, sort_pool=POOL), tmp_path / "index", create=True) as library:
        ingest(library, papers)
        yield library


def test_sort_by_date_orders_only_the_relevant_papers(sort_library):
    relevant = search_text(sort_library, "protein structure", k=POOL)
    by_date = search_text(sort_library, "protein structure", k=POOL, sort="date")
    assert {h.id for h in by_date} == {h.id for h in relevant}  # the same papers: the top POOL by relevance
    dated = [h.date for h in by_date if h.date]
    assert dated == sorted(dated, reverse=True) and by_date[-1].date is None  # newest first, undated last
    assert "u1" in {h.id for h in relevant}
    # k below the pool: the newest of the pool, not the newest of the k most relevant
    assert [h.id for h in search_text(sort_library, "protein structure", k=2, sort="date")] == [h.id for h in by_date[:2]]
    # robots and galaxies are newer or older, but not relevant: never listed
    assert not {"2403.00005", "2403.00006"} & {h.id for h in by_date}


def test_sort_by_popularity_keeps_relevance_order_on_ties(sort_library):
    relevant = search_text(sort_library, "protein structure", k=POOL)
    by_popularity = search_text(sort_library, "protein structure", k=POOL, sort="popularity")
    order = {h.id: i for i, h in enumerate(relevant)}
    assert {h.id for h in by_popularity} == set(order)
    assert [(-h.popularity, order[h.id]) for h in by_popularity] == sorted((-h.popularity, order[h.id]) for h in by_popularity)
    assert by_popularity[0].id == "u1"  # 30 upvotes
    assert [h.score for h in by_popularity] == [next(r.score for r in relevant if r.id == h.id) for h in by_popularity]


def test_sort_on_similar(sort_library):
    relevant = similar_to_paper(sort_library, "2401.00001", k=POOL)
    by_date = similar_to_paper(sort_library, "2401.00001", k=POOL, sort="date")
    assert {h.id for h in by_date} == {h.id for h in relevant}
    dated = [h.date for h in by_date if h.date]
    assert dated == sorted(dated, reverse=True)
    with pytest.raises(InvalidInput, match="unknown sort"):
        search_text(sort_library, "protein", sort="citations")


def test_sort_through_the_api_and_the_cli(sort_library):
    expected = [h.id for h in search_text(sort_library, "protein structure", k=3, sort="date")]
    with TestClient(create_app(sort_library.settings, sort_library)) as client:
        response = client.get("/search", params={"q": "protein structure", "k": 3, "sort": "date"})
        assert response.status_code == 200 and [h["id"] for h in response.json()["results"]] == expected
        assert client.get("/search", params={"q": "protein", "sort": "newest"}).status_code == 422
        similar = client.get("/papers/2401.00001/similar", params={"sort": "popularity", "k": 2})
        assert similar.status_code == 200 and similar.json()["results"][0]["id"] == "u1"
        posted = client.post("/similar", json={"text": "protein folding structure", "sort": "date", "k": 2})
        assert posted.status_code == 200 and posted.json()["results"][0]["date"] == "2025-01-01"
        assert "top max(k, PAPERLENS_SORT_POOL" in json.dumps(client.get("/openapi.json").json())
    folder = str(sort_library.folder)
    sort_library.close()
    result = CliRunner(env={"PAPERLENS_SORT_POOL": str(POOL)}).invoke(
        main, ["search", "protein structure", "-k", "3", "--sort", "date", "--index", folder, "--json"])
    assert result.exit_code == 0, result.output
    assert [h["id"] for h in json.loads(result.output)["results"]] == expected
