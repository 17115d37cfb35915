"""The keyword side (tantivy) and the mode switch of free-text search, on real indexes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tantivy

from paperlens import keyword
from paperlens.config import Settings
from paperlens.errors import InvalidInput
from paperlens.keyword import query_terms
from paperlens.library import KEYWORD_DIR, Library, Manifest, check_library, delete, ingest, open_library
from paperlens.papers import Paper
from paperlens.search import fuse, make_filters, normalise, search_text

# "cardiac tissue regrowth" shares no word with the zebrafish paper but means it; the society
# paper shares the words and means something else. Dense and BM25 must disagree on the winner.
CORPUS = [
    Paper("zebrafish", "Zebrafish hearts regenerate", "After injury, zebrafish hearts replace lost cardiomyocytes by proliferation.",
          date="2021-05-01", categories=["q-bio"]),
    Paper("society", "Membership of professional societies", "Our survey of membership fees, codenamed cardiac tissue regrowth, covers economists.",
          date="2019-01-01", categories=["econ"]),
    Paper("galaxies", "Spiral galaxies", "Rotation curves of spiral galaxies imply dark matter halos.", date="2020-01-01", categories=["astro-ph"]),
]
QUERY = "cardiac tissue regrowth"


@pytest.fixture
def library(library_of) -> Library:
    return library_of(CORPUS)


def ids(hits) -> list[str]:
    return [hit.id for hit in hits]


def terms(weighted) -> list[str]:
    return [term for term, _ in weighted]


def test_query_terms_drop_stop_words_and_repeats():
    assert query_terms("The effect of the Heart on heart-rate") == [("effect", 1.0), ("heart", 1.0), ("rate", 1.0)]
    assert query_terms("the of and") == []
    # stemmed as the index is; operators of a query language are plain words here
    assert terms(query_terms("Regenerating hearts AND NOT mice_studies")) == ["regener", "heart", "mice", "studi"]


def test_modes_reach_the_engine(library: Library):
    assert ids(search_text(library, QUERY, k=1, mode="bm25")) == ["society"]
    assert ids(search_text(library, QUERY, k=3, mode="dense"))[0] == "zebrafish"
    hybrid = ids(search_text(library, QUERY, k=3, mode="hybrid"))
    assert set(hybrid[:2]) == {"zebrafish", "society"} and hybrid[2] == "galaxies"
    assert ids(search_text(library, QUERY, k=3)) == hybrid  # hybrid is the default


def test_bm25_returns_only_matching_papers(library: Library):
    assert ids(search_text(library, "dark matter", k=3, mode="bm25")) == ["galaxies"]
    assert search_text(library, "the of", k=3, mode="bm25") == []


def test_stemming_matches_word_forms(library: Library):
    assert ids(search_text(library, "regenerating heart", k=1, mode="bm25")) == ["zebrafish"]


def test_unknown_mode_is_invalid_input(library: Library):
    with pytest.raises(InvalidInput, match="unknown mode"):
        search_text(library, QUERY, mode="sparse")


def test_filters_apply_to_bm25(library: Library):
    hits = search_text(library, "cardiac zebrafish galaxies", k=3, mode="bm25", filters=make_filters(since="2020-06-01"))
    assert ids(hits) == ["zebrafish"]
    hits = search_text(library, "cardiac zebrafish galaxies", k=3, mode="bm25", filters=make_filters(categories=["astro-ph"]))
    assert ids(hits) == ["galaxies"]


def test_filters_apply_to_both_sides_of_hybrid(library: Library):
    hits = search_text(library, "cardiac zebrafish galaxies", k=3, mode="hybrid", filters=make_filters(categories=["astro-ph"]))
    assert ids(hits) == ["galaxies"]
    assert search_text(library, QUERY, k=3, mode="hybrid", filters=make_filters(since="2030-01-01")) == []


def test_hybrid_scores_every_candidate_on_both_sides(library: Library):
    """The fused score is the convex combination of each side's max-normalised exact score."""
    dense = {h.id: h.score for h in search_text(library, QUERY, k=3, mode="dense")}
    bm25 = {h.id: h.score for h in search_text(library, QUERY, k=3, mode="bm25")}
    assert set(bm25) == {"society"}  # only one paper has the words: the others must get BM25 0, not vanish
    top_dense, top_bm25 = max(dense.values()), max(bm25.values())
    for hit in search_text(library, QUERY, k=3, mode="hybrid"):
        weight = library.settings.dense_weight
        expected = weight * dense[hit.id] / top_dense + (1 - weight) * bm25.get(hit.id, 0.0) / top_bm25
        assert hit.score == pytest.approx(expected, abs=1e-4)


