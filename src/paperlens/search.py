"""Queries: free text, by stored paper, by pasted text. Knows no HTTP and no terminal."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidInput, PaperNotFound
from .library import Library
from .papers import Paper, author_line, clean_text, parse_date, InvalidRecord
from .store import Filters

__all__ = ["Filters", "Hit", "make_filters", "search_text", "similar_to_paper", "similar_to_text", "rank_by_vector", "to_hits"]


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


def rank_by_vector(
    library: Library, vectors: np.ndarray, k: int, filters: Filters | None = None, exclude: set[int] = frozenset()
) -> list[tuple[int, float]]:
    """(pk, score) of the top k for one query vector, filters applied inside FAISS, ``exclude`` left out."""
    if library.index is None or len(library.index) == 0:
        return []
    allowed = library.store.filter_pks(filters) if filters is not None and filters.active() else None
    if allowed is not None and len(allowed) == 0:
        return []
    # No lock: writers swap in a changed copy, so this search keeps a whole index to itself.
    index = library.index
    scores, ids = index.search(np.atleast_2d(vectors), k + len(exclude), allowed)
    ranked = [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0 and int(i) not in exclude]
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


def search_text(library: Library, query: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
    """Free text → the k most similar papers."""
    query = check_text(library, query)
    check_k(library, k)
    if library.index is None:
        return []
    vector = library.encoder.encode_query(query)
    return to_hits(library, rank_by_vector(library, vector, k, filters))


def similar_to_paper(library: Library, paper_id: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
    """Neighbours of a stored paper, from its stored vector; the paper and its duplicates left out."""
    check_k(library, k)
    stored = library.store.get(paper_id)
    if stored is None:
        raise PaperNotFound(paper_id)
    vector = library.store.get_vectors([stored.pk], library.manifest.dim)
    exclude = {stored.pk, *library.store.pks_with_same_text(stored.pk)}
    return to_hits(library, rank_by_vector(library, vector, k, filters, exclude))


def similar_to_text(library: Library, text: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
    """Neighbours of a pasted abstract that is not in the index."""
    text = check_text(library, text, "text")
    check_k(library, k)
    if library.index is None:
        return []
    return to_hits(library, rank_by_vector(library, library.encoder.encode_query(text), k, filters))
