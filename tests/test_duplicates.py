"""One paper, one entry: records of one paper from two sources merge at ingest, 'paperlens dedup'
merges those already stored, and no query shows a copy of its input or two copies of one paper."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import write_jsonl
from paperlens.api import create_app
from paperlens.cli import main
from paperlens.config import Settings
from paperlens.data import DEMO_CORPUS
from paperlens.duplicates import merge_papers
from paperlens.library import ingest, open_library, resolve_id
from paperlens.papers import Paper, read_papers


def arxiv_id(n: int) -> str:
    return f"2507.{100 + n:05d}"


def arxiv_record(n: int, paper: Paper) -> dict:
    """The arXiv snapshot's record of a demo paper: its own id, the author names, categories, the
    date of v1, and the abstract as arXiv has it (here: wrapped, and half of them a sentence shorter)."""
    abstract = paper.abstract
    if n % 2 == 0:
        abstract = " ".join(re.split(r"(?<=[.!?])\s+", abstract)[:-1]) or abstract
    else:
        abstract = "  " + abstract.replace(". ", ".\n  ", 3)
    return {"id": f"{arxiv_id(n)}v2", "title": paper.title.upper() if n % 3 == 0 else paper.title, "abstract": abstract,
            "authors": "Ada Lovelace, Alan Turing, Grace Hopper", "categories": "cs.CL cs.LG",
            "versions": [{"version": "v1", "created": "Mon, 30 Jun 2025 12:00:00 GMT"}], "update_date": "2025-07-02",
            "doi": f"10.48550/arXiv.{arxiv_id(n)}"}


@pytest.fixture(scope="module")
def demo():
    return read_papers(DEMO_CORPUS).papers


@pytest.fixture(scope="module")
def arxiv_file(tmp_path_factory, demo):
    return write_jsonl(tmp_path_factory.mktemp("arxiv") / "arxiv.jsonl", [arxiv_record(n, p) for n, p in enumerate(demo)])


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def mixed_index(tmp_path_factory, arxiv_file):
    """The demo listing (hash ids), then an arXiv file of the same papers, through the CLI."""
    index = tmp_path_factory.mktemp("mixed") / "ix"
    assert run("ingest", "--demo", "--index", index, "--quiet").exit_code == 0
    result = run("ingest", arxiv_file, "--index", index, "--json")
    assert result.exit_code == 0, result.output
    return index, json.loads(result.output.splitlines()[-1])


def test_a_listing_and_an_arxiv_file_of_the_same_papers_give_one_entry_each(mixed_index, demo):
    index, summary = mixed_index
    assert summary["added"] == 0 and summary["merged"] == 53 and summary["total"] == 53 and summary["encoded"] == 0
    with open_library(Settings(index=index)) as library:
        assert len(library) == 53 and library.store.count() == 53 and len(library.index) == 53
        for n, paper in enumerate(demo):
            assert resolve_id(library, arxiv_id(n)) == paper.id
            assert resolve_id(library, f"arXiv:{arxiv_id(n)}v1") == paper.id
            assert resolve_id(library, f"10.48550/arxiv.{arxiv_id(n)}") == paper.id
        entry = library.store.get(demo[5].id).paper
    # The entry keeps its id and text and takes the richer metadata: names over a count, the
    # categories, the earlier date, the DOI.
    assert entry.abstract == demo[5].abstract and entry.authors == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    assert entry.categories == ["cs.CL", "cs.LG"] and entry.date == min(demo[5].date, "2025-06-30") and entry.extra["doi"].endswith("2507.00105")


def test_reingesting_either_source_adds_and_encodes_nothing(mixed_index, arxiv_file):
    index, _ = mixed_index
    for args in ([arxiv_file], ["--demo"]):
        summary = json.loads(run("ingest", *args, "--index", index, "--json").output.splitlines()[-1])
        assert (summary["added"], summary["encoded"], summary["total"]) == (0, 0, 53), args
    with open_library(Settings(index=index)) as library:
        # Re-ingesting the poorer listing record does not take back what the arXiv record brought.
        assert library.store.get(read_papers(DEMO_CORPUS).papers[5].id).paper.authors[0] == "Ada Lovelace"


def test_both_sources_in_one_ingest_give_one_entry_each(tmp_path, arxiv_file, demo):
    arxiv = read_papers(arxiv_file).papers
    with open_library(Settings(index=tmp_path / "ix", show_progress=False), create=True) as library:
        report = ingest(library, arxiv + demo)
        assert len(report.added) == 53 and len(report.merged) == 53 and library.store.count() == 53
        assert resolve_id(library, demo[5].id) == "2507.00105"


def test_different_papers_under_one_title_stay_apart(tmp_path, demo):
    """Two papers that share a title but not their content are not one paper."""
    other = Paper(id="x1", title=demo[0].title, abstract=demo[1].abstract)
    with open_library(Settings(index=tmp_path / "ix", show_progress=False), create=True) as library:
        ingest(library, demo[:2])
        report = ingest(library, [other])
        assert report.added == ["x1"] and not report.merged and library.store.count() == 3


def test_merge_keeps_the_richer_metadata():
    listing = Paper(id="h1", title="T", abstract="A", date="2025-07-24", popularity=12, extra={"author_count": 3})
    arxiv = Paper(id="2507.00001", title="T", abstract="A", authors=["A", "B", "C"], date="2025-06-30",
                  categories=["cs.CL"], popularity=2, url="https://arxiv.org/abs/2507.00001", extra={"doi": "10.1/x"})
    merged = merge_papers(listing, arxiv)
    assert (merged.id, merged.authors, merged.date, merged.categories, merged.popularity, merged.url) == (
        "h1", ["A", "B", "C"], "2025-06-30", ["cs.CL"], 12, "https://arxiv.org/abs/2507.00001")
    assert merged.extra == {"author_count": 3, "doi": "10.1/x"}


def test_both_ids_name_the_entry_in_the_api(mixed_index, demo):
    index, _ = mixed_index
    with TestClient(create_app(Settings(index=index))) as client:
        by_arxiv, by_hash = client.get("/papers/2507.00105").json(), client.get(f"/papers/{demo[5].id}").json()
        assert by_arxiv == by_hash and by_arxiv["id"] == demo[5].id
        assert client.get("/papers/arXiv:2507.00105v2/similar", params={"k": 3}).status_code == 200
