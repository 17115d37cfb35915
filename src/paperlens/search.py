"""Queries: free text, by stored paper, by pasted text. Knows no HTTP and no terminal.

Every request has two sides and three modes: "dense" (the encoder or a stored vector + FAISS),
"bm25" (keyword.py, tantivy) and "hybrid" (the default), which fuses the two in ``fuse`` and
nowhere else. Free text is its own keyword query; a paper (by id or pasted) becomes a "more like
this" query of its most distinctive terms (keyword.MoreLikeThis), as do the liked papers of a
recommendation or a feed. Hybrid takes candidates from both sides, scores every candidate exactly
on both (a BM25 fill-in for dense-only finds and stored vectors for keyword-only ones), puts each
side on a common scale (score / best score, ``normalise``; it barely moves with the candidate
depth, unlike min-max and z-scores) and takes a convex combination: ``dense_weight`` for free
text, ``similar_dense_weight`` for papers, optionally moved per query towards the side whose top
list stands out (``fusion_weighting``). The measurements behind these choices, with their
commands: the README's Relevance section and benchmarks/relevance.py (--ablation, --loso).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from .duplicates import copies_of, distinct_top
from .errors import InvalidInput, PaperNotFound
from .keyword import INSIDE_FILTER_MAX_SHARE, MAX_TERMS, MoreLikeThis, Terms, query_terms
from .library import Library, resolve_id
from .names import author_key
from .papers import InvalidRecord, Paper, author_count, clean_text, parse_date
from .store import Filters

__all__ = [
    "MODES",
    "SORTS",
    "DenseSide",
    "Filters",
    "Hit",
    "KeywordQuery",
    "Mode",
    "NearVector",
    "Sort",
    "fuse",
    "make_filters",
    "rank",
    "rank_by_vector",
    "rank_text",
    "search_text",
    "similar_to_paper",
    "similar_to_text",
    "to_hits",
]


Mode = Literal["dense", "bm25", "hybrid"]
MODES: tuple[str, ...] = ("dense", "bm25", "hybrid")
Sort = Literal["relevance", "date", "popularity"]
SORTS: tuple[str, ...] = ("relevance", "date", "popularity")
SORT_DOC = ("relevance (default); date: newest first, undated papers last; popularity: most upvoted/cited first. "
            "date and popularity reorder the relevant papers only: the top max(k, PAPERLENS_SORT_POOL = 100) by "
            "relevance, ties kept in relevance order")
Ranked = list[tuple[int, float]]


@dataclass
class Hit:
    id: str
    title: str
    score: float
    date: str | None
    authors: list[str]  # names; empty when the source gives only a count (author_count)
    url: str | None
    snippet: str
    categories: list[str] = field(default_factory=list)
    popularity: float = 0.0
    author_count: int = 0  # len(authors), or the count a listing gives without names ("4 authors")


def snippet(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:.") + "…"


# Each name asked for is one pass over every stored author (a few ms at 1M papers).
MAX_AUTHORS = 50
MAX_AUTHOR_CHARS = 200


def make_filters(
    since: str | None = None,
    until: str | None = None,
    categories: list[str] | tuple[str, ...] | None = None,
    min_popularity: float | None = None,
    authors: list[str] | tuple[str, ...] | None = None,
) -> Filters:
    """Validated filters: dates as YYYY-MM-DD (or YYYY-MM, YYYY), shared by the API and the CLI.

    ``authors``: a paper passes when any of them is among its authors (names.author_key); an
    empty name, or one without letters, is an error, not a filter that matches everything."""
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
    names = tuple(" ".join(clean_text(name).split()) for name in (authors or ()))
    if len(names) > MAX_AUTHORS:
        raise InvalidInput(f"{len(names)} authors asked for; the limit is {MAX_AUTHORS}")
    for name in names:
        if len(name) > MAX_AUTHOR_CHARS:
            raise InvalidInput(f"author {name[:40]!r}… is {len(name)} characters; the limit is {MAX_AUTHOR_CHARS}")
        if author_key(name) is None:
            raise InvalidInput(f"author {name!r} has no letters: give a name such as 'LeCun' or 'Y. LeCun'" if name
                               else "author is empty: give a name such as 'LeCun' or 'Y. LeCun'")
    return Filters(since=since_day, until=until_day, categories=cats, min_popularity=min_popularity, authors=names)


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
    """The pks that pass the filters, None when no filter is set (everything passes). A category no
    paper has is an error that says so, not an empty answer that looks like no match."""
    if filters is None or not filters.active():
        return None
    columns = library.filter_columns()
    unknown = columns.unknown_categories(filters.categories)
    if unknown:
        known = sorted(columns.categories)
        listed = ", ".join(known[:12]) + (f", … ({len(known)} in all)" if len(known) > 12 else "")
        raise InvalidInput(f"no paper in this index has the category {unknown[0]!r}"
                           + (f"; its categories: {listed}" if known else "; its papers have no categories"))
    return columns.allowed(filters)


# Approximate layouts (HNSW with SQ8, IVF-PQ) return this many candidates at least, re-scored
# with the float32 vectors kept in the store: quantised distances misorder near neighbours
# (benchmarks/speed.py gives recall@10 before and after the re-ranking).
RERANK_DEPTH = 40
# A filter that keeps at most this many papers (an author, a narrow date range) is searched
# exactly over their stored vectors: an approximate layout's filtered search walks much of its
# graph or lists to find so few, and reading this many vectors costs less
# (benchmarks/scale.py's author= rows).
EXACT_FILTER_MAX = 1000


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
    if allowed is not None and len(allowed) <= EXACT_FILTER_MAX and index.layout != "flat":
        return _exact_among(library, query[0], allowed, k, exclude)
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


def _exact_among(library: Library, query: np.ndarray, allowed: np.ndarray, k: int, exclude: set[int]) -> Ranked:
    """The top k of a narrow filter's papers, scored exactly with their stored vectors."""
    pks, stored = library.store.candidate_vectors([int(pk) for pk in allowed if int(pk) not in exclude], library.manifest.dim)
    scores = stored @ query
    return [(pks[i], float(scores[i])) for i in np.argsort(-scores, kind="stable")[:k]]


