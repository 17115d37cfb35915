"""More like these: ranked papers from positive (and negative) example papers.

Three strategies, measured with benchmarks/recommend.py (simulated users on scifact-subset who
like 3 papers in each of 1 or 2 topics; 200 users; precision@10, and both topics in the top 10):

    strategy   1 topic   2 topics   both topics@10
    grouped    0.751     0.837      0.84     (default)
    nearest    0.643     0.764      0.88
    centroid   0.786     0.668      0.64

- "centroid" (Rocchio): one search with mean(positives) - w * mean(negatives). Best for one
  interest, but blends two unrelated interests into a point near neither.
- "nearest": each candidate scored by its best similarity to any single liked paper. Covers every
  interest, but follows each liked paper's idiosyncrasies.
- "grouped": liked papers are grouped into interests (greedy, cosine >= 0.25 to a group's
  centroid) and each candidate is scored by its best similarity to a group centroid. Close to
  centroid for one interest, the best of the three for several.
In every strategy a candidate loses w * its best similarity to any disliked paper (w =
settings.negative_weight, 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np

from .errors import InvalidInput, PaperNotFound
from .library import Library
from .limits import check_example_count, check_paper_id
from .search import Filters, Hit, check_k, rank_by_vector, to_hits

Strategy = Literal["grouped", "nearest", "centroid"]
STRATEGIES: tuple[str, ...] = ("grouped", "nearest", "centroid")
GROUP_SIMILARITY = 0.25  # measured: 0.2–0.3 all beat both other strategies on average (benchmarks/recommend.py)
MAX_WEIGHT = 1e6


@dataclass
class Example:
    id: str
    weight: float = 1.0


def as_examples(items: Iterable[Example | str]) -> list[Example]:
    return [item if isinstance(item, Example) else Example(str(item)) for item in items]


def group_interests(vectors: np.ndarray, weights: np.ndarray, threshold: float = GROUP_SIMILARITY) -> np.ndarray:
    """Unit centroids of groups of liked papers: greedy, in order of weight, join the closest group or start one.

    One group per interest keeps the centroid's precision inside a topic without blending
    unrelated topics into a point that is near none of them.
    """
    sums: list[np.ndarray] = []
    for i in np.argsort(-weights, kind="stable"):
        vector = vectors[i] * weights[i]
        if sums:
            centroids = np.stack([s / np.linalg.norm(s) for s in sums])
            best = int(np.argmax(centroids @ vectors[i]))
            if float(centroids[best] @ vectors[i]) >= threshold:
                sums[best] = sums[best] + vector
                continue
        sums.append(vector.copy())
    return np.stack([s / np.linalg.norm(s) for s in sums])


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
    strategy: Strategy = "grouped",
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

    # Anchors: each liked paper ("nearest") or each interest group's centroid ("grouped").
    if strategy == "grouped":
        anchors, anchor_w = group_interests(pos_vecs, pos_w), None
    else:
        anchors, anchor_w = pos_vecs, pos_w / pos_w.max()
    # Candidates: the overall centroid's neighbours plus each anchor's own.
    depth = min(k + len(exclude), library.settings.max_k)
    candidates: dict[int, None] = dict.fromkeys(pk for pk, _ in rank_by_vector(library, centroid, depth, filters, exclude, exact=False))
    for anchor in anchors[:50]:
        candidates.update(dict.fromkeys(pk for pk, _ in rank_by_vector(library, anchor, depth, filters, exclude, exact=False)))
    if not candidates:
        return []
    cand_pks, cand_vecs = library.store.candidate_vectors(list(candidates), library.manifest.dim)
    similarity = cand_vecs @ anchors.T
    scores = (similarity if anchor_w is None else similarity * anchor_w).max(axis=1)
    if len(neg_pks):
        scores -= beta * (cand_vecs @ neg_vecs.T * (neg_w / neg_w.max())).max(axis=1)
    order = np.argsort(-scores, kind="stable")[:k]
    return to_hits(library, [(cand_pks[i], float(scores[i])) for i in order])
