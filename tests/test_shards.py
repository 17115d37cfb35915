"""Sharded collections in one process (shards.LocalShard): 'paperlens shard', the answers of a
ShardedLibrary against one index, BM25 with the collection's statistics, partial answers and writes.
The same library on a Ray cluster: tests/test_ray_serve.py."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import Future
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from conftest import topic_papers
from paperlens.api import create_app
from paperlens.cli import main
from paperlens.config import Settings
from paperlens.filters import Filters
from paperlens.keyword import query_terms
from paperlens.library import ingest, open_library
from paperlens.shards import (
    SHARD_MAP,
    PartialAnswers,
    ShardMap,
    open_local_shards,
    owner,
    shard_collection,
)
from paperlens.store import Store
from paperlens.users import create_user, record_interaction

QUERIES = ["attention is all you need", "reinforcement learning from human feedback", "image generation with diffusion",
           "graph neural networks", "retrieval augmented generation", "speech recognition", "protein structure",
           "scaling laws for language models", "contrastive learning of visual representations", "question answering"]


@pytest.fixture(scope="module")
def sharded_demo(tmp_path_factory, demo_index_dir) -> Path:
    out = tmp_path_factory.mktemp("shards") / "S"
    shard_collection(Settings(index=demo_index_dir), demo_index_dir, 2, out)
    return out


@pytest.fixture(scope="module")
def clients(demo_index_dir, sharded_demo):
    app = create_app(Settings(index=sharded_demo), open_local_shards(Settings(index=sharded_demo), sharded_demo))
    app.add_middleware(PartialAnswers)
    with TestClient(create_app(Settings(index=demo_index_dir))) as plain, TestClient(app) as sharded:
        yield plain, sharded
    app.state.library.close()


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["results"]]


def test_owner_is_a_stable_hash():
    # blake2b-64 of the id, as shards.json says: the same in every process (Python's hash() is not)
    assert owner("2401.00001", 4) == int.from_bytes(hashlib.blake2b(b"2401.00001", digest_size=8).digest(), "big") % 4 == 1
    assert {owner(f"p{i}", 3) for i in range(100)} == {0, 1, 2}


def test_shard_command_splits_an_index_into_complete_folders(tmp_path, settings):
    source = tmp_path / "B"
    with open_library(settings, source, create=True) as library:
        ingest(library, topic_papers())
        user = create_user(library, "ada")
        record_interaction(library, user.id, "2401.00001", "like")
    result = CliRunner().invoke(main, ["shard", "--index", str(source), "--shards", "2", "--out", str(tmp_path / "S"), "--json"])
    assert result.exit_code == 0, result.output
    shard_map = ShardMap(**json.loads(result.output.strip().splitlines()[-1]))
    assert shard_map == ShardMap.read(tmp_path / "S") and shard_map.shards == 2 and shard_map.papers == 6 and shard_map.dim == 384
    held = {}
    for shard, name in enumerate(shard_map.folders):
        folder = tmp_path / "S" / name
        assert {"papers.sqlite", "vectors.faiss", "keywords", "manifest.json"} <= {p.name for p in folder.iterdir()}
        with open_library(settings, folder) as library:
            assert len(library.index) == len(library) == library.store.vector_count()
            for stored in library.store.get_many(range(1, 100)).values():
                held[stored.paper.id] = shard
    assert held == {paper.id: owner(paper.id, 2) for paper in topic_papers()}
    users = Store(tmp_path / "S" / "users.sqlite")
    try:
        assert [row.paper_id for row in users.users.interactions(1)] == ["2401.00001"]
    finally:
        users.close()


@pytest.mark.parametrize("args, message", [
    (["--shards", "0"], "--shards must be between 1 and 1024"),
    (["--shards", "2", "--index", "/nonexistent/index"], "no index at /nonexistent/index"),
])
def test_shard_command_refuses_bad_input_in_one_line(tmp_path, demo_index_dir, args, message):
    full = ["shard", "--index", str(demo_index_dir), "--out", str(tmp_path / "S"), *args]
    result = CliRunner().invoke(main, full)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    (tmp_path / "T").mkdir()
    (tmp_path / "T" / "x").write_text("")
    result = CliRunner().invoke(main, ["shard", "--index", str(demo_index_dir), "--shards", "2", "--out", str(tmp_path / "T")])
    assert result.exit_code == 1 and "is not empty" in result.output


def test_sharded_answers_match_one_index(clients):
    plain, sharded = clients
    assert sharded.get("/health").json()["papers"] == plain.get("/health").json()["papers"]
    assert "shards" not in plain.get("/health").json()
    assert sharded.get("/health").json()["generation"] > 0
    metrics = {sample.name: sample.value for family in text_string_to_metric_families(sharded.get("/metrics").text)
               for sample in family.samples}
    assert metrics["paperlens_papers"] == plain.get("/health").json()["papers"] and metrics["paperlens_index_generation"] > 0
    for query in QUERIES:
        assert ids(sharded.get("/search", params={"q": query, "mode": "dense"})) == ids(plain.get("/search", params={"q": query, "mode": "dense"}))
        for mode in ("hybrid", "bm25"):
            one = ids(plain.get("/search", params={"q": query, "mode": mode}))
            assert len(set(one) & set(ids(sharded.get("/search", params={"q": query, "mode": mode})))) >= len(one) - 1
    seeds = ids(plain.get("/search", params={"q": "language models", "mode": "dense"}))
    for seed in seeds[:5]:
        for mode in ("dense", "hybrid"):
            one = ids(plain.get(f"/papers/{seed}/similar", params={"mode": mode}))
            assert len(set(one) & set(ids(sharded.get(f"/papers/{seed}/similar", params={"mode": mode})))) >= len(one) - (mode != "dense")
    body = {"positive": seeds[:3], "negative": seeds[6:7], "mode": "dense"}
    assert ids(sharded.post("/recommend", json=body)) == ids(plain.post("/recommend", json=body))
    # Filters apply across shards; the plain answers carry no partial fields.
    params = {"q": "language models", "since": "2022", "mode": "dense"}
    assert ids(sharded.get("/search", params=params)) == ids(plain.get("/search", params=params))
    assert set(plain.get("/search", params=params).json()) == {"results"}


def test_collection_statistics_make_bm25_agree_with_one_index(demo_index_dir, sharded_demo):
    """Each shard scoring with its own document frequencies reorders BM25's top 10; with the
    collection's (gathered from all shards) the lists are those of one index."""
    with open_library(Settings(index=demo_index_dir), demo_index_dir) as one:
        library = open_local_shards(Settings(index=sharded_demo), sharded_demo)
        try:
            own = same = 0
            for query in QUERIES:
                terms = query_terms(query)
                expected = [pk for pk, _ in one.keywords.top(terms, 10)]
                want = [one.store.get_many([pk])[pk].paper.id for pk in expected]
                stats = library.keywords.term_stats([t for t, _ in terms])

                def merged(with_stats, terms=terms, stats=stats):
                    found = [(pk * 2 + s, score) for s, client in enumerate(library.clients)
                             for pk, score in client.shard.keyword_top(terms, 10, 1.0, None, stats if with_stats else None)]
                    top = [pk for pk, _ in sorted(found, key=lambda item: -item[1])[:10]]
                    return [library.store.get_many([pk])[pk].paper.id for pk in top]

                own += len(set(merged(False)) & set(want))
                same += len(set(merged(True)) & set(want))
            assert same >= own and same >= 0.97 * sum(min(10, len(one.keywords.top(query_terms(q), 10))) for q in QUERIES)
        finally:
            library.close()