def to_hits(library: Library, ranked: list[tuple[int, float]]) -> list[Hit]:
    stored = library.store.get_many(pk for pk, _ in ranked)
    limit = library.settings.snippet_chars
    hits = []
    for pk, score in ranked:
        if pk not in stored:  # deleted between the search and this read
            continue
        paper: Paper = stored[pk].paper
        hits.append(Hit(paper.id, paper.title, round(score, 6), paper.date, paper.authors, paper.url,
                        snippet(paper.abstract, limit), paper.categories, paper.popularity, author_count(paper)))
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


@dataclass(frozen=True)
class KeywordQuery:
    """The keyword side of one request: terms whose BM25 counts for a paper and, for
    recommendations, terms (of disliked papers) whose BM25 counts against it."""

    terms: Terms
    negative: Terms = ()
    negative_weight: float = 0.0
    # The request's filters: the keyword index may apply them inside itself rather than as the
    # allowed pks (KeywordIndex.top).
    where: Filters | None = None


class DenseSide(Protocol):
    """The dense side of one request: where its candidates come from, and how it scores any paper."""

    def search(self, depth: int, exact: bool) -> Ranked:
        """(pk, score) of its ``depth`` best papers, best first."""

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """Scores of stored vectors (n, d): how a paper found by the keyword side is scored here."""


