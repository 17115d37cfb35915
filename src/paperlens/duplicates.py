"""One paper, one entry: telling records of one paper (a listing's hash id and an arXiv id, two
versions of an abstract) from different papers, merging their metadata, and collapsing any copies
left in a ranked list.

Two records are one paper when their normalised titles (papers.title_key) are equal and their
texts are equal or their vectors are at least DUPLICATE_COSINE similar. Ingest merges such a
record into the stored entry (library.ingest), 'paperlens dedup' merges those already stored
(library.dedup), and queries collapse whatever copies remain (``copies_of``, ``collapse``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .papers import Paper, author_count

if TYPE_CHECKING:
    from .library import Library

# benchmarks/duplicates.py, packaged model: versions of one demo abstract as another source gives it
# (a sentence dropped or added, cut to 60% or 1,000 characters, 1 word in 20 dropped, LaTeX) keep
# cosine >= 0.91, and real versions of one paper in csfcube under one title >= 0.89; different
# papers under one title reach 0.77 (demo, swapped abstracts) and 0.84 (csfcube, "Cross-Language
# Information Retrieval"). The threshold splits that gap.
DUPLICATE_COSINE = 0.87

Ranked = list[tuple[int, float]]


def merge_papers(kept: Paper, other: Paper) -> Paper:
    """``kept``'s id and text with the richer of both records' metadata: the longer author list (a
    list over a count), every category, the earliest date, the higher popularity, any url and DOI."""
    extra = {**other.extra, **kept.extra}
    counts = [author_count(kept), author_count(other)]
    if max(counts) and not (kept.authors or other.authors):
        extra["author_count"] = max(counts)
    dates = [d for d in (kept.date, other.date) if d]
    return replace(
        kept,
        authors=kept.authors if len(kept.authors) >= len(other.authors) else other.authors,
        date=min(dates) if dates else None,
        categories=list(dict.fromkeys([*kept.categories, *other.categories])),
        popularity=max(kept.popularity, other.popularity),
        url=kept.url or other.url,
        source=kept.source or other.source,
        extra=extra,
    )


def same_paper(same_text: bool, cosine: float) -> bool:
    """For two records whose normalised titles are equal: one paper, or two under one title."""
    return same_text or cosine >= DUPLICATE_COSINE


class TitleHeads:
    """The first record of each paper met so far under one normalised title, in order, with their
    vectors in one matrix: a batch of thousands of records titled alike ("Editorial") is then
    matched with one matrix-vector product a record, not one Python dot product a pair."""

    def __init__(self, dim: int):
        self.positions: list[int] = []
        self._first_with_text: dict[str, int] = {}  # text hash -> index of the first head with it
        self._vectors = np.empty((4, dim), dtype=np.float32)

    def find(self, text_hash: str, vector: np.ndarray) -> int | None:
        """The position of the first head that ``same_paper`` joins to this record, or None."""
        count = len(self.positions)
        if not count:
            return None
        close = np.flatnonzero(self._vectors[:count] @ vector >= DUPLICATE_COSINE)
        found = [int(close[0])] if len(close) else []
        if text_hash in self._first_with_text:
            found.append(self._first_with_text[text_hash])
        return self.positions[min(found)] if found else None

    def add(self, position: int, text_hash: str, vector: np.ndarray) -> None:
        count = len(self.positions)
        if count == len(self._vectors):
            self._vectors = np.concatenate([self._vectors, np.empty_like(self._vectors)])
        self._vectors[count] = vector
        self._first_with_text.setdefault(text_hash, count)
        self.positions.append(position)


def group_records(pks: list[int], identities: dict[int, tuple[str, str]], vectors: dict[int, np.ndarray]) -> list[list[int]]:
    """Records of ``pks`` (in the order given) split into papers: each group's first pk is its
    first record. Same text is one paper; same title with close vectors is one paper."""
    groups: list[list[int]] = []
    for pk in pks:
        title, text = identities[pk]
        for group in groups:
            head = group[0]
            head_title, head_text = identities[head]
            if head_text == text or (title and head_title == title and pk in vectors and head in vectors
                                     and float(vectors[pk] @ vectors[head]) >= DUPLICATE_COSINE):
                group.append(pk)
                break
        else:
            groups.append([pk])
    return groups


def duplicate_groups(library: Library) -> list[list[int]]:
    """Stored papers held as several entries: groups of pks, the oldest entry first."""
    found: dict[int, list[int]] = {}
    candidates = library.store.duplicate_candidates()
    dim = library.manifest.dim if library.manifest else 0
    for pks in candidates:
        identities = library.store.identities(pks)
        present, vectors = library.store.candidate_vectors(pks, dim) if dim else ([], [])
        by_pk = dict(zip(present, vectors))
        for group in group_records([pk for pk in pks if pk in identities], identities, by_pk):
            if len(group) > 1:  # a title group and a text group can find the same records
                found.setdefault(group[0], [])
                found[group[0]] = sorted({*found[group[0]], *group})
    return [found[head] for head in sorted(found)]


def copies_of(library: Library, pks: set[int]) -> set[int]:
    """Other entries of the papers ``pks`` are, left in the store: never shown as their neighbours,
    recommendations or feed items."""
    pairs = library.store.copy_candidates(pks) if pks else []
    copies = {other for _, other, same_text in pairs if same_text}
    check = [(pk, other) for pk, other, same_text in pairs if not same_text and other not in copies]
    if check:
        wanted = {pk for pair in check for pk in pair}
        present, vectors = library.store.candidate_vectors(list(wanted), library.manifest.dim)
        by_pk = dict(zip(present, vectors))
        copies |= {other for pk, other in check if pk in by_pk and other in by_pk
                   and same_paper(False, float(by_pk[pk] @ by_pk[other]))}
    return copies - pks


def first_records(library: Library, pks: list[int], vectors: np.ndarray | None = None) -> set[int]:
    """Of ``pks`` (best first), the first record of each paper; ``vectors`` (row per pk) when known."""
    identities = library.store.identities(pks)
    titles: dict[str, list[int]] = {}
    for pk in pks:
        if pk in identities and identities[pk][0]:
            titles.setdefault(identities[pk][0], []).append(pk)
    texts = [text for _, text in identities.values()]
    if len(set(texts)) == len(texts) and all(len(group) == 1 for group in titles.values()):
        return set(pks)  # the common case: nothing shares a title or a text
    shared = [pk for group in titles.values() if len(group) > 1 for pk in group]
    if vectors is not None:
        by_pk = dict(zip(pks, vectors))
    else:
        present, found = library.store.candidate_vectors(shared, library.manifest.dim) if shared else ([], [])
        by_pk = dict(zip(present, found))
    groups = group_records([pk for pk in pks if pk in identities], identities, by_pk)
    return {group[0] for group in groups}


def collapse(library: Library, ranked: Ranked) -> Ranked:
    """The ranked list with each paper once: a later record of a paper already listed is dropped."""
    if len(ranked) < 2:
        return ranked
    keep = first_records(library, [pk for pk, _ in ranked])
    return [(pk, score) for pk, score in ranked if pk in keep]


def distinct_top(library: Library, ranked_for: Callable[[int], Ranked], k: int) -> Ranked:
    """The top k of ``ranked_for(depth)`` with each paper once, asking deeper while copies crowd it."""
    depth = k + max(5, k // 2)
    while True:
        ranked = ranked_for(depth)
        kept = collapse(library, ranked)
        if len(kept) >= k or len(ranked) < depth:
            return kept[:k]
        depth *= 2