class FailingShard:
    name = "broken"

    def call(self, method, *args):
        future: Future = Future()
        future.set_exception(ConnectionError("shard down"))
        return future


def test_a_shard_that_fails_gives_partial_answers_and_refuses_its_writes(sharded_demo):
    library = open_local_shards(Settings(index=sharded_demo), sharded_demo)
    healthy = library.clients[1]
    library.clients[1] = FailingShard()
    app = create_app(Settings(index=sharded_demo), library)
    app.add_middleware(PartialAnswers)
    try:
        with TestClient(app) as client:
            response = client.get("/search", params={"q": "language models"})
            assert response.status_code == 200
            body = response.json()
            assert body["partial"] is True and body["missing_shards"] == [1] and body["results"]
            assert response.headers["x-paperlens-missing-shards"] == "1"
            health = client.get("/health").json()
            assert [s["state"] for s in health["shards"]] == ["ok", "unavailable"]
            paper = {"id": "x-1", "title": "A paper", "abstract": "Its abstract."}
            refused = client.post("/papers", json=[paper])
            assert refused.status_code == 503 and "shard 1 did not answer" in refused.json()["detail"]
            library.clients[1] = healthy
            assert "partial" not in client.get("/search", params={"q": "language models"}).json()
    finally:
        library.close()