class NearVector:
    """Dense side of one query vector: free text or a pasted abstract (encoded when first needed) or
    a stored paper's vector."""

    def __init__(self, library: Library, allowed: np.ndarray | None, exclude: set[int] = frozenset(),
                 text: str | None = None, vector: np.ndarray | None = None):
        self.library, self.allowed, self.exclude, self.text, self._vector = library, allowed, exclude, text, vector

    @property
    def vector(self) -> np.ndarray:
        if self._vector is None:
            self._vector = self.library.encoder.encode_query(self.text)
        return self._vector

    def search(self, depth: int, exact: bool) -> Ranked:
        return rank_by_vector(self.library, self.vector, depth, exclude=self.exclude, allowed=self.allowed, exact=exact)

    def score(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self.vector


def keyword_top(library: Library, query: KeywordQuery, depth: int, allowed: np.ndarray | None = None,
                exclude: set[int] = frozenset()) -> Ranked:
    """(pk, BM25 score) of the ``depth`` best papers for the keyword query, ``exclude`` left out;
    disliked papers' terms lower the scores of the papers found."""
    settings = library.settings
    where = query.where if query.where is not None and query.where.active() else None
    found = library.keywords.top(query.terms, depth + len(exclude), settings.title_weight, allowed, where)
    ranked = [(pk, s) for pk, s in found if pk not in exclude][:depth]
    if query.negative and ranked:
        against = library.keywords.scores(list(query.negative), [pk for pk, _ in ranked], settings.title_weight)
        ranked = sorted(((pk, s - query.negative_weight * against.get(pk, 0.0)) for pk, s in ranked), key=lambda item: -item[1])
    return ranked


def rank(library: Library, mode: str, dense: DenseSide, keyword: Callable[[], KeywordQuery], k: int,
         allowed: np.ndarray | None = None, exclude: set[int] = frozenset(), dense_weight: float | None = None) -> Ranked:
    """(pk, score) of the top k in one mode: the one ranking behind search, similar and recommend.

    ``keyword`` makes the keyword query when it is needed (on a worker thread in hybrid mode: a
    paper's query reads term statistics from the index)."""
    if library.index is None or (allowed is not None and len(allowed) == 0):
        return []
    if mode == "dense":
        return dense.search(k, exact=True)
    if mode == "bm25":
        query = keyword()  # disliked papers' terms reorder a deeper list, not only the first k
        depth = max(k, library.settings.fusion_depth) if query.negative else k
        return keyword_top(library, query, depth, allowed, exclude)[:k]
    return hybrid_rank(library, dense, keyword, k, allowed, exclude, dense_weight)


# Hybrid reads the keyword side this many times deeper than its candidates: tantivy's top 300
# costs about what its top 100 does (block-max WAND), and the extra scores are exact BM25 for the
# dense side's finds among them and a lower bound for the rest, so fewer need a fill-in query
# (benchmarks/stages.py).
KEYWORD_LOOKUP_FACTOR = 3


@dataclass
class _KeywordSide:
    query: KeywordQuery
    listed: Ranked  # the top list, ``lookup`` long: its first ``depth`` are candidates, the rest only score
    lookup: int
    pks: list[int]  # the candidates still stored, and their stored vectors (read here, off the dense side's thread)
    vectors: np.ndarray


def _keyword_side(library: Library, keyword: Callable[[], KeywordQuery], depth: int, allowed: np.ndarray | None,
                  exclude: set[int], with_vectors: bool, query_made: Future | None = None) -> _KeywordSide:
    """The keyword query, its top list and the length asked of it: KEYWORD_LOOKUP_FACTOR x ``depth``, or ``depth`` when
    disliked papers' terms count against (each listed paper then costs a scoring query) or when a
    wide filter is applied to a grown top list (which grows with the depth: +2-3 ms at 1M papers).
    The candidates' stored vectors are read here too: at 1M papers the keyword side is the longer
    of the two, and the ~0.7 ms read then no longer waits for it on the requesting thread.
    ``query_made`` gets the query (or the error making it) as soon as it is made."""
    try:
        query = keyword()
    except BaseException as error:
        if query_made is not None:
            query_made.set_exception(error)
        raise
    if query_made is not None:
        query_made.set_result(query)
    wide = allowed is not None and len(allowed) >= INSIDE_FILTER_MAX_SHARE * max(len(library.keywords), 1)
    lookup = depth if query.negative or wide else KEYWORD_LOOKUP_FACTOR * depth
    listed = keyword_top(library, query, lookup, allowed, exclude)
    pks, vectors = [], np.zeros((0, library.manifest.dim), dtype=np.float32)
    if with_vectors and listed:
        pks, vectors = library.store.candidate_vectors([pk for pk, _ in listed[:depth]], library.manifest.dim)
    return _KeywordSide(query, listed, lookup, pks, vectors)


def hybrid_rank(library: Library, dense: DenseSide, keyword: Callable[[], KeywordQuery], k: int,
                allowed: np.ndarray | None = None, exclude: set[int] = frozenset(), dense_weight: float | None = None) -> Ranked:
    """Candidates from both sides, each scored exactly by both sides, then fused.

    The keyword side's top list (tantivy, which releases the GIL) is searched, and its candidates'
    vectors read, on a worker thread while this one encodes the query, searches FAISS and reads the
    dense finds' vectors (on this thread first, below Settings.keyword_thread_min_papers). Its first
    ``depth`` papers are its candidates; the rest of the list (``_keyword_side``) only scores. A
    dense find missing from the whole list then gets its own BM25 score. When the keyword side is
    still searching after the dense side is done and a core is spare, this thread scores every
    dense find then (``_dense_bm25_while_waiting``); otherwise one more tantivy query afterwards
    scores those that could still reach the top k (``_worth_filling``)."""
    settings = library.settings
    depth = max(k, settings.fusion_depth)
    with library.hybrid_searches.entered() as running:
        query_made: Future = Future()
        keyword_args = (library, keyword, depth, allowed, exclude, settings.fusion != "rrf", query_made)
        if library.index is not None and len(library.index) >= settings.keyword_thread_min_papers:
            keyword_future = library.workers.submit(_keyword_side, *keyword_args)
        else:
            keyword_future = _done(_keyword_side, *keyword_args)
        try:
            dense_ranked = dense.search(depth, exact=False)
            # Candidates deleted since the index snapshot found them drop out here.
            dense_pks, dense_vectors = library.store.candidate_vectors([pk for pk, _ in dense_ranked], library.manifest.dim)
            # Each hybrid search keeps two threads busy until here; past that, scoring ahead takes a core others need.
            spare_core = settings.fusion != "rrf" and 2 * running <= (os.cpu_count() or 1)
            dense_bm25 = _dense_bm25_while_waiting(library, keyword_future, query_made, dense_pks) if spare_core else None
        finally:
            side = keyword_future.result()
    query, keyword_listed, lookup = side.query, side.listed, side.lookup
    keyword_ranked = keyword_listed[:depth]
    if settings.fusion == "rrf":
        return rrf([dense_ranked, keyword_ranked], settings.rrf_k)[:k]
    bm25 = dict(keyword_listed)
    known = set(dense_pks)
    new_rows = [row for row, pk in enumerate(side.pks) if pk not in known]
    keyword_pks, keyword_vectors = [side.pks[row] for row in new_rows], side.vectors[new_rows]
    pks = dense_pks + keyword_pks
    dense_scores = dense.score(np.concatenate([dense_vectors, keyword_vectors])).astype(np.float32)
    weight = settings.dense_weight if dense_weight is None else dense_weight
    if settings.fusion_weighting == "confidence":
        weight = confident_weight(weight, [s for _, s in dense_ranked], [s for _, s in keyword_ranked])
    # Fill in the side that did not return a candidate, so that depth decides only who competes,
    # not how a paper is scored: a dense-only find still gets its (lower) BM25 score.
    dense_only = [pk for pk in dense_pks if pk not in bm25]
    if dense_bm25 is not None:  # every dense find is scored already
        bm25.update((pk, dense_bm25[pk]) for pk in dense_only if pk in dense_bm25)
        dense_only = []
    elif dense_only and not query.negative and settings.fusion == "max":
        dense_only = _worth_filling(pks, dense_scores, bm25, keyword_listed, dense_only, lookup, k, weight)
    fill_ins = _split_scores(library, query.terms, dense_only)
    against = _split_scores(library, query.negative, dense_only) if query.negative else []
    for fill_in in fill_ins:
        bm25.update(fill_in.result())
    for part in against:  # keyword_top already took the negatives off its own finds
        for pk, score in part.result().items():
            bm25[pk] = bm25.get(pk, 0.0) - query.negative_weight * score
    keyword_scores = np.array([bm25.get(pk, 0.0) for pk in pks], dtype=np.float32)
    return fuse(pks, dense_scores, keyword_scores, settings.fusion, weight)[:k]


def _done(function: Callable, *args) -> Future:
    """``function(*args)`` run on this thread, as a finished future."""
    future: Future = Future()
    try:
        future.set_result(function(*args))
    except BaseException as error:  # raised by result(), as from a worker
        future.set_exception(error)
    return future


def _dense_bm25_while_waiting(library: Library, keyword_future: Future, query_made: Future, pks: list[int]) -> dict[int, float] | None:
    """BM25 of every dense find ({pk: score}, papers without a query term left out), scored while
    the keyword side is still searching: at 1M papers a claim's top list takes ~3 ms longer than
    the dense side, and scoring a hundred papers ~1.8 ms, which afterwards would add to the search.
    None when the keyword side is done first, or disliked papers' terms count against."""
    if keyword_future.done():
        return None
    query = query_made.result()
    if query.negative or not query.terms:
        return None
    return library.keywords.scores(list(query.terms), pks, library.settings.title_weight)


def _worth_filling(pks: list[int], dense_scores: np.ndarray, bm25: dict[int, float], keyword_ranked: Ranked,
                   dense_only: list[int], depth: int, k: int, weight: float) -> list[int]:
    """The dense-only finds whose fused score could still reach the top k: the rest cannot change it.

    A paper missing from a full keyword list scores at most the list's last BM25; a list shorter
    than ``depth`` holds every paper with a query term, so the others score 0. Under max
    normalisation neither side's best score moves with the fill-in, so a find whose bound falls
    below the k-th exact fused score among the papers the keyword side did return is left at 0."""
    if len(keyword_ranked) < depth:
        return []
    floor = min(score for _, score in keyword_ranked)
    bound = fuse(pks, dense_scores, np.array([bm25.get(pk, floor) for pk in pks], dtype=np.float32), "max", weight)
    exact = [score for pk, score in bound if pk in bm25]
    if len(exact) < k:
        return dense_only
    kth = sorted(exact, reverse=True)[k - 1]
    bounds = dict(bound)
    return [pk for pk in dense_only if bounds[pk] >= kth]


def side_confidence(scores: list[float]) -> float:
    """How far a side's top 10 stands out of its own top list, 0 to 1: (s1 - s10) / (s1 - s_last).
    Scale-free, so BM25 and cosine compare; a side that finds nothing has 0."""
    if len(scores) < 2:
        return 0.0
    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    spread = ordered[0] - ordered[-1]
    return float((ordered[0] - ordered[min(9, len(ordered) - 1)]) / spread) if spread > 0 else 0.0


def confident_weight(dense_weight: float, dense: list[float], keyword: list[float]) -> float:
    """The dense share of one query's fusion, moved towards the side whose top list stands out more
    (settings.fusion_weighting = "confidence")."""
    dense_conf, keyword_conf = side_confidence(dense), side_confidence(keyword)
    mixed = dense_weight * dense_conf + (1.0 - dense_weight) * keyword_conf
    return dense_weight * dense_conf / mixed if mixed > 0 else dense_weight


def _split_scores(library: Library, terms: Terms, pks: list[int]) -> list[Future]:
    """BM25 of ``pks`` for ``terms``, split across the query workers (futures of {pk: score})."""
    if not terms or not pks:
        return []
    parts = max(1, min(os.cpu_count() or 1, len(pks) // 25))
    return [library.workers.submit(library.keywords.scores, list(terms), chunk.tolist(), library.settings.title_weight)
            for chunk in np.array_split(np.asarray(pks, dtype=np.int64), parts) if len(chunk)]


def check_sort(sort: str | None) -> str:
    sort = sort or "relevance"
    if sort not in SORTS:
        raise InvalidInput(f"unknown sort {sort!r}; choose one of {', '.join(SORTS)}")
    return sort


def sort_depth(library: Library, k: int, sort: str) -> int:
    """How many papers to rank by relevance: k, or the pool that ``sort_ranked`` reorders."""
    return k if sort == "relevance" else max(k, library.settings.sort_pool)


def sort_ranked(library: Library, ranked: Ranked, sort: str, k: int) -> Ranked:
    """The first k of ``ranked`` (best first) in ``sort`` order: by date, newest first and undated
    last, or by popularity, most first; equal keys keep their relevance order (stable sorts).
    The scores stay relevance scores. Dates and popularity come from the filter columns."""
    if sort == "relevance" or not ranked:
        return ranked[:k]
    columns = library.filter_columns()
    pks = np.array([pk for pk, _ in ranked], dtype=np.int64)
    at = np.minimum(np.searchsorted(columns.pks, pks), max(len(columns.pks) - 1, 0))
    known = columns.pks[at] == pks if len(columns.pks) else np.zeros(len(pks), dtype=bool)
    if sort == "date":
        keys = [columns.dates[i] if ok else b"" for i, ok in zip(at, known)]  # b"" sorts below every date
    else:
        keys = [float(columns.popularity[i]) if ok else 0.0 for i, ok in zip(at, known)]
    order = sorted(range(len(ranked)), key=keys.__getitem__, reverse=True)  # reverse keeps ties in order
    return [ranked[i] for i in order[:k]]


def rank_text(library: Library, query: str, k: int, filters: Filters | None = None, mode: str | None = None) -> Ranked:
    """(pk, score) of the top k papers for free text in one mode; the engine behind search_text."""
    mode = check_mode(library, mode)
    allowed = allowed_pks(library, filters)
    return rank(library, mode, NearVector(library, allowed, text=query), lambda: KeywordQuery(query_terms(query), where=filters), k, allowed)


def more_like_this(library: Library, texts: list[str], weights: list[float] | None = None, scale: int = 1,
                   indexed: bool = True) -> Terms:
    """The keyword query for papers like ``texts`` (settings.mlt_*), ``scale`` times the terms for
    several interests at once; ``indexed`` when the texts are papers of the index."""
    settings = library.settings
    how = MoreLikeThis(max_terms=min(MAX_TERMS, settings.mlt_max_terms * scale), min_doc_freq=settings.mlt_min_doc_freq,
                       max_doc_share=settings.mlt_max_doc_share, boost_power=settings.mlt_boost_power)
    return library.keywords.more_like_this(texts, weights, how, indexed)


def search_text(library: Library, query: str, k: int = 10, filters: Filters | None = None, mode: str | None = None,
                sort: str | None = None) -> list[Hit]:
    """Free text → the k best papers; ``mode`` is "dense", "bm25" or "hybrid" (None: settings.search_mode);
    ``sort`` "date" or "popularity" reorders the relevant ones (``sort_ranked``)."""
    query = check_text(library, query)
    check_k(library, k)
    sort = check_sort(sort)
    return to_hits(library, sort_ranked(library, rank_text(library, query, sort_depth(library, k, sort), filters, mode), sort, k))


def similar_to_paper(library: Library, paper_id: str, k: int = 10, filters: Filters | None = None, mode: str | None = None,
                     sort: str | None = None) -> list[Hit]:
    """Neighbours of a stored paper, from its stored vector and its keyword query; the paper and
    any other record of it left out, and each neighbour listed once (duplicates.py)."""
    check_k(library, k)
    mode = check_mode(library, mode)
    sort = check_sort(sort)
    found = library.store.pks_for_ids([resolve_id(library, paper_id)])
    if not found:
        raise PaperNotFound(paper_id)
    pk = next(iter(found.values()))
    allowed = allowed_pks(library, filters)
    dense = NearVector(library, allowed, {pk, *copies_of(library, {pk})}, vector=library.store.get_vectors([pk], library.manifest.dim)[0])

    def keyword() -> KeywordQuery:
        stored = library.store.get_many([pk]).get(pk)
        return KeywordQuery(more_like_this(library, [stored.paper.text]) if stored else [], where=filters)

    weight = library.settings.similar_dense_weight
    ranked = distinct_top(library, lambda depth: rank(library, mode, dense, keyword, depth, allowed, dense.exclude, weight),
                          sort_depth(library, k, sort))
    return to_hits(library, sort_ranked(library, ranked, sort, k))


def similar_to_text(library: Library, text: str, k: int = 10, filters: Filters | None = None, mode: str | None = None,
                    sort: str | None = None) -> list[Hit]:
    """Neighbours of a pasted abstract that is not in the index."""
    text = check_text(library, text, "text")
    check_k(library, k)
    mode = check_mode(library, mode)
    sort = check_sort(sort)
    allowed = allowed_pks(library, filters)
    dense = NearVector(library, allowed, text=text)
    keyword = lambda: KeywordQuery(more_like_this(library, [text], indexed=False), where=filters)  # noqa: E731
    ranked = rank(library, mode, dense, keyword, sort_depth(library, k, sort), allowed, dense_weight=library.settings.similar_dense_weight)
    return to_hits(library, sort_ranked(library, ranked, sort, k))
