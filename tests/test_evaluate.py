"""BEIR evaluation on a hand-made folder whose metrics can be worked out on paper."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from paperlens.config import Settings
from paperlens.errors import InvalidInput
from paperlens.evaluate import cache_folder, evaluate_beir
from paperlens.library import INDEX_FILE

# Each query shares words with the listed papers only, so BM25's ranking is known:
#   q1 → d1 only (relevant: d1)                    nDCG 1, AP 1, recall 1, RR 1
#   q2 → d2 only (relevant: d2, d3; d3 unmatched)   nDCG 1/(1+1/log2 3), AP 1/2, recall 1/2, RR 1
#   q3 → d5 ("quasar" twice) before d4 (relevant)   nDCG 1/log2 3, AP 1/2, recall 1, RR 1/2
#   d6 is the query q-self's own id: left out of its ranking, as in BEIR; q-none has no judgment.
CORPUS = [
    {"_id": "d1", "title": "Zebrafish fins", "text": "Zebrafish regrow amputated fins within weeks."},
    {"_id": "d2", "title": "Tokamak plasma", "text": "Tokamak confinement of hot plasma by magnetic fields."},
    {"_id": "d3", "title": "Fusion energy", "text": "Stellarators are an alternative route to fusion power."},
    {"_id": "d4", "title": "Quasar survey", "text": "Redshift catalogue from telescope images."},
    {"_id": "d5", "title": "Quasar quasar", "text": "Spectra catalogue from telescope images."},
    {"_id": "q-self", "title": "Volcanic ash", "text": "Volcanic ash disrupts aviation."},
]
QUERIES = [
    {"_id": "q1", "text": "zebrafish"},
    {"_id": "q2", "text": "tokamak"},
    {"_id": "q3", "text": "quasar"},
    {"_id": "q-self", "text": "volcanic ash"},
    {"_id": "q-none", "text": "anything"},
]
QRELS = [("q1", "d1"), ("q2", "d2"), ("q2", "d3"), ("q3", "d4"), ("q-self", "q-self")]


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CORPUS))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QUERIES))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in QRELS))
    return folder


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


def test_bm25_metrics_are_exact(beir: Path, tmp_path: Path, settings: Settings):
    result = evaluate_beir(beir, settings, "bm25", cache_root=tmp_path / "cache")
    # q-self finds nothing once its own paper is left out: every metric 0 for it.
    ndcg = (1 + 1 / (1 + 1 / math.log2(3)) + 1 / math.log2(3) + 0) / 4
    assert result.metrics["ndcg@10"] == pytest.approx(ndcg, abs=1e-6)
    assert result.metrics["map@100"] == pytest.approx((1 + 0.5 + 0.5 + 0) / 4, abs=1e-6)
    assert result.metrics["recall@100"] == pytest.approx((1 + 0.5 + 1 + 0) / 4, abs=1e-6)
    assert result.metrics["mrr@10"] == pytest.approx((1 + 1 + 0.5 + 0) / 4, abs=1e-6)
    assert result.metrics["r-precision"] == pytest.approx((1 + 0.5 + 0 + 0) / 4, abs=1e-6)
    assert result.metrics["ndcg@20"] == pytest.approx(ndcg, abs=1e-6)
    assert (result.queries, result.docs) == (4, 6)
    assert set(result.as_json()) == {"task", "mode", "ndcg@10", "ndcg@20", "map@100", "recall@100", "mrr@10", "r-precision",
                                     "queries", "docs"}
    assert result.as_json()["task"] == "search"


def test_second_run_reuses_the_cached_index(beir: Path, tmp_path: Path, settings: Settings):
    cache = tmp_path / "cache"
    first = evaluate_beir(beir, settings, "dense", cache_root=cache)
    index_file = cache_folder(beir, settings, cache) / INDEX_FILE
    written = index_file.stat().st_mtime_ns
    second = evaluate_beir(beir, settings, "dense", cache_root=cache)
    assert index_file.stat().st_mtime_ns == written
    assert second == first
    assert [p.name for p in cache.iterdir()] == [index_file.parent.name]
    assert index_file.parent.name.startswith("eval-")


def test_modes_give_their_own_rankings(beir: Path, tmp_path: Path, settings: Settings):
    cache = tmp_path / "cache"
    results = {mode: evaluate_beir(beir, settings, mode, cache_root=cache) for mode in ("dense", "bm25", "hybrid")}
    for result in results.values():
        assert 0.0 <= result.metrics["ndcg@10"] <= 1.0 and result.queries == 4
    # Dense ranks every paper, so it finds d3 (recall 1 on q2) where BM25 cannot.
    assert results["dense"].metrics["recall@100"] > results["bm25"].metrics["recall@100"]


def test_not_a_beir_folder(tmp_path: Path, settings: Settings):
    (tmp_path / "corpus.jsonl").write_text("{}\n")
    with pytest.raises(InvalidInput, match=r"not a BEIR folder: missing queries\.jsonl, qrels/test\.tsv"):
        evaluate_beir(tmp_path, settings, "bm25", cache_root=tmp_path / "cache")
    with pytest.raises(InvalidInput, match="is not a folder"):
        evaluate_beir(tmp_path / "nowhere", settings, "bm25", cache_root=tmp_path / "cache")


def test_unknown_mode(beir: Path, tmp_path: Path, settings: Settings):
    with pytest.raises(InvalidInput, match="unknown mode"):
        evaluate_beir(beir, settings, "splade", cache_root=tmp_path / "cache")


def test_cli_eval_prints_json_last(beir: Path, tmp_path: Path):
    from click.testing import CliRunner

    from paperlens.cli import main

    result = CliRunner().invoke(main, ["eval", str(beir), "--mode", "bm25", "--json", "--quiet", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    values = json.loads(result.output.strip().splitlines()[-1])
    assert values["mode"] == "bm25" and values["task"] == "search" and (values["queries"], values["docs"]) == (4, 6)
    assert values["mrr@10"] == pytest.approx(0.625, abs=1e-6)
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 1 and "not a BEIR folder" in result.output


# Papers as queries ("more like this"): p1 is a query paper that is also in the corpus, asked about
# under two facets with their own graded judgments; q9 is a query paper that is not in the corpus.
PAPER_CORPUS = [
    {"_id": "p1", "title": "Zebrafish fin regeneration", "text": "Zebrafish regrow amputated fins; blastema cells drive fin regeneration."},
    {"_id": "p2", "title": "Blastema in zebrafish", "text": "Blastema cells of zebrafish fins regrow tissue after amputation."},
    {"_id": "p3", "title": "Salamander limbs", "text": "Salamanders regrow amputated limbs through a blastema."},
    {"_id": "p4", "title": "Tokamak plasma", "text": "Tokamak confinement of hot plasma by magnetic fields."},
    {"_id": "p5", "title": "Quasar survey", "text": "Redshift catalogue from telescope images."},
    {"_id": "p6", "title": "Dark matter halos", "text": "Dwarf galaxies hold dark matter halos, seen in rotation curves."},
]
P1 = {"query_paper_id": "p1", "title": PAPER_CORPUS[0]["title"], "abstract": PAPER_CORPUS[0]["text"]}
PAPER_QUERIES = [
    {"_id": "p1_method", "text": "Zebrafish fin regeneration ...", "metadata": {**P1, "facet": "method"}},
    {"_id": "p1_result", "text": "Zebrafish fin regeneration ...", "metadata": {**P1, "facet": "result"}},
    {"_id": "q9_background", "text": "Galaxy rotation curves and dark matter",
     "metadata": {"query_paper_id": "q9", "title": "Galaxy rotation curves", "abstract": "Rotation curves of galaxies reveal dark matter."}},
]
PAPER_QRELS = [("p1_method", "p2", 3), ("p1_method", "p3", 1), ("p1_result", "p3", 2), ("q9_background", "p6", 2)]


@pytest.fixture
def paper_beir(tmp_path: Path) -> Path:
    folder = tmp_path / "papers"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAPER_CORPUS))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAPER_QUERIES))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in PAPER_QRELS))
    return folder


def test_similar_task_leaves_the_query_paper_out_and_shares_its_ranking(paper_beir: Path, tmp_path: Path, settings: Settings):
    from paperlens.evaluate import load_beir, open_eval_index, run_queries

    beir = load_beir(paper_beir)
    with open_eval_index(beir, settings, tmp_path / "cache") as library:
        run = run_queries(library, beir, "bm25", task="similar", by="text")
    assert "p1" not in run["p1_method"] and list(run["p1_method"])[:2] == ["p2", "p3"]
    assert run["p1_method"] == run["p1_result"]  # one paper, one ranking, judged per facet
    assert next(iter(run["q9_background"])) == "p6"


def test_similar_task_graded_metrics(paper_beir: Path, tmp_path: Path, settings: Settings):
    cache = tmp_path / "cache"
    result = evaluate_beir(paper_beir, settings, "bm25", cache_root=cache, task="similar")
    # p1_method: p2 (3) then p3 (1), ideal; p1_result: p3 (2) second; q9: p6 first.
    assert result.metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1) / 3, abs=1e-6)
    assert result.metrics["ndcg@20"] == result.metrics["ndcg@10"] and (result.task, result.queries, result.docs) == ("similar", 3, 6)
    strict = evaluate_beir(paper_beir, settings, "bm25", cache_root=cache, task="similar", relevant_grade=2)
    assert strict.metrics["r-precision"] == pytest.approx((1 + 0 + 1) / 3, abs=1e-6)  # p3 is not relevant to p1_method at grade 2
    assert strict.metrics["ndcg@10"] == result.metrics["ndcg@10"]  # the grades themselves do not change


def test_similar_task_by_id_adds_the_query_papers_to_a_copy(paper_beir: Path, tmp_path: Path, settings: Settings):
    cache = tmp_path / "cache"
    by_text = evaluate_beir(paper_beir, settings, "hybrid", cache_root=cache, task="similar")
    by_id = evaluate_beir(paper_beir, settings, "hybrid", cache_root=cache, task="similar", by="id")
    assert (by_text.docs, by_id.docs) == (6, 7)  # q9 added, p1 already there
    assert sorted(p.name for p in cache.iterdir())[1].endswith("-with-queries")
    assert by_id.metrics["ndcg@10"] > 0.5 and by_text.metrics["ndcg@10"] > 0.5


def test_cli_eval_similar_task(paper_beir: Path, tmp_path: Path):
    from click.testing import CliRunner

    from paperlens.cli import main

    result = CliRunner().invoke(main, ["eval", str(paper_beir), "--task", "similar", "--by", "id", "--mode", "dense", "--json",
                                       "--quiet", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    values = json.loads(result.output.strip().splitlines()[-1])
    assert (values["task"], values["mode"], values["docs"]) == ("similar", "dense", 7)
    result = CliRunner().invoke(main, ["eval", str(paper_beir), "--task", "nearby", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "nearby" in result.output
