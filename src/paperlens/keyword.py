"""BM25 side of hybrid search: SQLite FTS5 over title + abstract, inside the index's own store.

Why FTS5 and not bm25s (side by side on scifact-subset, 2,101 abstracts, 47 claims, nDCG@10,
same tokenisation and stop words; through the library FTS5 scores 0.789):

    FTS5, porter stemmer, stop words dropped from the query   0.797   build 0.5 s
    bm25s, Snowball stemmer (PyStemmer), English stop words   0.789   build 2.6 s
    bm25s, no stemming, English stop words                    0.790

Equal quality within noise, and FTS5 is incremental and transactional: triggers in the store
(migration 2 in store.py) update the table in the same transaction as every insert, update and
delete of a paper, so ``library.ingest`` and ``library.delete`` keep the keyword side in step
with no extra step, and a crash can never leave the two sides disagreeing. bm25s has no
incremental add, so every write would mean rebuilding (and persisting) the whole sparse index.
Stemming matters on other sets: outside measurements on a held-out BEIR set gave 0.717 without
and 0.742 with it, so the table stems (porter).

Stop words are removed from the query only (Lucene's 33-word English list): the terms are OR-ed,
and a query word like "the" would otherwise make every paper a candidate.
"""

from __future__ import annotations

import re

import numpy as np

from .library import Library
from .store import Filters

# Lucene's default English stop set, the one bm25s and Elasticsearch use.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 64  # a pasted abstract as a query: longer match expressions only slow FTS5 down


def query_terms(text: str, stop_words: frozenset[str] = STOP_WORDS) -> list[str]:
    """Lower-cased words of the query, stop words and repeats left out, in order."""
    words = (w.lower() for w in _WORD.findall(text))
    return list(dict.fromkeys(w for w in words if w not in stop_words and w != "_"))[:MAX_TERMS]


def match_expression(terms: list[str]) -> str:
    """An FTS5 query that matches any term; each is quoted so words like NOT or NEAR stay words."""
    return " OR ".join(f'"{term}"' for term in terms)


def keyword_search(
    library: Library, query: str, k: int, filters: Filters | None = None, title_weight: float = 1.0
) -> list[tuple[int, float]]:
    """(pk, BM25 score) of the top k papers for free text; empty when the query has no usable word.

    No lock: each thread reads its own SQLite connection, which in WAL mode sees the last commit."""
    terms = query_terms(query)
    if not terms:
        return []
    return library.store.keyword_search(match_expression(terms), k, (title_weight, 1.0), filters)


def keyword_matches(library: Library, query: str, title_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(pks, BM25 scores) of every paper with a query word, unordered: hybrid search's keyword side."""
    terms = query_terms(query)
    if not terms:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return library.store.keyword_matches(match_expression(terms), (title_weight, 1.0))
