"""Trending: the most popular papers of a window, per category, through the library, API, CLI and web page."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from paperlens.api import create_app
from paperlens.cli import main
from paperlens.errors import InvalidInput
from paperlens.papers import Paper
from paperlens.trending import trending


def demo_expected(demo_papers, since: str, until: str) -> list[str]:
    """The demo corpus' papers dated in the window with upvotes, most first, newer first on ties."""
    window = [p for p in demo_papers if p.date and since <= p.date <= until and p.popularity > 0]
    return [p.id for p in sorted(sorted(window, key=lambda p: p.date, reverse=True), key=lambda p: -p.popularity)]


def test_trending_on_the_demo_corpus(demo_library, demo_papers):
    newest = max(p.date for p in demo_papers if p.date)
    result = trending(demo_library, days=90, k=10)
    assert result.until == newest  # no as_of: the newest paper date (the demo ends before today)
    assert result.since == (dt.date.fromisoformat(newest) - dt.timedelta(days=89)).isoformat()
    assert [h.id for h in result.papers] == demo_expected(demo_papers, result.since, result.until)
    assert len(result.papers) >= 3 and result.note is None
    assert [h.score for h in result.papers] == [h.popularity for h in result.papers] == sorted((h.popularity for h in result.papers), reverse=True)

    year = trending(demo_library, days=365, k=4, as_of="2025-12-31")
    assert (year.since, year.until) == ("2025-01-01", "2025-12-31")
    assert [h.id for h in year.papers] == demo_expected(demo_papers, "2025-01-01", "2025-12-31")[:4]


def test_no_popularity_data_is_said_not_shown(demo_library, demo_papers):
    result = trending(demo_library, days=7)  # the demo's last week: one paper, no upvotes
    assert result.papers == [] and result.note.startswith("no popularity data in the last 7 days")
    assert "none with upvotes" in result.note
    empty = trending(demo_library, days=7, as_of="2020-01-01")
    assert empty.papers == [] and "no paper is dated then" in empty.note
    with pytest.raises(InvalidInput, match="days"):
        trending(demo_library, days=0)
    with pytest.raises(InvalidInput, match="as_of"):
        trending(demo_library, as_of="yesterday")


def test_trending_by_category(library_of):
    day = dt.date(2026, 11, 30)
    def paper(pid, category, popularity, days_ago):
        return Paper(pid, f"Paper {pid}", f"About {category} number {pid}.", date=(day - dt.timedelta(days=days_ago)).isoformat(),
                     categories=[category], popularity=popularity)
    library = library_of([paper("a", "cs.LG", 10, 1), paper("b", "cs.LG", 30, 2), paper("c", "cs.CL", 20, 3),
                          paper("d", "q-bio.NC", 50, 20), paper("e", "cs.CL", 0, 1), paper("f", "cs.CV", 5, 6)])
    result = trending(library, days=7, k=2, by_category=True, today=day)
    assert result.until == "2026-11-29"  # the newest paper's day
    assert [h.id for h in result.papers] == ["b", "c"]  # d is too old
    assert [(g.category, [h.id for h in g.papers]) for g in result.by_category] == [
        ("cs.LG", ["b", "a"]), ("cs.CL", ["c"]), ("cs.CV", ["f"])]  # busiest first; e has no upvotes
    assert [h.id for h in trending(library, days=7, category="cs.CL", today=day).papers] == ["c"]
    assert [h.id for h in trending(library, days=7, category="cs", k=10, today=day).papers] == ["b", "c", "a", "f"]
    assert trending(library, days=30, today=day).papers[0].id == "d"
    with pytest.raises(InvalidInput, match="category 'math'"):
        trending(library, category="math", today=day)


def test_trending_through_the_api_cli_and_web_page(demo_library, demo_papers):
    with TestClient(create_app(demo_library.settings, demo_library)) as client:
        response = client.get("/trending", params={"days": 90})
        assert response.status_code == 200, response.text
        body = response.json()
        assert [h["id"] for h in body["papers"]] == demo_expected(demo_papers, body["since"], body["until"])
        none = client.get("/trending").json()  # 7 days
        assert none["papers"] == [] and none["note"].startswith("no popularity data")
        assert client.get("/trending", params={"days": 0}).status_code == 422
        assert client.get("/trending", params={"as_of": "soon"}).status_code == 422
        page = client.get("/")
        assert page.status_code == 200
        top = next(p for p in demo_papers if p.id == body["papers"][0]["id"])
        assert 'id="trending"' in page.text and top.title in page.text and f'href="/paper/{top.id}"' in page.text
    folder = str(demo_library.folder)
    result = CliRunner().invoke(main, ["trending", "--days", "90", "--index", folder, "--json"])
    assert result.exit_code == 0, result.output
    assert [h["id"] for h in json.loads(result.output)["papers"]] == [h["id"] for h in body["papers"]]
    result = CliRunner().invoke(main, ["trending", "--index", folder])
    assert result.exit_code == 0 and result.output.startswith("no popularity data in the last 7 days")
    result = CliRunner().invoke(main, ["trending", "--days", "90", "-k", "2", "--index", folder])
    assert result.exit_code == 0 and top.title in result.output and len(result.output.strip().splitlines()) == 3
