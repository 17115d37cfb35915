"""One paper, one entry: records of one paper from two sources merge at ingest, 'paperlens dedup'
merges those already stored, and no query shows a copy of its input or two copies of one paper."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import write_jsonl
from paperlens.api import create_app
from paperlens.caches import ChangeSet
from paperlens.cli import main
from paperlens.config import Settings
from paperlens.data import DEMO_CORPUS
from paperlens.duplicates import TitleHeads, merge_papers, same_paper
from paperlens.embed import text_hash
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


def test_a_merged_records_external_ids_name_the_entry(tmp_path, demo):
    """Its old id is an alias (paper_aliases holds nothing else); its DOI, arXiv id and CorpusId are
    the entry's (paper_external_ids), beside a DOI of the entry's own, and stay so when the entry is
    updated by its own id."""
    entry = replace(demo[3], extra={"doi": "10.1/journal"})
    record = Paper(id="2507.00999", title=demo[3].title, abstract=demo[3].abstract,
                   extra={"doi": "10.48550/arXiv.2507.00999", "corpusId": 42})
    with open_library(Settings(index=tmp_path / "ix", show_progress=False), create=True) as library:
        ingest(library, [entry])
        assert ingest(library, [record]).merged == {"2507.00999": entry.id}
        ingest(library, [replace(entry, popularity=entry.popularity + 5)])
        for raw in ("2507.00999", "arXiv:2507.00999v3", "ARXIV:2507.00999", "10.48550/arxiv.2507.00999", "DOI:10.1/JOURNAL", "CorpusId:42"):
            assert resolve_id(library, raw) == entry.id, raw
        pk = library.store.pks_for_ids([entry.id])[entry.id]
        assert [tuple(row) for row in library.store.conn.execute("SELECT alias, pk FROM paper_aliases")] == [("2507.00999", pk)]
        assert {tuple(row) for row in library.store.conn.execute("SELECT scheme, value, pk FROM paper_external_ids")} == {
            ("doi", "10.1/journal", pk), ("doi", "10.48550/arxiv.2507.00999", pk), ("arxiv", "2507.00999", pk), ("corpusid", "42", pk)}


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


# --- an index that holds each paper twice, as one built before ingest merged records ---------


def store_as_separate_papers(library, papers: list[Paper]) -> None:
    """Write ``papers`` as entries of their own, past ingest's merging (as an older index holds them)."""
    vectors = library.encoder.encode([p.text for p in papers])
    with library.store.transaction():
        outcomes = library.store.upsert_papers(papers, [text_hash(p.text) for p in papers])
        library.store.put_vectors([o.pk for o in outcomes], vectors)
        generation = library.store.bump_generation([o.pk for o in outcomes])
    library.apply_write(ChangeSet(generation, rows=[(o.pk, p.title, p.abstract) for o, p in zip(outcomes, papers)], vectors=vectors))


@pytest.fixture(scope="module")
def twice_index(tmp_path_factory, arxiv_file, demo):
    """Every demo paper twice: its listing record and its arXiv record, plus an exact-text copy of
    demo paper 7 under a third id."""
    index = tmp_path_factory.mktemp("twice") / "ix"
    with open_library(Settings(index=index, show_progress=False), create=True) as library:
        ingest(library, demo)
        copy = Paper(id="copy-of-7", title=demo[7].title, abstract=demo[7].abstract)
        store_as_separate_papers(library, [*read_papers(arxiv_file).papers, copy])
        assert library.store.count() == 107
    return index


def paper_number(demo: list[Paper], paper_id: str) -> int:
    """Which demo paper a record is, whatever its id."""
    if paper_id == "copy-of-7":
        return 7
    if paper_id.startswith("2507."):
        return int(paper_id[5:]) - 100
    return next(n for n, p in enumerate(demo) if p.id == paper_id)


def assert_distinct(demo, ids: list[str], inputs: set[int]) -> None:
    numbers = [paper_number(demo, i) for i in ids]
    assert ids and len(set(numbers)) == len(numbers), ids
    assert inputs.isdisjoint(numbers), (inputs, ids)


