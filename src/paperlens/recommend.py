"""More like these: ranked papers from positive (and negative) example papers.

Three strategies for the dense side (benchmarks/recommend.py compares them; figures in the README):
- "centroid" (Rocchio): one search with mean(positives) - w * mean(negatives). Best for one
  interest, but blends two unrelated interests into a point near neither.
- "nearest": each candidate scored by its best similarity to any single liked paper. Covers every
  interest, but follows each liked paper's idiosyncrasies.
- "grouped" (the default): liked papers are split into interests (``cluster_interests``, the same
  grouping feeds use) and each candidate is scored by its best similarity to an interest's centroid.
In every strategy a candidate loses w * its best similarity to any disliked paper
(w = settings.negative_weight). In hybrid mode (the default) the keyword side is one "more like
this" query of the liked papers, the disliked papers' query counting against it, fused as search.fuse
does (settings.similar_dense_weight).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .duplicates import copies_of, distinct_top
from .errors import InvalidInput, PaperNotFound
from .library import Library, resolve_ids
from .limits import check_example_count
from .search import Filters, Hit, KeywordQuery, allowed_pks, check_k, check_mode, more_like_this, rank, rank_by_vector, to_hits

Strategy = Literal["grouped", "nearest", "centroid"]
STRATEGIES: tuple[str, ...] = ("grouped", "nearest", "centroid")
MAX_WEIGHT = 1e6


@dataclass
class Example:
    id: str
    weight: float = 1.0


def as_examples(items: Iterable[Example | str]) -> list[Example]:
    return [item if isinstance(item, Example) else Example(str(item)) for item in items]


def cluster_interests(vectors: np.ndarray, max_clusters: int, distance: float) -> np.ndarray:
    """A cluster label per liked paper: the one way liked papers are split into interests, for
    recommendations and feeds alike. Agglomerative (average linkage on cosine distance, cut at
    ``distance``), not k-means: the number of interests is found, not given, and no paper's order
    matters. Chosen over a greedy join-the-nearest-group by benchmarks/feeds.py and
    benchmarks/recommend.py (see the README)."""
    if len(vectors) <= 1:
        return np.zeros(len(vectors), dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine", linkage="average")
    labels = model.fit_predict(vectors)
    if labels.max() + 1 > max_clusters:
        labels = AgglomerativeClustering(n_clusters=max_clusters, metric="cosine", linkage="average").fit_predict(vectors)
    return labels.astype(np.int64)


def interest_centroids(vectors: np.ndarray, weights: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit weighted centroid of each interest: one anchor per interest keeps a centroid's precision
    inside a topic without blending unrelated topics into a point that is near none of them."""
    sums = np.stack([(weights[labels == c, None] * vectors[labels == c]).sum(0) for c in range(int(labels.max()) + 1)])
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def _resolve(library: Library, examples: list[Example], what: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    check_example_count(library.settings, len(examples), what)
    for example in examples:
        # An upper bound too: float32 sums of 1e300 weights overflow to inf and every score to NaN.
        if not (0 < example.weight <= MAX_WEIGHT):
            raise InvalidInput(f"weight of {what} paper {example.id!r} must be in (0, {MAX_WEIGHT:g}], got {example.weight}")
    stored = resolve_ids(library, [e.id for e in examples])
    for example in examples:
        if example.id not in stored:
            raise PaperNotFound(example.id)
        example.id = stored[example.id]
    found = library.store.pks_for_ids(e.id for e in examples)
    for example in examples:
        if example.id not in found:  # deleted meanwhile
            raise PaperNotFound(example.id)
    pks = [found[e.id] for e in examples]
    weights = np.array([e.weight for e in examples], dtype=np.float32)
    vectors = library.store.get_vectors(pks, library.manifest.dim) if pks else np.zeros((0, library.manifest.dim), np.float32)
    return pks, vectors, weights


class NearExamples:
    """Dense side of a recommendation: candidates near the overall centroid and near each anchor
    (a liked paper, or an interest's centroid); a paper scores its best (weighted) similarity to an
    anchor, minus ``beta`` times its best similarity to a disliked paper."""

    def __init__(self, library: Library, centroid: np.ndarray, anchors: np.ndarray, anchor_weights: np.ndarray | None,
                 negatives: np.ndarray, negative_weights: np.ndarray, beta: float, allowed: np.ndarray | None, exclude: set[int]):
        self.library, self.centroid, self.anchors, self.anchor_weights = library, centroid, anchors, anchor_weights
        self.negatives, self.negative_weights, self.beta = negatives, negative_weights, beta
        self.allowed, self.exclude = allowed, exclude

    def search(self, depth: int, exact: bool) -> list[tuple[int, float]]:
        library = self.library
        candidates: dict[int, None] = {}
        for query in (self.centroid, *self.anchors[:50]):
            found = rank_by_vector(library, query, depth, exclude=self.exclude, allowed=self.allowed, exact=False)
            candidates.update(dict.fromkeys(pk for pk, _ in found))
        if not candidates:
            return []
        pks, vectors = library.store.candidate_vectors(list(candidates), library.manifest.dim)
        scores = self.score(vectors)
        return [(pks[i], float(scores[i])) for i in np.argsort(-scores, kind="stable")[:depth]]

    def score(self, vectors: np.ndarray) -> np.ndarray:
        similarity = vectors @ self.anchors.T
        scores = (similarity if self.anchor_weights is None else similarity * self.anchor_weights).max(axis=1)
        if len(self.negatives):
            scores -= self.beta * (vectors @ self.negatives.T * (self.negative_weights / self.negative_weights.max())).max(axis=1)
        return scores


def recommend(
    library: Library,
    positive: Iterable[Example | str],
    negative: Iterable[Example | str] = (),
    k: int = 10,
    filters: Filters | None = None,
    strategy: Strategy = "grouped",
    negative_weight: float | None = None,
    mode: str | None = None,
) -> list[Hit]:
    """Papers like the positives and unlike the negatives, the examples themselves (and any other
    record of them) left out, each paper listed once.

    ``mode`` as in search: the dense side is the strategy's, the keyword side is one "more like
    this" query of the positives' texts (by weight), the negatives' query counting against it."""
    positive, negative = as_examples(positive), as_examples(negative)
    check_k(library, k)
    mode = check_mode(library, mode)
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
    exclude |= copies_of(library, exclude)  # other records of an example are the example
    allowed = allowed_pks(library, filters)

    centroid = (pos_w[:, None] * pos_vecs).sum(0) / pos_w.sum()
    if len(neg_pks):
        centroid -= beta * (neg_w[:, None] * neg_vecs).sum(0) / neg_w.sum()
    norm = float(np.linalg.norm(centroid))
    centroid = centroid / norm if norm > 0 else pos_vecs[0]
    # Anchors: the centroid alone, each liked paper ("nearest") or each interest group's centroid ("grouped").
    if strategy == "centroid":
        dense = NearExamples(library, centroid, centroid[None], None, neg_vecs[:0], neg_w[:0], beta, allowed, exclude)
    elif strategy == "grouped":
        settings = library.settings
        labels = cluster_interests(pos_vecs, settings.feed_max_clusters, settings.feed_cluster_distance)
        dense = NearExamples(library, centroid, interest_centroids(pos_vecs, pos_w, labels), None, neg_vecs, neg_w, beta, allowed, exclude)
    else:
        dense = NearExamples(library, centroid, pos_vecs, pos_w / pos_w.max(), neg_vecs, neg_w, beta, allowed, exclude)

    def keyword() -> KeywordQuery:
        texts = {pk: stored.paper.text for pk, stored in library.store.get_many(pos_pks + neg_pks).items()}
        groups = len(dense.anchors) if strategy == "grouped" else 1
        terms = more_like_this(library, [texts.get(pk, "") for pk in pos_pks], pos_w.tolist(), scale=groups)
        against = more_like_this(library, [texts.get(pk, "") for pk in neg_pks], neg_w.tolist()) if neg_pks else []
        return KeywordQuery(terms, against, beta, where=filters)

    weight = library.settings.similar_dense_weight
    return to_hits(library, distinct_top(library, lambda depth: rank(library, mode, dense, keyword, depth, allowed, exclude, weight), k))