def test_keyword_side_follows_deletes(library: Library, settings: Settings):
    delete(library, ["galaxies"])
    assert search_text(library, "galaxies", 5, mode="bm25") == []
    library.close()
    reopened = open_library(settings, library.folder)
    assert search_text(reopened, "galaxies dark matter", k=3, mode="bm25") == []
    reopened.close()


def test_keyword_side_follows_updates(library: Library):
    ingest(library, [Paper("galaxies", "Quasar jets", "Relativistic jets from quasars are collimated by magnetic fields.")])
    assert search_text(library, "dark matter halos", k=3, mode="bm25") == []
    assert ids(search_text(library, "quasar jets", k=3, mode="bm25")) == ["galaxies"]
    assert ids(search_text(library, "quasar jets", k=1, mode="hybrid")) == ["galaxies"]


def test_fusion_normalises_each_side():
    assert normalise(np.array([2.0, 1.0, 0.0]), "max").tolist() == [1.0, 0.5, 0.0]
    ranked = fuse([1, 2, 3], np.array([0.9, 0.3, 0.6]), np.array([0.0, 10.0, 5.0]), "max", 0.5)
    # 1: 0.5*1 + 0 = 0.5; 2: 0.5*(1/3) + 0.5 = 0.667; 3: 0.5*(2/3) + 0.25 = 0.583
    assert [pk for pk, _ in ranked] == [2, 3, 1]


def test_cli_search_mode(library: Library):
    from click.testing import CliRunner

    from paperlens.cli import main

    runner = CliRunner()
    folder = str(library.folder)
    library.close()
    result = runner.invoke(main, ["search", QUERY, "--mode", "bm25", "-k", "1", "--json", "--index", folder])
    assert result.exit_code == 0, result.output
    assert [hit["id"] for hit in json.loads(result.output)["results"]] == ["society"]
    result = runner.invoke(main, ["search", QUERY, "--mode", "sparse", "--index", folder])
    assert result.exit_code == 2 and "sparse" in result.output


def test_api_search_mode(library: Library, settings: Settings):
    from fastapi.testclient import TestClient

    from paperlens.api import create_app

    folder = library.folder
    library.close()
    with TestClient(create_app(Settings(index=folder))) as client:
        by_mode = {mode: client.get("/search", params={"q": QUERY, "k": 1, "mode": mode}) for mode in ("bm25", "dense")}
        assert [r.json()["results"][0]["id"] for r in by_mode.values()] == ["society", "zebrafish"]
        default = client.get("/search", params={"q": QUERY, "k": 3}).json()["results"]
        hybrid = client.get("/search", params={"q": QUERY, "k": 3, "mode": "hybrid"}).json()["results"]
        assert [h["id"] for h in default] == [h["id"] for h in hybrid]
        assert client.get("/search", params={"q": QUERY, "mode": "sparse"}).status_code == 422


def test_filters_inside_the_index_agree_with_pk_sets(library: Library, monkeypatch):
    """Dates, categories, popularity and authors are filtered inside tantivy; a set of pks is applied
    as a term set, or to a grown top list when it is wide: the three give the same answer."""
    people = [["Yann LeCun"], ["A. LeCun", "Müller, J."], ["Hinton, G.", "LeCun"], []]  # "LeCun": no initial written
    ingest(library, [Paper(f"heart-{i}", f"Heart study {i}", "Cardiac output " * (1 + i % 4), date=f"20{10 + i}-01-01",
                           categories=["q-bio.TO" if i % 2 else "physics.med-ph"], popularity=float(i), authors=people[i % 4])
                     for i in range(8)])
    heart = query_terms("cardiac heart")
    for filters in (make_filters(since="2015-01-01"), make_filters(categories=["q-bio"]), make_filters(categories=["Q-BIO"]),
                    make_filters(until="2014", min_popularity=2.0), make_filters(categories=["physics.med-ph", "q-bio.TO"]),
                    make_filters(authors=["LeCun"]), make_filters(authors=["Y. LeCun"]), make_filters(authors=["j muller", "Hinton"]),
                    make_filters(authors=["LeCun"], since="2013")):
        allowed = library.filter_columns().allowed(filters)
        inside = library.keywords.top(heart, 3, where=filters)
        as_set = library.keywords.top(heart, 3, allowed=allowed)
        with monkeypatch.context() as patch:
            patch.setattr(keyword, "FILTER_SET_FACTOR", 0)
            grown = library.keywords.top(heart, 3, allowed=allowed)
        assert [pk for pk, _ in inside] == [pk for pk, _ in as_set] == [pk for pk, _ in grown], filters
        assert np.allclose([s for _, s in inside], [s for _, s in as_set]), filters
        assert set(pk for pk, _ in inside) <= set(allowed.tolist()) and inside, filters
    by_pk = {library.store.get(f"heart-{i}").pk: i for i in range(8)}
    assert {by_pk.get(pk) for pk, _ in library.keywords.top(heart, 10, where=make_filters(categories=["q-bio"]))} == {1, 3, 5, 7, None}


