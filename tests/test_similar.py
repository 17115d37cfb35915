"""Papers like papers: the keyword side ("more like this") of similar, recommend and feeds, and the
mode switch of each, on a real index (packaged model, FAISS, tantivy, SQLite)."""

from __future__ import annotations

import json

import pytest

from paperlens import users
from paperlens.config import Settings
from paperlens.errors import InvalidInput
from paperlens.feeds import user_feed
from paperlens.keyword import MoreLikeThis
from paperlens.library import Library, ingest
from paperlens.papers import Paper
from paperlens.recommend import recommend
from paperlens.search import confident_weight, more_like_this, side_confidence, similar_to_paper, similar_to_text

ZEBRAFISH = ("Zebrafish hearts regenerate",
             "After cryoinjury, zebrafish hearts replace lost cardiomyocytes by proliferation of surviving cardiomyocytes.")
COPY = Paper("zebrafish-copy", *ZEBRAFISH, date="2021-05-02")  # the same paper from another source
CORPUS = [
    Paper("zebrafish", *ZEBRAFISH, date="2021-05-01"),
    Paper("mouse", "Mouse heart injury", "Neonatal mouse hearts regenerate after cryoinjury through cardiomyocyte proliferation.",
          date="2022-01-01"),
    Paper("newt", "Newt limb regeneration", "Newts regrow limbs when blastema cells proliferate; no cardiomyocytes are involved.",
          date="2019-01-01"),
    Paper("galaxies", "Spiral galaxies", "Rotation curves of spiral galaxies imply dark matter halos.", date="2020-01-01"),
    Paper("quasars", "Quasar jets", "Relativistic jets from quasars are collimated by magnetic fields around dark cores.", date="2023-01-01"),
    # words in no more than half of the papers count: a few more that share none with the biology
    Paper("tokamak", "Tokamak confinement", "Magnetic confinement of hot plasma in a tokamak.", date="2018-01-01"),
    Paper("comets", "Comet tails", "Solar wind shapes the ion tails of comets.", date="2017-01-01"),
    Paper("lensing", "Weak lensing", "Weak gravitational lensing maps the distribution of matter.", date="2016-01-01"),
    Paper("pulsars", "Pulsar timing", "Millisecond pulsars keep time well enough to detect gravitational waves.", date="2015-01-01"),
]


@pytest.fixture
def library(library_of) -> Library:
    return library_of(CORPUS)


def ids(hits) -> list[str]:
    return [hit.id for hit in hits]


def test_more_like_this_ranks_a_papers_distinctive_terms(library: Library):
    terms = library.keywords.more_like_this([CORPUS[0].text], how=MoreLikeThis(max_terms=4))
    # "zebrafish": twice in the paper, in no other; "cardiomyocytes": twice, but in three papers
    assert len(terms) == 4 and terms[0] == ("zebrafish", 1.0) and "cardiomyocyt" in {t for t, _ in terms}
    weights = [w for _, w in terms]
    assert weights == sorted(weights, reverse=True) and 0 < weights[-1] < 1
    assert not {"after", "by", "of"} & {t for t, _ in terms}  # stop words never
    plain = library.keywords.more_like_this([CORPUS[0].text], how=MoreLikeThis(boost_power=0.0))
    assert {w for _, w in plain} == {1.0}


def test_a_stored_papers_query_skips_words_no_other_paper_has(library: Library):
    galaxies = CORPUS[3].text
    pasted = {t for t, _ in library.keywords.more_like_this([galaxies])}
    stored = {t for t, _ in library.keywords.more_like_this([galaxies], indexed=True)}
    assert "spiral" in pasted and "spiral" not in stored  # it would find only the paper itself
    assert stored == {"dark", "matter"}  # the words the galaxies paper shares (quasars, lensing)


def test_similar_by_id_keyword_side_finds_shared_terms_and_never_the_paper_or_its_copy(library: Library):
    ingest(library, [COPY])
    hits = similar_to_paper(library, "zebrafish", k=5, mode="bm25")
    assert ids(hits) == ["mouse", "newt"]  # the only papers with a word in common, never itself or its copy
    for mode in ("dense", "hybrid"):
        hits = similar_to_paper(library, "zebrafish", k=5, mode=mode)
        assert len(hits) == 5 and not {"zebrafish", "zebrafish-copy"} & set(ids(hits)) and ids(hits)[0] == "mouse"
    assert ids(similar_to_paper(library, "zebrafish", k=5)) == ids(similar_to_paper(library, "zebrafish", k=5, mode="hybrid"))


def test_hybrid_similar_is_the_convex_combination_of_both_sides(library: Library):
    weight = library.settings.similar_dense_weight
    dense = {h.id: h.score for h in similar_to_paper(library, "mouse", k=5, mode="dense")}
    bm25 = {h.id: h.score for h in similar_to_paper(library, "mouse", k=5, mode="bm25")}
    top_dense, top_bm25 = max(dense.values()), max(bm25.values())
    hybrid = similar_to_paper(library, "mouse", k=5, mode="hybrid")
    assert set(ids(hybrid)) == set(dense)
    for hit in hybrid:
        expected = weight * dense[hit.id] / top_dense + (1 - weight) * bm25.get(hit.id, 0.0) / top_bm25
        assert hit.score == pytest.approx(expected, abs=1e-4)


