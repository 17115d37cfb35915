"""The in-memory filter columns agree with the SQL filter they replace, before and after writes."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from paperlens.caches import FilterCache
from paperlens.config import Settings
from paperlens.library import delete, ingest, open_library
from paperlens.papers import Paper
from paperlens.search import make_filters, search_text
from paperlens.store import Filters, Store

CATEGORIES = ["cs.LG", "cs.CL", "CS.ai", "cs", "csx.ZZ", "q-bio.NC", "stat.ML", "math_AP"]


def sql_filter(store: Store, filters: Filters) -> np.ndarray:
    """The SQL filter the columns replaced: the reference they must agree with."""
    clauses, params = [], []
    if filters.since:
        clauses.append("date >= ?")
        params.append(filters.since)
    if filters.until:
        clauses.append("date <= ?")
        params.append(filters.until)
    if filters.min_popularity is not None:
        clauses.append("popularity >= ?")
        params.append(filters.min_popularity)
    if filters.categories:  # 'cs' matches 'cs' and (LIKE: case-insensitively) 'cs.*'
        ors = " OR ".join("(category = ? OR category LIKE ? ESCAPE '\\')" for _ in filters.categories)
        clauses.append(f"pk IN (SELECT pk FROM paper_categories WHERE {ors})")
        for category in filters.categories:
            escaped = category.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.extend([category, f"{escaped}.%"])
    rows = store.conn.execute(f"SELECT pk FROM papers WHERE {' AND '.join(clauses) or '1'} ORDER BY pk", params).fetchall()
    return np.array([row[0] for row in rows], dtype=np.int64)


def random_papers(rng: random.Random, start: int, count: int) -> list[Paper]:
    papers = []
    for i in range(start, start + count):
        date = None if rng.random() < 0.15 else f"{rng.randrange(2015, 2026)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        papers.append(Paper(f"f{i}", f"Paper {i}", f"Abstract of paper {i} on topic {i % 5}.", date=date,
                            categories=rng.sample(CATEGORIES, rng.randrange(0, 3)), popularity=float(rng.randrange(0, 50))))
    return papers


def random_filters(rng: random.Random):
    since = rng.choice([None, "2018", "2020-06", "2021-03-15"])
    until = rng.choice([None, "2022", "2023-01-31", "2019-12"])
    if since and until and since > until:
        since, until = until, since
    return make_filters(since=since, until=until, categories=rng.sample(["cs", "CS", "cs.LG", "q-bio", "math_AP", "stat"], rng.randrange(0, 3)),
                        min_popularity=rng.choice([None, 10.0, 40.0]))


def test_filter_columns_match_sql_through_writes(tmp_path: Path):
    rng = random.Random(7)
    with open_library(Settings(show_progress=False), tmp_path / "index", create=True) as library:
        ingest(library, random_papers(rng, 0, 120))
        loaded = library.filter_columns()  # loaded now, so the writes below must patch it
        ingest(library, random_papers(rng, 100, 40))  # 20 updated (new dates, categories), 20 new
        delete(library, [f"f{i}" for i in range(0, 120, 9)])
        changed = random_papers(rng, 55, 5)  # none of them deleted above
        for paper in changed:  # metadata only: nothing re-encoded, the filters must still follow
            paper.title, paper.abstract = f"Paper {paper.id[1:]}", f"Abstract of paper {paper.id[1:]} on topic {int(paper.id[1:]) % 5}."
        assert ingest(library, changed).encoded == 0
        assert library.filter_cache.columns is loaded  # the writes noted their rows; the next read patches them in
        for _ in range(200):
            filters = random_filters(rng)
            expected = sql_filter(library.store, filters)
            assert np.array_equal(library.filter_columns().allowed(filters), expected), filters
            # the same filter inside the keyword index: every paper holds "paper", so all that pass come back
            found = library.keywords.top([("paper", 1.0)], 1000, where=filters)
            assert sorted(pk for pk, _ in found) == expected.tolist(), filters


def test_filtered_search_sees_a_paper_ingested_after_the_columns_loaded(tmp_path: Path):
    with open_library(Settings(show_progress=False), tmp_path / "index", create=True) as library:
        ingest(library, [Paper("old", "Coral reefs", "Coral reefs bleach in warm water.", date="2019-01-01", categories=["q-bio.PE"])])
        assert search_text(library, "coral reefs", filters=make_filters(since="2020")) == []
        ingest(library, [Paper("new", "Coral reefs again", "Coral reefs recover after bleaching.", date="2024-01-01", categories=["q-bio.PE"])])
        assert [hit.id for hit in search_text(library, "coral reefs", filters=make_filters(since="2020"))] == ["new"]
        delete(library, ["new"])
        assert search_text(library, "coral reefs", filters=make_filters(categories=["q-bio"]), k=5)[0].id == "old"
        assert [h.id for h in search_text(library, "coral reefs", filters=make_filters(since="2020"))] == []


def test_a_write_past_the_pending_bound_patches_the_columns_itself(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(FilterCache, "MAX_PENDING", 2)
    rng = random.Random(3)
    with open_library(Settings(show_progress=False), tmp_path / "index", create=True) as library:
        ingest(library, random_papers(rng, 0, 20))
        loaded = library.filter_columns()
        ingest(library, random_papers(rng, 20, 2))  # two pending rows: left to the next read
        assert library.filter_cache.columns is loaded
        ingest(library, random_papers(rng, 22, 1))  # three: patched in by this write
        assert library.filter_cache.columns is not loaded and len(library.filter_cache.columns.pks) == 23
        delete(library, ["f3"])
        filters = make_filters(since="2000")
        assert np.array_equal(library.filter_columns().allowed(filters), sql_filter(library.store, filters))
