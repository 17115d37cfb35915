"""Queries: free text, by stored paper, by pasted text. Knows no HTTP and no terminal.

Free text has three modes: "dense" (the encoder + FAISS), "bm25" (keyword.py, tantivy) and
"hybrid" (the default), which fuses the two here, in ``fuse`` and nowhere else. Measured on
scifact-subset (benchmarks/relevance.py --ablation, nDCG@10, 47 queries): dense 0.800, BM25
0.789, reciprocal rank fusion 0.785 (k=60) and 0.804 (k=10, depth 1,000), convex combination
over z-scores 0.831, over min-max 0.837, over max-normalised scores 0.837. Max normalisation
(score / best score among the candidates, 0 as the floor of both sides) with every candidate's
exact score on both sides filled in barely depends on the candidate depth (0.843 at 20, 100 and
1,000 per side in a side-by-side run), unlike min-max and z-scores whose statistics move with
the depth; that is why it is the default. Dense weight 0.5 was best; 0.4, 0.6 and 0.7 gave
0.826, 0.830 and 0.829, so the choice is not on a knife edge.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .errors import InvalidInput, PaperNotFound
from .keyword import query_terms
from .library import Library
from .papers import Paper, author_line, clean_text, parse_date, InvalidRecord
from .store import Filters

__all__ = ["Filters", "Hit", "MODES", "Mode", "fuse", "make_filters", "rank_text", "search_text", "similar_to_paper", "similar_to_text", "rank_by_vector", "to_hits"]


Mode = Literal["dense", "bm25", "hybrid"]
MODES: tuple[str, ...] = ("dense", "bm25", "hybrid")
Ranked = list[tuple[int, float]]


@dataclass
class Hit:
    id: str
    title: str
    score: float
    date: str | None
    authors: str
    url: str | None
    snippet: str
    categories: list[str] = field(default_factory=list)
    popularity: float = 0.0


def snippet(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:.") + "…"


def make_filters(
    since: str | None = None,
    until: str | None = None,
    categories: list[str] | tuple[str, ...] | None = None,
    min_popularity: float | None = None,
) -> Filters:
    """Validated filters: dates as YYYY-MM-DD (or YYYY-MM, YYYY), shared by the API and the CLI."""
    try:
        since_day = parse_date(since) if since else None
        until_day = parse_date(until) if until else None
    except InvalidRecord as exc:
        raise InvalidInput(f"{exc}: use YYYY-MM-DD") from None
    if until and until_day and len(until.strip()) <= 7:
        # 'until 2024' and 'until 2024-06' mean the end of that period
        until_day = until_day[:4] + ("-12-31" if len(until.strip()) == 4 else until_day[4:8] + "31")
    if since_day and until_day and since_day > until_day:
        raise InvalidInput(f"since ({since_day}) is after until ({until_day})")
    cats = tuple(clean_text(c).strip() for c in (categories or ()) if c and c.strip())
    return Filters(since=since_day, until=until_day, categories=cats, min_popularity=min_popularity)


def check_k(library: Library, k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= library.settings.max_k:
        raise InvalidInput(f"k must be between 1 and {library.settings.max_k}, got {k!r}")
    return k


def check_text(library: Library, text: str, what: str = "query") -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{what} is empty")
    text = clean_text(text)
    if len(text) > library.settings.max_query_chars:
        raise InvalidInput(f"{what} is {len(text)} characters; the limit is {library.settings.max_query_chars}")
    return text.strip()


def allowed_pks(library: Library, filters: Filters | None) -> np.ndarray | None:
    """The pks that pass the filters, None when no filter is set (everything passes)."""
    return library.filter_columns().allowed(filters) if filters is not None and filters.active() else None


# Approximate layouts (HNSW with SQ8, IVF-PQ) return this many candidates at least, re-scored
# with the float32 vectors kept in the store: quantised distances misorder near neighbours.
# benchmarks/speed.py at 1M papers: recall@10 0.932 in FAISS, 0.959 re-ranked (depth 100: same).
RERANK_DEPTH = 40


def rank_by_vector(
    library: Library, vectors: np.ndarray, k: int, filters: Filters | None = None, exclude: set[int] = frozenset(),
    allowed: np.ndarray | None = None, exact: bool = True,
) -> list[tuple[int, float]]:
    """(pk, score) of the top k for one query vector, filters (or ``allowed`` pks) applied inside FAISS,
    ``exclude`` left out. With ``exact`` an approximate layout's candidates are re-scored with the
    stored vectors; callers that re-score candidates themselves pass False."""
    if library.index is None or len(library.index) == 0:
        return []
    if allowed is None:
        allowed = allowed_pks(library, filters)
    if allowed is not None and len(allowed) == 0:
        return []
    # No lock: writers swap in a changed copy, so this search keeps a whole index to itself.
    index = library.index
    query = np.atleast_2d(vectors)
    rerank = exact and index.layout != "flat"
    wanted = k + len(exclude)
    scores, ids = index.search(query, max(wanted, RERANK_DEPTH) if rerank else wanted, allowed)
    ranked = [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0 and int(i) not in exclude]
    if rerank and ranked:
        # Candidates deleted since the index snapshot found them drop out here.
        pks, stored = library.store.candidate_vectors([pk for pk, _ in ranked], library.manifest.dim)
        exact_scores = stored @ query[0]
        ranked = [(pks[i], float(exact_scores[i])) for i in np.argsort(-exact_scores, kind="stable")]
    return ranked[:k]


def to_hits(library: Library, ranked: list[tuple[int, float]]) -> list[Hit]:
    stored = library.store.get_many(pk for pk, _ in ranked)
    limit = library.settings.snippet_chars
    hits = []
    for pk, score in ranked:
        if pk not in stored:  # deleted between the search and this read
            continue
        paper: Paper = stored[pk].paper
        hits.append(Hit(paper.id, paper.title, round(score, 6), paper.date, author_line(paper), paper.url,
                        snippet(paper.abstract, limit), paper.categories, paper.popularity))
    return hits


def check_mode(library: Library, mode: str | None) -> str:
    mode = library.settings.search_mode if mode is None else mode
    if mode not in MODES:
        raise InvalidInput(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def normalise(scores: np.ndarray, how: str) -> np.ndarray:
    """Put one side's scores on a common scale before the convex combination."""
    if how == "max":  # both sides have 0 as their natural floor: BM25 of no match, cosine of unrelated
        top = scores.max(initial=0.0)
        return scores / top if top > 0 else np.zeros_like(scores)
    if how == "minmax":
        spread = scores.max() - scores.min()
        return (scores - scores.min()) / spread if spread > 0 else np.zeros_like(scores)
    if how == "zscore":
        std = scores.std()
        return (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)
    raise InvalidInput(f"unknown score normalisation {how!r}")