def test_similar_to_pasted_text_in_every_mode(library: Library):
    text = "Cardiomyocytes proliferate after cryoinjury of the heart."
    for mode in ("dense", "bm25", "hybrid"):
        assert set(ids(similar_to_text(library, text, k=3, mode=mode))) & {"zebrafish", "mouse"}
    assert ids(similar_to_text(library, "dark matter halos", k=1, mode="bm25")) == ["galaxies"]
    with pytest.raises(InvalidInput, match="unknown mode"):
        similar_to_text(library, text, mode="sparse")


def test_recommend_modes_and_a_dislike_on_the_keyword_side(library: Library):
    for mode in ("dense", "bm25", "hybrid"):
        hits = recommend(library, ["zebrafish"], k=3, mode=mode)
        assert ids(hits)[0] == "mouse" and "zebrafish" not in ids(hits)
    before = {h.id: h.score for h in recommend(library, ["zebrafish"], k=5, mode="bm25")}
    after = {h.id: h.score for h in recommend(library, ["zebrafish"], ["newt"], k=5, mode="bm25")}
    assert "newt" not in after and after["mouse"] < before["mouse"]  # mouse shares "regener", "prolifer" with newt
    with pytest.raises(InvalidInput, match="unknown mode"):
        recommend(library, ["zebrafish"], mode="sparse")


def test_feed_modes(library: Library):
    user = users.create_user(library, "ada")
    users.record_interaction(library, user.id, "zebrafish", "like")
    users.record_interaction(library, user.id, "galaxies", "like")
    for mode in ("dense", "bm25", "hybrid"):
        feed = ids(item.hit for item in user_feed(library, user.id, k=2, mode=mode))
        assert "mouse" in feed and not {"zebrafish", "galaxies"} & set(feed), mode
    bm25 = user_feed(library, user.id, k=6, mode="bm25")
    assert {item.hit.id for item in bm25} == {"mouse", "newt", "quasars", "lensing"}  # a word in common, or none
    with pytest.raises(InvalidInput, match="unknown mode"):
        user_feed(library, user.id, mode="sparse")


def test_keyword_query_of_several_papers_weighs_them(library: Library):
    mouse, galaxies = CORPUS[1].text, CORPUS[3].text
    heavy_galaxies = {t for t, _ in more_like_this(library, [mouse, galaxies], [0.01, 1.0])[:2]}
    heavy_mouse = {t for t, _ in more_like_this(library, [mouse, galaxies], [1.0, 0.01])[:2]}
    assert heavy_galaxies == {"dark", "matter"} and not heavy_mouse & {"dark", "matter"}


def test_side_confidence_and_the_adaptive_weight():
    assert side_confidence([1.0]) == 0.0 and side_confidence([2.0, 2.0, 2.0]) == 0.0
    flat = [1.0 - 0.001 * i for i in range(100)]
    peaked = [10.0] + [1.0 - 0.001 * i for i in range(99)]
    assert side_confidence(peaked) > 0.9 and side_confidence(flat) < 0.1
    assert confident_weight(0.5, peaked, flat) > 0.9  # the dense side stands out: it leads
    assert confident_weight(0.5, flat, peaked) < 0.1
    assert confident_weight(0.6, [], []) == 0.6


def test_api_and_cli_take_the_mode(library: Library):
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from paperlens.api import create_app
    from paperlens.cli import main

    folder = library.folder
    library.close()
    with TestClient(create_app(Settings(index=folder))) as client:
        bm25 = client.get("/papers/zebrafish/similar", params={"k": 5, "mode": "bm25"}).json()["results"]
        assert [h["id"] for h in bm25][:2] == ["mouse", "newt"]
        assert client.get("/papers/zebrafish/similar", params={"mode": "sparse"}).status_code == 422
        pasted = client.post("/similar", json={"text": "dark matter halos", "k": 1, "mode": "bm25"}).json()["results"]
        assert [h["id"] for h in pasted] == ["galaxies"]
        assert client.post("/similar", json={"text": "dark matter", "mode": "sparse"}).status_code == 422
        liked = client.post("/recommend", json={"positive": ["zebrafish"], "k": 2, "mode": "dense"}).json()["results"]
        assert liked[0]["id"] == "mouse"
        user = client.post("/users", json={"name": "bo"}).json()
        client.post(f"/users/{user['id']}/interactions", json={"paper_id": "galaxies", "kind": "like"})
        feed = client.get(f"/users/{user['id']}/feed", params={"mode": "bm25", "k": 3}).json()["results"]
        assert {h["id"] for h in feed} == {"quasars", "lensing"}  # the other papers on dark matter
        assert client.get(f"/users/{user['id']}/feed.atom", params={"mode": "sparse"}).status_code == 422
    runner = CliRunner()
    result = runner.invoke(main, ["similar", "zebrafish", "--mode", "bm25", "-k", "2", "--json", "--index", str(folder)])
    assert result.exit_code == 0, result.output
    assert [h["id"] for h in json.loads(result.output)["results"]] == ["mouse", "newt"]
    result = runner.invoke(main, ["recommend", "--like", "galaxies", "--mode", "bm25", "--json", "--index", str(folder)])
    assert {h["id"] for h in json.loads(result.output)["results"]} == {"quasars", "lensing"}
    result = runner.invoke(main, ["similar", "zebrafish", "--mode", "sparse", "--index", str(folder)])
    assert result.exit_code == 2 and "sparse" in result.output


