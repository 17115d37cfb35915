"""A large HNSW index plus a small exact one for the papers written since the large one was saved.

Why: at 1M papers FAISS made every write O(collection). A write used to clone the HNSW graph so
that searches keep a whole one (0.7 s at 1M), and HNSW's add sets up one lock per node in the
graph (0.95 s for a single vector at 1M). Here new and changed vectors go to a flat index, exact
and cheap to copy; deletes tombstone the HNSW slots in place, which only turns ids to -1 under
a running search (results with -1 are dropped, as for any missing slot). The two are merged
when the FAISS file is saved (caches.FaissCache, once index_save_share of the collection
changed), so the flat part stays small and the file on disk is one plain index.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from .base import VectorIndex
from .flat import FlatIndex
from .hnsw import HNSWIndex


class LayeredIndex(VectorIndex):
    """Search both, answer the best of either; the HNSW part is shared between copies."""

    def __init__(self, main: HNSWIndex, recent: FlatIndex):
        super().__init__(main.faiss_index, main.params, main.tuning)
        self.main, self.recent = main, recent
        self.layout = main.layout

    @classmethod
    def over(cls, main: HNSWIndex) -> LayeredIndex:
        return cls(main, FlatIndex.create(main.dim, {}, None, main.tuning))

    def __len__(self) -> int:
        return len(self.main) + len(self.recent)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.recent.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> int:
        return self.main.remove(ids) + self.recent.remove(ids)

    def copy(self) -> LayeredIndex:
        return LayeredIndex(self.main, self.recent.copy())

    def ids(self) -> np.ndarray:
        return np.sort(np.concatenate([self.main.ids(), self.recent.ids()]))

    def needs_rebuild(self) -> str | None:
        return self.main.needs_rebuild()

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if len(self.recent) == 0:
            return self.main.search(queries, k, allowed)
        recent_scores, recent_ids = self.recent.search(queries, k, allowed)
        if len(self.main) == 0:
            return recent_scores, recent_ids
        main_scores, main_ids = self.main.search(queries, k, allowed)
        scores = np.concatenate([main_scores, recent_scores], axis=1)
        ids = np.concatenate([main_ids, recent_ids], axis=1)
        scores = np.where(ids >= 0, scores, -np.inf)  # empty slots last
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)

    def search_parameters(self, selector: faiss.IDSelector | None, widen: float = 1.0) -> faiss.SearchParameters | None:
        return self.main.search_parameters(selector, widen)

    def merged(self) -> HNSWIndex:
        """One HNSW index holding both parts (a copy: searches on this one are not disturbed)."""
        combined = self.main.copy()
        if len(self.recent):
            held = self.recent.faiss_index
            ids = faiss.vector_to_array(held.id_map).astype(np.int64)
            combined.add(ids, held.index.reconstruct_n(0, held.ntotal))
        return combined

    def save(self, path: Path) -> None:
        self.merged().save(path)