def rrf(lists: list[Ranked], k: int) -> Ranked:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the lists a paper appears in."""
    fused: dict[int, float] = {}
    for ranked in lists:
        for rank, (pk, _) in enumerate(ranked, start=1):
            fused[pk] = fused.get(pk, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


def fuse(pks: list[int], dense: np.ndarray, keyword: np.ndarray, how: str, dense_weight: float) -> Ranked:
    """Convex combination of the two sides' normalised scores over one candidate list, best first."""
    if not pks:
        return []
    fused = dense_weight * normalise(dense, how) + (1.0 - dense_weight) * normalise(keyword, how)
    order = np.argsort(-fused, kind="stable")
    return [(pks[i], float(fused[i])) for i in order]


def keyword_rank(library: Library, query: str, k: int, filters: Filters | None = None) -> Ranked:
    """(pk, BM25 score) of the top k papers with a query word; empty when the query has no usable word."""
    return library.keywords.top(query_terms(query), k, library.settings.title_weight, allowed_pks(library, filters))


def hybrid_rank(library: Library, query: str, k: int, filters: Filters | None = None) -> Ranked:
    """Candidates from both sides, each scored exactly by both sides, then fused.

    The filters are resolved once. The keyword side's top list (tantivy, which releases the GIL)
    is searched on a worker thread while this one encodes the query and searches FAISS: at 1M
    papers the two take ~8 ms each. One more tantivy query then scores the dense side's finds
    that the keyword side did not return."""
    settings = library.settings
    depth = max(k, settings.fusion_depth)
    allowed = allowed_pks(library, filters)
    if allowed is not None and len(allowed) == 0:
        return []
    terms = query_terms(query)
    keyword_top = library.workers.submit(library.keywords.top, terms, depth, settings.title_weight, allowed)
    try:
        vector = library.encoder.encode_query(query)
        dense = rank_by_vector(library, vector, depth, allowed=allowed, exact=False)
    finally:
        keyword = keyword_top.result()
    if settings.fusion == "rrf":
        return rrf([dense, keyword], settings.rrf_k)[:k]
    # Fill in the side that did not return a candidate, so that depth decides only who competes,
    # not how a paper is scored: a dense-only find still gets its (lower) BM25 score and vice versa.
    # The BM25 fill-in costs in proportion to the papers it scores, so it is split across the
    # workers, and the stored vectors are read meanwhile.
    bm25 = dict(keyword)
    dense_only = [pk for pk, _ in dense if pk not in bm25]
    parts = max(1, min(os.cpu_count() or 1, len(dense_only) // 25))
    fill_ins = [library.workers.submit(library.keywords.scores, terms, chunk.tolist(), settings.title_weight)
                for chunk in np.array_split(np.asarray(dense_only, dtype=np.int64), parts) if len(chunk)]
    try:
        # Candidates deleted since the index snapshot found them drop out here.
        pks, vectors = library.store.candidate_vectors(list(dict.fromkeys(pk for pk, _ in dense + keyword)), library.manifest.dim)
    finally:
        for fill_in in fill_ins:
            bm25.update(fill_in.result())
    keyword_scores = np.array([bm25.get(pk, 0.0) for pk in pks], dtype=np.float32)
    dense_scores = (vectors @ vector).astype(np.float32)
    return fuse(pks, dense_scores, keyword_scores, settings.fusion, settings.dense_weight)[:k]


def rank_text(library: Library, query: str, k: int, filters: Filters | None = None, mode: str | None = None) -> Ranked:
    """(pk, score) of the top k papers for free text in one mode; the engine behind search_text."""
    mode = check_mode(library, mode)
    if library.index is None:
        return []
    if mode == "bm25":
        return keyword_rank(library, query, k, filters)
    if mode == "dense":
        return rank_by_vector(library, library.encoder.encode_query(query), k, filters)
    return hybrid_rank(library, query, k, filters)


def search_text(library: Library, query: str, k: int = 10, filters: Filters | None = None, mode: str | None = None) -> list[Hit]:
    """Free text → the k best papers; ``mode`` is "dense", "bm25" or "hybrid" (None: settings.search_mode)."""
    query = check_text(library, query)
    check_k(library, k)
    return to_hits(library, rank_text(library, query, k, filters, mode))


def similar_to_paper(library: Library, paper_id: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
    """Neighbours of a stored paper, from its stored vector; the paper and its duplicates left out."""
    check_k(library, k)
    found = library.store.paper_and_copies(paper_id)
    if found is None:
        raise PaperNotFound(paper_id)
    pk, copies = found
    vector = library.store.get_vectors([pk], library.manifest.dim)
    exclude = {pk, *copies}
    return to_hits(library, rank_by_vector(library, vector, k, filters, exclude))


def similar_to_text(library: Library, text: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
    """Neighbours of a pasted abstract that is not in the index."""
    text = check_text(library, text, "text")
    check_k(library, k)
    if library.index is None:
        return []
    return to_hits(library, rank_by_vector(library, library.encoder.encode_query(text), k, filters))