def test_bm25_fill_in_for_only_the_finds_that_can_reach_the_top_k_changes_nothing(library: Library, monkeypatch):
    """Dense-only finds whose best possible fused score is below the k-th are not scored by BM25:
    the top k, and its scores, must be exactly those of scoring every one of them."""
    from paperlens import search

    ingest(library, [Paper(f"heart-{i}", f"Heart regeneration study {i}", "Cardiomyocytes proliferate after injury " * (1 + i % 3))
                     for i in range(12)])
    library.keyword_cache.wait_settled(60)  # every search below reads keywords/ itself, not a view of the commit in flight

    def top(k: int) -> list[tuple[str, float]]:
        by_id = [(h.id, round(h.score, 6)) for pid in ("zebrafish", "mouse", "galaxies") for h in similar_to_paper(library, pid, k)]
        by_text = [(h.id, round(h.score, 6)) for h in similar_to_text(library, "cardiomyocyte proliferation in hearts", k)]
        return by_id + by_text

    filled: list[int] = []
    worth = search._worth_filling
    monkeypatch.setattr(search, "_dense_bm25_while_waiting", lambda *args: None)  # the fill-in after the keyword side
    monkeypatch.setattr(library.settings, "fusion_depth", 4)  # a full keyword list: the bound applies
    monkeypatch.setattr(search, "_worth_filling", lambda *args: filled.append(len(args[4])) or worth(*args))
    pruned = top(2)
    assert filled and any(n > 0 for n in filled)
    monkeypatch.setattr(search, "_worth_filling", lambda pks, dense, bm25, ranked, dense_only, depth, k, weight: dense_only)
    assert top(2) == pruned


def test_dense_finds_scored_while_the_keyword_side_searches_change_no_answer(library: Library, monkeypatch):
    """With a core to spare, the requesting thread scores every dense find by BM25 while the keyword
    side is still searching, instead of filling in afterwards: every answer (search, similar by id
    and by text, every fusion that fills in) stays the same, score for score. Without a spare core
    (as many hybrid searches running as the machine has pairs of cores) nothing is scored ahead.
    On the requesting thread (a small index's way) the keyword side gives the same answers too."""
    import os
    import time

    from paperlens import search

    ingest(library, [Paper(f"heart-{i}", f"Heart regeneration study {i}", "Cardiomyocytes proliferate after injury " * (1 + i % 3))
                     for i in range(12)])
    library.keyword_cache.wait_settled(60)  # every search below reads keywords/ itself, not a view of the commit in flight
    keyword_side, ahead = search._keyword_side, search._dense_bm25_while_waiting
    scored_ahead: list[int] = []

    def slow_keyword_side(*args):  # the keyword side is the longer one, as at 1M papers
        time.sleep(0.05)
        return keyword_side(*args)

    def counted(*args):
        found = ahead(*args)
        scored_ahead.append(-1 if found is None else len(found))
        return found

    def answers() -> list[list[tuple[str, float]]]:
        lists = [similar_to_paper(library, pid, 3) for pid in ("zebrafish", "mouse", "galaxies")]
        lists += [similar_to_text(library, "cardiomyocyte proliferation in hearts", 3)]
        lists += [search.search_text(library, q, 3) for q in ("heart regeneration", "dark matter halos", "zebrafish fins")]
        return [[(h.id, round(h.score, 6)) for h in hits] for hits in lists]

    inline = answers()  # a small index: the keyword side runs on the requesting thread
    monkeypatch.setattr(library.settings, "keyword_thread_min_papers", 0)  # on its own thread, as at 1M papers
    assert answers() == inline
    monkeypatch.setattr(search, "_keyword_side", slow_keyword_side)
    monkeypatch.setattr(search, "_dense_bm25_while_waiting", counted)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # one pair of cores, whatever machine runs this
    for fusion in ("max", "minmax"):
        monkeypatch.setattr(library.settings, "fusion", fusion)
        monkeypatch.setattr(library.settings, "fusion_depth", 4)  # shallow: dense-only finds to score
        monkeypatch.setattr(search, "_dense_bm25_while_waiting", lambda *args: None)
        after = answers()
        monkeypatch.setattr(search, "_dense_bm25_while_waiting", counted)
        scored_ahead.clear()
        assert answers() == after
        assert len(scored_ahead) == len(after) and any(n > 0 for n in scored_ahead)  # -1: the keyword side was done first
    scored_ahead.clear()
    with library.hybrid_searches.entered():  # another hybrid search holds the other core
        search.search_text(library, "heart regeneration", 3)
    assert scored_ahead == [] and library.hybrid_searches.count == 0
