"""IVF-PQ: inverted lists over product-quantised codes, for very large or memory-bound collections.

A paper costs pq_m bytes of code plus its 8-byte id (135 bytes a paper measured at 10k for pq_m=48, against 1,536
for float32), at the price of recall: PQ distances are approximate (see benchmarks/speed.py for
recall@10 per nprobe). The coarse quantiser and the PQ codebooks are trained on the stored
vectors when the index is (re)built; later papers are added with those codebooks, which is fine
while the collection's topics do not drift far: ``caches.FaissCache.rebuild`` retrains.
IVF keeps ids itself, so no id map is needed and ``remove_ids`` really removes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..errors import PaperlensError
from .base import SearchTuning, VectorIndex

# k-means wants about 39 points per centroid; PQ needs 2**nbits points per sub-quantiser.
MIN_POINTS_PER_LIST = 39


class IVFPQIndex(VectorIndex):
    layout = "ivfpq"

    @classmethod
    def create(cls, dim: int, params: dict[str, Any], training: np.ndarray | None, tuning: SearchTuning) -> IVFPQIndex:
        nlist, pq_m, nbits = int(params.get("nlist", 1024)), int(params.get("pq_m", 48)), int(params.get("nbits", 8))
        if dim % pq_m:
            raise PaperlensError(f"ivfpq: pq_m={pq_m} must divide the dimension {dim}")
        needed = max(nlist * MIN_POINTS_PER_LIST, 2**nbits)
        if training is None or len(training) < min(needed, 2**nbits):
            raise PaperlensError(f"an ivfpq index needs at least {2**nbits} vectors to train (has {0 if training is None else len(training)}); use the flat layout")
        index = faiss.index_factory(dim, f"IVF{nlist},PQ{pq_m}x{nbits}", faiss.METRIC_INNER_PRODUCT)
        index.train(np.ascontiguousarray(training, dtype=np.float32))
        return cls(index, params, tuning)

    @classmethod
    def load(cls, path: Path, params: dict[str, Any], tuning: SearchTuning) -> IVFPQIndex:
        return cls(faiss.read_index(str(path)), params, tuning)

    def search_parameters(self, selector: faiss.IDSelector | None, widen: float = 1.0) -> faiss.SearchParameters:
        nlist = int(faiss.extract_index_ivf(self.faiss_index).nlist)
        return faiss.SearchParametersIVF(nprobe=min(nlist, int(self.tuning.nprobe * widen)), sel=selector)

    def supports_gpu(self) -> bool:
        return True

    def _configure_gpu(self, gpu_index: faiss.Index) -> None:
        faiss.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", int(self.tuning.nprobe))
