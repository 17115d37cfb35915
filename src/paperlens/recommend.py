"""More like these: ranked papers from positive (and negative) example papers.

Two strategies, measured in benchmarks/recommend.py:
- "centroid" (Rocchio): one search with mean(positives) - w * mean(negatives). Blends several
  interests into one point between them.
- "nearest" (default): candidates from each positive's neighbourhood and from the centroid; each
  scored by its best similarity to any positive minus w * its best similarity to any negative. A
  user who likes papers on two unrelated topics gets both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np

from .errors import InvalidInput, PaperNotFound
from .library import Library
from .limits import check_example_count, check_paper_id
from .search import Filters, Hit, check_k, rank_by_vector, to_hits

Strategy = Literal["nearest", "centroid"]
STRATEGIES: tuple[str, ...] = ("nearest", "centroid")
MAX_WEIGHT = 1e6


@dataclass
class Example:
    id: str
    weight: float = 1.0


def as_examples(items: Iterable[Example | str]) -> list[Example]:
    return [item if isinstance(item, Example) else Example(str(item)) for item in items]


def _resolve(library: Library, examples: list[Example], what: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    check_example_count(library.settings, len(examples), what)
    for example in examples:
        # An upper bound too: float32 sums of 1e300 weights overflow to inf and every score to NaN.
        if not (0 < example.weight <= MAX_WEIGHT):
            raise InvalidInput(f"weight of {what} paper {example.id!r} must be in (0, {MAX_WEIGHT:g}], got {example.weight}")
    for example in examples:
        example.id = check_paper_id(example.id)
    found = library.store.pks_for_ids(e.id for e in examples)
    for example in examples:
        if example.id not in found:
            raise PaperNotFound(example.id)
    pks = [found[e.id] for e in examples]
    weights = np.array([e.weight for e in examples], dtype=np.float32)
    vectors = library.store.get_vectors(pks, library.manifest.dim) if pks else np.zeros((0, library.manifest.dim), np.float32)
    return pks, vectors, weights


def recommend(
    library: Library,
    positive: Iterable[Example | str],
    negative: Iterable[Example | str] = (),
    k: int = 10,
    filters: Filters | None = None,
    strategy: Strategy = "nearest",
    negative_weight: float | None = None,
) -> list[Hit]:
    positive, negative = as_examples(positive), as_examples(negative)
    check_k(library, k)
    if not positive:
        raise InvalidInput("give at least one positive paper id")
    if strategy not in STRATEGIES:
        raise InvalidInput(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if library.index is None:
        raise PaperNotFound(positive[0].id)
    beta = library.settings.negative_weight if negative_weight is None else negative_weight
    pos_pks, pos_vecs, pos_w = _resolve(library, positive, "positive")
    neg_pks, neg_vecs, neg_w = _resolve(library, negative, "negative")
    exclude = set(pos_pks) | set(neg_pks)

    centroid = (pos_w[:, None] * pos_vecs).sum(0) / pos_w.sum()
    if len(neg_pks):
        centroid -= beta * (neg_w[:, None] * neg_vecs).sum(0) / neg_w.sum()
    norm = float(np.linalg.norm(centroid))
    centroid = centroid / norm if norm > 0 else pos_vecs[0]
    if strategy == "centroid":
        return to_hits(library, rank_by_vector(library, centroid, k, filters, exclude))

    # Candidates: the centroid's neighbours plus each positive's own (the strongest positives first).
    depth = min(k + len(exclude), library.settings.max_k)
    candidates: dict[int, None] = dict.fromkeys(pk for pk, _ in rank_by_vector(library, centroid, depth, filters, exclude))
    for i in np.argsort(-pos_w)[:50]:
        candidates.update(dict.fromkeys(pk for pk, _ in rank_by_vector(library, pos_vecs[i], depth, filters, exclude)))
    if not candidates:
        return []
    cand_pks = list(candidates)
    cand_vecs = library.store.get_vectors(cand_pks, library.manifest.dim)
    rel_w = pos_w / pos_w.max()
    scores = (cand_vecs @ pos_vecs.T * rel_w).max(axis=1)
    if len(neg_pks):
        scores -= beta * (cand_vecs @ neg_vecs.T * (neg_w / neg_w.max())).max(axis=1)
    order = np.argsort(-scores, kind="stable")[:k]
    return to_hits(library, [(cand_pks[i], float(scores[i])) for i in order])