@pytest.mark.parametrize("fields", ["text only", "no authors"])
def test_keyword_folder_of_an_older_schema_is_rebuilt(library: Library, settings: Settings, fields: str):
    """keywords/ written before the filter fields (or the author fields) existed is rebuilt on open,
    so filters work inside it."""
    import tantivy

    folder = library.folder
    galaxies = library.store.get("galaxies").paper
    galaxies.authors = ["Vera Rubin"]
    ingest(library, [galaxies])
    library.close()
    import shutil
    shutil.rmtree(folder / KEYWORD_DIR)
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("pk", stored=True, indexed=True, fast=True)
    builder.add_text_field("text", index_option="freq")
    builder.add_text_field("title", index_option="freq")
    if fields == "no authors":
        builder.add_integer_field("day", fast=True)
        builder.add_float_field("popularity", fast=True)
        builder.add_text_field("category", tokenizer_name="raw", index_option="basic")
        builder.add_text_field("category_prefix", tokenizer_name="raw", index_option="basic")
    (folder / KEYWORD_DIR).mkdir()
    tantivy.Index(builder.build(), str(folder / KEYWORD_DIR))
    with open_library(settings, folder) as reopened:
        assert any(KEYWORD_DIR in note for note in reopened.recovered)
        assert ids(search_text(reopened, "dark matter", k=3, mode="bm25", filters=make_filters(categories=["astro-ph"]))) == ["galaxies"]
        assert search_text(reopened, "dark matter", k=3, mode="bm25", filters=make_filters(since="2021")) == []
        for name, expected in (("V. Rubin", ["galaxies"]), ("Rubin, W.", [])):
            found = search_text(reopened, "dark matter", k=3, mode="bm25", filters=make_filters(authors=[name]))
            inside = reopened.keywords.top(query_terms("dark matter"), 3, where=make_filters(authors=[name]))
            assert ids(found) == expected and len(inside) == len(expected), name


def test_stale_keyword_index_is_rebuilt_from_the_store(library: Library, settings: Settings):
    """A kill between the store's commit and the keyword commit leaves keywords/ behind: it is rebuilt."""
    folder = library.folder
    library.close()
    manifest = Manifest.read(folder)
    manifest.keyword_generation -= 1
    manifest.write(folder)
    reopened = open_library(settings, folder)
    assert any(KEYWORD_DIR in note for note in reopened.recovered)
    assert ids(search_text(reopened, "dark matter", k=3, mode="bm25")) == ["galaxies"]
    reopened.close()
    import shutil
    shutil.rmtree(folder / KEYWORD_DIR)
    again = open_library(settings, folder)
    assert "missing" in " ".join(again.recovered)
    assert ids(search_text(again, "dark matter", k=3, mode="bm25")) == ["galaxies"]
    assert Manifest.read(folder).keyword_generation == again.store.generation()
    again.close()


def test_check_repairs_a_keyword_index_that_lost_papers(library: Library):
    library.keyword_cache.wait_settled(60)
    library.keyword_cache.index.write((), [library.store.get("galaxies").pk], library.store.generation())
    assert search_text(library, "dark matter", k=3, mode="bm25") == []
    report = check_library(library, repair=False)
    assert not report.ok and "keywords/ holds 2 papers, the store 3" in report.problems[0]
    report = check_library(library)
    assert report.ok and any("rebuilt keywords/" in note for note in report.repaired)
    assert ids(search_text(library, "dark matter", k=3, mode="bm25")) == ["galaxies"]