def test_recommend_and_similar_never_return_a_copy_of_an_input_or_two_copies(twice_index, demo):
    for args, inputs in ((["recommend", "--like", "2507.00105"], {5}), (["recommend", "--like", demo[7].id, "--dislike", "2507.00102"], {7, 2}),
                         (["similar", "2507.00105"], {5}), (["similar", "copy-of-7"], {7})):
        for mode in ("hybrid", "dense", "bm25"):
            result = run(*args, "-k", 12, "--mode", mode, "--index", twice_index, "--json")
            assert result.exit_code == 0, result.output
            hits = json.loads(result.output)["results"]
            assert len(hits) == 12 and (mode != "dense" or hits[0]["score"] < 0.99)  # a copy scores 0.996
            assert_distinct(demo, [hit["id"] for hit in hits], inputs)


def test_feeds_never_show_a_copy_of_a_liked_paper_or_two_copies(twice_index, demo):
    with TestClient(create_app(Settings(index=twice_index))) as client:
        user = client.post("/users", json={"name": "Ada"}).json()
        headers = {"X-User-Token": user["token"]}
        base = f"/users/{user['id']}"
        for liked in ("2507.00105", demo[20].id):
            assert client.post(f"{base}/interactions", json={"paper_id": liked, "kind": "like"}, headers=headers).status_code == 201
        items = client.get(f"{base}/feed", params={"k": 10}, headers=headers).json()["results"]
        assert_distinct(demo, [item["id"] for item in items], {5, 20})
        assert all(why["similarity"] < 0.99 for item in items for why in item["reason"]["because"])
        client.put(f"{base}/collections/reading", headers=headers)
        client.post(f"{base}/collections/reading/papers", json={"paper_id": "2507.00107"}, headers=headers)
        items = client.get(f"{base}/collections/reading/feed", params={"k": 10}, headers=headers).json()["results"]
        assert_distinct(demo, [item["id"] for item in items], {5, 20, 7})
        body = client.post("/recommendations/v1/papers", params={"limit": 10}, json={"positivePaperIds": [demo[5].id]}).json()
        assert_distinct(demo, [paper["paperId"] for paper in body["recommendedPapers"]], {5})


# --- check and dedup on a store that already holds duplicates ---------------------------------