def test_writes_go_to_the_owner_shard(tmp_path, settings):
    source = tmp_path / "B"
    with open_library(settings, source, create=True) as library:
        ingest(library, topic_papers()[:4])
    shard_collection(settings, source, 2, tmp_path / "S")
    library = open_local_shards(settings, tmp_path / "S")
    try:
        added = library.ingest(topic_papers()[4:])
        assert sorted(added.added) == ["2403.00005", "2403.00006"]
        for paper in topic_papers()[4:]:
            stored = library.store.get(paper.id)
            assert stored is not None and stored.pk % 2 == owner(paper.id, 2)
            assert library.clients[owner(paper.id, 2)].shard.library.store.get(paper.id) is not None
        before = library.generation
        assert library.delete(["2403.00005", "nope"]) == ["2403.00005"]
        assert library.generation > before
        assert library.store.get("2403.00005") is None and len(library.store.pks_for_ids(["2403.00006"])) == 1
        assert (tmp_path / "S" / SHARD_MAP).exists()
    finally:
        library.close()


def test_plain_serve_opens_a_sharded_folder_in_one_process(tmp_path, sharded_demo):
    import httpx

    from serverproc import ServerProcess

    server = ServerProcess(sharded_demo, tmp_path / "server.log")
    try:
        health = httpx.get(server.url + "/health").json()
        assert [s["folder"] for s in health["shards"]] == ["shard-0", "shard-1"] and health["papers"] == 53
        assert len(ids(httpx.get(server.url + "/search", params={"q": "transformers", "mode": "dense"}))) == 10
    finally:
        server.kill()


def test_author_filter_across_shards_keeps_each_papers_authors(tmp_path, settings):
    """The ingress's merged filter columns move each paper's authors with it into the global order."""
    authors = [["Marie Curie"], ["Curie, P.", "Henri Becquerel"], ["Lise Meitner"], ["Otto Hahn", "L. Meitner"], ["E. Noether"], []]
    papers = [paper for paper in topic_papers()]
    for paper, names in zip(papers, authors):
        paper.authors = names
    with open_library(settings, tmp_path / "B", create=True) as library:
        ingest(library, papers)
    shard_collection(settings, tmp_path / "B", 2, tmp_path / "S")
    sharded = open_local_shards(settings, tmp_path / "S")
    try:
        with open_library(settings, tmp_path / "B") as plain:
            for names in (("curie",), ("Meitner, L.",), ("Hahn", "Noether"), ("Nobody",)):
                filters = Filters(authors=names)
                expected = {p.paper.id for p in plain.store.get_many(plain.filter_columns().allowed(filters).tolist()).values()}
                found = {p.paper.id for p in sharded.store.get_many(sharded.filter_columns().allowed(filters).tolist()).values()}
                assert found == expected
            assert len(expected) == 0 and len({p.paper.id for p in plain.store.get_many(
                plain.filter_columns().allowed(Filters(authors=("curie",))).tolist()).values()}) == 2
    finally:
        sharded.close()