def test_damaged_keyword_index_is_rebuilt(library: Library, settings: Settings):
    folder = library.folder
    library.close()
    (folder / KEYWORD_DIR / "meta.json").write_text("{ not json")
    with open_library(settings, folder) as reopened:
        assert any("unreadable" in note for note in reopened.recovered)
        assert ids(search_text(reopened, "dark matter", k=3, mode="bm25")) == ["galaxies"]


def test_a_few_pks_and_many_pks_restrict_a_query_alike(demo_index_dir, monkeypatch):
    """Up to PK_UNION_MAX pks a restriction is a union of one-term queries, beyond it tantivy's term
    set: fill-in scores and a filter as pks come out the same either way."""
    with open_library(Settings(index=demo_index_dir, show_progress=False), demo_index_dir) as library:
        pks = library.store.vector_pks()
        some = pks[::3]
        for text in ("graph neural networks", "protein structure prediction", "language models"):
            query = query_terms(text)
            scores = library.keywords.scores(query, some.tolist())
            top = library.keywords.top(query, 5, allowed=some)
            with monkeypatch.context() as patch:
                patch.setattr(keyword, "PK_UNION_MAX", 0)
                assert library.keywords.scores(query, some.tolist()) == pytest.approx(scores)
                as_set = library.keywords.top(query, 5, allowed=some)
                assert [pk for pk, _ in as_set] == [pk for pk, _ in top]
                assert np.allclose([score for _, score in as_set], [score for _, score in top])
            assert scores and set(scores) <= set(some.tolist()) and top
            assert set(scores) == {pk for pk, _ in library.keywords.top(query, len(pks)) if pk in set(some.tolist())}


def test_a_deeper_keyword_list_changes_no_hybrid_answer(demo_index_dir, monkeypatch):
    """The keyword list read past the candidates only replaces fill-in queries by scores tantivy
    already had: every hybrid answer stays the same, score for score."""
    from paperlens import search

    settings = Settings(index=demo_index_dir, show_progress=False, fusion_depth=4)  # shallow: most finds need a fill-in
    queries = ["graph neural networks", "protein structure prediction", "dark matter", "language models for code",
               "reinforcement learning robots", "image segmentation medical"]
    with open_library(settings, demo_index_dir) as library:
        answers = {}
        for factor in (1, 3, 50):
            monkeypatch.setattr(search, "KEYWORD_LOOKUP_FACTOR", factor)
            answers[factor] = [[(h.id, round(h.score, 5)) for h in search_text(library, q, k=5)] for q in queries]
        assert answers[1] == answers[3] == answers[50]


def _random_rows(rng: np.random.Generator, pks: range, words: list[str]) -> list[tuple[int, str, str]]:
    """Papers of varied lengths (3 to ~600 words: field lengths past tantivy's exact one-byte range)."""
    rows = []
    for pk in pks:
        title = " ".join(rng.choice(words, size=int(rng.integers(2, 9))))
        abstract = " ".join(rng.choice(words, size=int(rng.integers(1, 600)), p=np.linspace(2, 1, len(words)) / np.linspace(2, 1, len(words)).sum()))
        rows.append((pk, title, abstract))
    return rows


def _tantivy_parts(index: keyword.KeywordIndex, pk: int, term: str) -> dict[str, float] | None:
    """idf, term count and stored length of one paper and term, from tantivy's own explanation."""
    query = tantivy.Query.boolean_query([
        (tantivy.Occur.Must, tantivy.Query.term_query(index._schema, "text", term)),
        (tantivy.Occur.Must, tantivy.Query.const_score_query(tantivy.Query.term_query(index._schema, "pk", pk), 0.0))])
    explained = keyword._explain(index._searcher, query)
    if explained is None:
        return None
    return {name: keyword._explained(explained, name + ",") for name in ("idf", "freq", "dl", "avgdl")}