def test_check_reports_duplicates_and_dedup_merges_them_keeping_likes_and_collections(twice_index, demo, tmp_path):
    index = tmp_path / "ix"
    shutil.copytree(twice_index, index)
    with TestClient(create_app(Settings(index=index))) as client:
        user = client.post("/users", json={"name": "Ada"}).json()
        headers, base = {"X-User-Token": user["token"]}, f"/users/{user['id']}"
        client.post(f"{base}/interactions", json={"paper_id": "2507.00105", "kind": "like"}, headers=headers)
        client.post(f"{base}/interactions", json={"paper_id": "2507.00130", "kind": "save"}, headers=headers)
        client.put(f"{base}/collections/reading", headers=headers)
        client.post(f"{base}/collections/reading/papers", json={"paper_id": "2507.00107"}, headers=headers)

    checked = run("check", "--index", index, "--json")
    report = json.loads(checked.output)
    assert checked.exit_code == 0 and report["ok"] and report["papers"] == 107  # reported, not merged
    groups = {tuple(group) for group in report["duplicates"]}
    assert len(groups) == 53 and (demo[5].id, "2507.00105") in groups and (demo[7].id, "2507.00107", "copy-of-7") in groups
    with open_library(Settings(index=index)) as library:  # before: the arXiv record's own ids name it
        assert resolve_id(library, "DOI:10.48550/arXiv.2507.00105") == "2507.00105"
    dry = json.loads(run("dedup", "--dry-run", "--index", index, "--json").output)
    assert dry == {"groups": report["duplicates"], "entries": 54, "merged": False, "total": 107}

    done = run("dedup", "--index", index, "--json")
    assert done.exit_code == 0 and json.loads(done.output)["entries"] == 54 and json.loads(done.output)["total"] == 53
    report = json.loads(run("check", "--index", index, "--json").output)
    assert report["ok"] and not report["duplicates"] and not report["repaired"] and (report["papers"], report["faiss"]) == (53, 53)
    with open_library(Settings(index=index)) as library:
        assert {resolve_id(library, i) for i in ("2507.00107", "copy-of-7", demo[7].id)} == {demo[7].id}
        assert library.store.get(demo[5].id).paper.authors[0] == "Ada Lovelace"
        # The merged records' external ids are the kept entries' now; old paperlens ids only are aliases.
        assert resolve_id(library, "DOI:10.48550/arXiv.2507.00105") == resolve_id(library, "ARXIV:2507.00105") == demo[5].id
        pk = library.store.pks_for_ids([demo[5].id])[demo[5].id]
        rows = {tuple(row) for row in library.store.conn.execute("SELECT scheme, value, pk FROM paper_external_ids")}
        assert {("doi", "10.48550/arxiv.2507.00105", pk), ("arxiv", "2507.00105", pk)} <= rows
        assert not library.store.conn.execute("SELECT 1 FROM paper_external_ids WHERE pk NOT IN (SELECT pk FROM papers)").fetchall()
        aliases = {row[0] for row in library.store.conn.execute("SELECT alias FROM paper_aliases")}
        assert aliases == {f"2507.{100 + n:05d}" for n in range(53)} | {"copy-of-7"}

    with TestClient(create_app(Settings(index=index))) as client:
        assert client.get("/papers/2507.00105").json()["id"] == demo[5].id
        # The like, the save and the collection still name the merged ids and count for the entries.
        assert {i["paper_id"] for i in client.get(f"{base}/interactions", headers=headers).json()["interactions"]} == {"2507.00105", "2507.00130"}
        items = client.get(f"{base}/feed", params={"k": 10}, headers=headers).json()["results"]
        assert_distinct(demo, [item["id"] for item in items], {5, 30})
        assert {why["paper_id"] for item in items for why in item["reason"]["because"]} <= {demo[5].id, demo[30].id}
        items = client.get(f"{base}/collections/reading/feed", params={"k": 5}, headers=headers).json()["results"]
        assert len(items) == 5 and all(why["paper_id"] == demo[7].id for item in items for why in item["reason"]["because"])
        # Taken back by either id.
        assert client.delete(f"{base}/interactions/{demo[5].id}", headers=headers).status_code == 200
        assert client.delete(f"{base}/collections/reading/papers/{demo[7].id}", headers=headers).json()["papers"] == []
        assert {i["paper_id"] for i in client.get(f"{base}/interactions", headers=headers).json()["interactions"]} == {"2507.00130"}
    again = json.loads(run("dedup", "--index", index, "--json").output)
    assert again["entries"] == 0 and again["total"] == 53


def test_title_heads_join_as_same_paper_does_pair_by_pair():
    """TitleHeads (ingest's matching inside one batch) picks the first head that same_paper joins,
    as the pair-by-pair loop it replaced did: by text, by close vectors, or none."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(40, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    records = []  # (text hash, vector): some repeat a text, some lie close to an earlier vector
    for _ in range(300):
        source = int(rng.integers(40))
        vector = base[source] + rng.normal(scale=float(rng.choice([0.05, 0.6])), size=16).astype(np.float32)
        records.append((f"text-{int(rng.integers(60))}", vector / np.linalg.norm(vector)))
    heads, naive_heads, joined = TitleHeads(16), [], 0
    for position, (digest, vector) in enumerate(records):
        expected = next((j for j in naive_heads if same_paper(records[j][0] == digest, float(vector @ records[j][1]))), None)
        assert heads.find(digest, vector) == expected, position
        if expected is None:
            heads.add(position, digest, vector)
            naive_heads.append(position)
        else:
            joined += 1
    assert 0 < joined < len(records) and len(naive_heads) > 4  # both ways of joining, and new heads, were met
