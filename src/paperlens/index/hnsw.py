"""HNSW graph over 8-bit scalar-quantised vectors: sub-linear search for 50k to a few million papers.

SQ8 stores each 384-d vector in 384 bytes instead of 1,536; with M=32 the graph adds about 260
bytes a paper, which keeps a million papers under 0.8 KB each (see benchmarks/speed.py).

Deletion: a FAISS HNSW graph cannot drop nodes (``remove_ids`` is not implemented), so a removed
paper becomes a tombstone. Its slot in the IndexIDMap2 id table is set to -1 and every search
excludes id -1 with an ID selector; the node itself stays in the graph, where it still helps to
route searches. Tombstones are saved with the index (they are the id table). Once they exceed
``TOMBSTONE_REBUILD_FRACTION`` of the slots, ``needs_rebuild`` says so and the library rebuilds
the index from the vectors in the store (``caches.FaissCache.rebuild``), which reclaims the space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..errors import PaperlensError
from .base import SearchTuning, VectorIndex

# Beyond this share of dead slots, searches visit many useless nodes and memory is wasted.
TOMBSTONE_REBUILD_FRACTION = 0.2
# Every live id is a store pk (>= 1); tombstones are -1. This selector keeps the live ones.
_LIVE_IDS = (0, 2**62)
# Narrow filters widen efSearch up to this; past it the search is close to exhaustive anyway.
MAX_FILTERED_EF = 4096


# efSearch by collection size, for each graph quality a manifest records (efConstruction): (efSearch
# at 100k papers and below, power of the size it grows with). benchmarks/speed.py --sweep 100000 and
# --sweep 1000000 --ef-construction 80,200 (synthetic vectors, M 32, SQ8, recall@10 after re-ranking):
#   efConstruction 80:  100k efSearch 128 0.971 (0.16 ms); 1M efSearch 768 0.947 (1.42 ms)
#   efConstruction 200: 100k efSearch  96 0.975 (0.23 ms); 1M efSearch 384 0.948 (0.93 ms)
# The better graph reaches the same recall at half the queue at 1M; at 100k each step of its walk
# costs more (fuller neighbour lists), which is 0.07 ms there.
EF_SEARCH_CURVES = {80: (128, 0.78), 200: (96, 0.602)}
DEFAULT_EF_CONSTRUCTION = 200
# What a graph whose parameters do not say was built with (graphs before efConstruction 200).
LEGACY_EF_CONSTRUCTION = 80


def built_ef_construction(params: dict[str, Any]) -> int:
    return int(params.get("ef_construction", LEGACY_EF_CONSTRUCTION))


def auto_ef_search(papers: int, ef_construction: int = LEGACY_EF_CONSTRUCTION) -> int:
    """efSearch for the recall of the table above, by collection size and the graph's efConstruction
    (a graph built with less than 200 is searched as the efConstruction-80 one, which needs more)."""
    base, power = EF_SEARCH_CURVES[DEFAULT_EF_CONSTRUCTION if ef_construction >= DEFAULT_EF_CONSTRUCTION else LEGACY_EF_CONSTRUCTION]
    return int(min(MAX_FILTERED_EF, base * max(1.0, papers / 100_000) ** power))


class HNSWIndex(VectorIndex):
    layout = "hnsw"

    def __init__(self, index: faiss.Index, params: dict[str, Any] | None = None, tuning: SearchTuning | None = None):
        super().__init__(index, params, tuning)
        self._tombstones = int(np.count_nonzero(self._id_table() == -1))
        self._live_selector = faiss.IDSelectorRange(*_LIVE_IDS)

    @classmethod
    def create(cls, dim: int, params: dict[str, Any], training: np.ndarray | None, tuning: SearchTuning) -> HNSWIndex:
        params = {"ef_construction": DEFAULT_EF_CONSTRUCTION, **params}  # searched as it was built (search_parameters)
        m, sq8 = int(params.get("m", 32)), bool(params.get("sq8", True))
        if sq8:
            inner = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        else:
            inner = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = int(params["ef_construction"])
        if not inner.is_trained:
            if training is None or not len(training):
                raise PaperlensError("an hnsw index with sq8 needs vectors to train its quantiser; ingest papers first")
            inner.train(np.ascontiguousarray(training, dtype=np.float32))
        return cls(faiss.IndexIDMap2(inner), params, tuning)

    @classmethod
    def load(cls, path: Path, params: dict[str, Any], tuning: SearchTuning) -> HNSWIndex:
        return cls(faiss.read_index(str(path)), params, tuning)

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal) - self._tombstones

    @property
    def tombstones(self) -> int:
        return self._tombstones

    def _id_table(self) -> np.ndarray:
        return faiss.vector_to_array(self.faiss_index.id_map)

    def remove(self, ids: np.ndarray) -> int:
        """Tombstone the slots of these ids; returns how many live papers were removed."""
        if not len(ids) or not self.faiss_index.ntotal:
            return 0
        # The id table in place, through a view: copying it out and back and rebuilding the reverse
        # map (id -> slot) made a one-paper delete O(collection) (benchmarks/scale.py). The reverse
        # map keeps the dead ids' old slots: nothing here looks an id up through it (searches read
        # the table), an id added again overwrites its entry, and loading the file rebuilds it.
        table = faiss.rev_swig_ptr(self.faiss_index.id_map.data(), self.faiss_index.id_map.size())
        dead = np.flatnonzero(np.isin(table, np.asarray(ids, dtype=np.int64)) & (table != -1))
        table[dead] = -1
        self._tombstones += len(dead)
        return len(dead)

    def needs_rebuild(self) -> str | None:
        slots = int(self.faiss_index.ntotal)
        if slots and self._tombstones > TOMBSTONE_REBUILD_FRACTION * slots:
            return f"{self._tombstones} of {slots} hnsw slots are deleted papers (over {TOMBSTONE_REBUILD_FRACTION:.0%})"
        return None

    def search_parameters(self, selector: faiss.IDSelector | None, widen: float = 1.0) -> faiss.SearchParameters:
        # An 'allowed' batch never holds -1, so it already skips tombstones.
        if selector is None and self._tombstones:
            selector = self._live_selector
        base = self.tuning.ef_search or auto_ef_search(len(self), built_ef_construction(self.params))
        # The graph walk still passes through filtered-out nodes; it just needs a longer queue.
        ef = min(MAX_FILTERED_EF, int(base * widen))
        return faiss.SearchParametersHNSW(efSearch=max(ef, int(base)), sel=selector)