def test_papers_of_a_commit_in_flight_score_as_tantivy_will(tmp_path):
    """PendingPapers' BM25 is tantivy's once the commit lands: each paper's term counts and stored
    length (one byte, rounded down), and each term's idf (N and document frequency counting the
    replaced papers, as tantivy does until a merge), as tantivy's explanations give them after the
    commit, with the snapshot's average length; weights multiply. Lengths cross the rounding's
    steps, and a word over tantivy's 40 characters is not counted."""
    rng = np.random.default_rng(7)
    words = [f"w{n}" for n in range(60)] + ["the", "of", "runs", "running"]
    rows = _random_rows(rng, range(1, 301), words)
    changed = _random_rows(rng, range(10, 20), words) + [(pk, title + " uniqueword", abstract) for pk, title, abstract in _random_rows(rng, range(301, 331), words)]
    changed += [(400 + n, "w5", " ".join(["w1", "x" * 45, *rng.choice(words[:60], size=length - 2)]))
                for n, length in enumerate([22, 23, 24, 39, 40, 41, 55, 56, 57, 87, 88, 1000, 4999])]
    index = keyword.KeywordIndex.open(tmp_path / "kw")
    index.write(rows, (), 1)
    before = index.snapshot()
    pending = keyword.PendingPapers(changed, [row[0] for row in changed])
    assert pending.ready(before)
    average = keyword._explained(before.explain_term("w1"), "avgdl,")
    index.write(changed, [row[0] for row in changed], 2)
    for query in (query_terms("w1 w7 w33 running"), [("w2", 1.0), ("w40", 0.3), ("uniqueword", 2.0)], query_terms("absent words only")):
        got = pending.scores(before, query)
        expected = {}
        for pk in [row[0] for row in changed]:
            parts = [(weight, _tantivy_parts(index, pk, term)) for term, weight in query]
            found = [weight * p["idf"] * 2.2 * p["freq"] / (p["freq"] + 1.2 * (0.25 + 0.75 * p["dl"] / average)) for weight, p in parts if p]
            if found:
                expected[pk] = sum(found)
        assert got.keys() == expected.keys()
        for pk, score in expected.items():
            assert got[pk] == pytest.approx(score, rel=1e-5), pk
    assert [keyword.stored_length(n) for n in (23, 24, 39, 40, 41, 55, 56, 57, 87, 88, 89, 151, 152)] == [23, 24, 39, 40, 40, 54, 56, 56, 84, 88, 88, 144, 152]


def test_a_view_of_a_commit_in_flight_ranks_as_the_commit_will(tmp_path):
    """A KeywordView (committed snapshot, less the papers a commit in flight changes or removes, plus
    its papers scored here) ranks as the index does once that commit has landed."""
    rng = np.random.default_rng(11)
    words = [f"w{n}" for n in range(3000)]  # each paper holds few of them: scores far apart
    rows = _random_rows(rng, range(1, 1201), words)
    changed = _random_rows(rng, range(5, 8), words) + _random_rows(rng, range(1201, 1206), words)  # 3 rewritten, 5 new
    removed = [1, 2, 3]
    index = keyword.KeywordIndex.open(tmp_path / "kw")
    index.write(rows, (), 1)
    before = index.snapshot()
    pending = keyword.PendingPapers(changed, [row[0] for row in changed] + removed)
    view = keyword.KeywordView(before, pending, lambda where: np.arange(1, 1206), lambda: index)
    index.write(changed, [row[0] for row in changed] + removed, 2)
    assert len(view) == len(index) == 1202
    ranked_new = set()
    for query in (query_terms("w1 w7 w33 w60"), query_terms("w79"), [("w3", 1.0), ("w4", 0.5)], query_terms(changed[0][1]), query_terms(changed[4][1])):
        want, got = index.top(query, 40), view.top(query, 30)
        # Every paper scored with the committed idf and the snapshot's average length, which the
        # commit moves a little (0.7 % more papers here): near-ties may swap at the edge of the list.
        assert {pk for pk, _ in want[:25]} <= {pk for pk, _ in got} <= {pk for pk, _ in want}
        after = index.scores(query, [pk for pk, _ in got])
        assert [score for _, score in got] == pytest.approx([after[pk] for pk, _ in got], rel=2e-3)
        ranked_new |= {pk for pk, _ in got[:5]} & {5, 6, 7, 1201, 1202, 1203, 1204, 1205}
        assert not {1, 2, 3} & {pk for pk, _ in view.top(query, 400)}
        some = [pk for pk, _ in want[:10]] + [1, 1206]
        assert view.scores(query, some).keys() == index.scores(query, some).keys()
    assert {5, 1202} <= ranked_new  # found by their new text
    allowed = np.array([5, 6, 1202, 1203, *range(100, 200)])
    assert {pk for pk, _ in view.top(query_terms("w1 w2 w3"), 50, allowed=allowed)} <= set(allowed.tolist())
