"""Exact inner-product search: right for collections up to a few hundred thousand papers."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from .base import VectorIndex


class FlatIndex(VectorIndex):
    layout = "flat"

    @classmethod
    def create(cls, dim: int) -> "FlatIndex":
        # IDMap2 keeps the id→slot table, so remove_ids works and ids are the store's pks.
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def load(cls, path: Path) -> "FlatIndex":
        return cls(faiss.read_index(str(path)))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        if allowed is None:
            return self.faiss_index.search(queries, k)
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)))
        return self.faiss_index.search(queries, k, params=params)
