"""Exact inner-product search: right for collections up to a few hundred thousand papers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .base import SearchTuning, VectorIndex


class FlatIndex(VectorIndex):
    layout = "flat"

    @classmethod
    def create(cls, dim: int, params: dict[str, Any], training: np.ndarray | None, tuning: SearchTuning) -> FlatIndex:
        # IDMap2 keeps the id→slot table, so remove_ids works and ids are the store's pks.
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), params, tuning)

    @classmethod
    def load(cls, path: Path, params: dict[str, Any], tuning: SearchTuning) -> FlatIndex:
        return cls(faiss.read_index(str(path)), params, tuning)

    def search_parameters(self, selector: faiss.IDSelector | None, widen: float = 1.0) -> faiss.SearchParameters | None:
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def supports_gpu(self) -> bool:
        return True
