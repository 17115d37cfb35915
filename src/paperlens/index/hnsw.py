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
# A filter that keeps at most this share of the papers is searched by scoring the stored codes of
# its papers one by one (``CodeScan``), not by walking the graph, which must pass through ever more
# filtered-out nodes as the share falls. At 1M papers (scifact's claims, top 100, p50; recall@10
# against the stored float32 vectors):
#   keeps 0.96 %:  graph 14.9 ms, recall 0.955;  scan 1.6 ms, recall 0.994
#   keeps 2.25 %:  graph  9.6 ms, recall 0.977;  scan 4.1 ms, recall 0.985
#   keeps 7.7 %:   graph  5.7 ms;                scan 15 ms
# (filters that keep at most search.EXACT_FILTER_MAX papers are scored on their stored vectors instead).
SCAN_FILTER_MAX_SHARE = 0.03
SCAN_BLOCK = 1024  # codes decoded at a time: a block stays in cache, a whole filter's would not


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


def id_table_view(index: faiss.IndexIDMap2) -> np.ndarray:
    """The id of each graph slot (-1: a tombstone), in place: writes through it reach the index."""
    size = index.id_map.size()
    return faiss.rev_swig_ptr(index.id_map.data(), size) if size else np.zeros(0, dtype=np.int64)


class CodeScan:
    """Inner products of a query with chosen papers' stored codes, read in place from the graph's
    storage: an 8-bit scalar quantiser's codes (decoded as FAISS does: vmin + (code + 0.5) / 255 *
    vdiff per dimension, folded into the query) or float32 vectors."""

    def __init__(self, index: faiss.IndexIDMap2):
        self.index = index  # owns the memory the views below read
        inner = faiss.downcast_index(index.index)
        if inner.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError("only inner-product graphs are scanned")
        storage = faiss.downcast_index(inner.storage)
        size, dim = int(storage.ntotal), int(storage.d)
        raw = faiss.rev_swig_ptr(storage.codes.data(), size * int(storage.code_size)) if size else np.zeros(0, dtype=np.uint8)
        if isinstance(storage, faiss.IndexScalarQuantizer):
            if storage.sq.qtype != faiss.ScalarQuantizer.QT_8bit:
                raise ValueError("only 8-bit codes are scanned")
            trained = faiss.vector_to_array(storage.sq.trained).astype(np.float32)
            self.scale, self.offset = trained[dim:] / 255.0, trained[:dim] + 0.5 * trained[dim:] / 255.0
            self.codes = raw.reshape(size, dim)
        elif isinstance(storage, faiss.IndexFlat):
            self.scale, self.offset = np.ones(dim, dtype=np.float32), np.zeros(dim, dtype=np.float32)
            self.codes = raw.view(np.float32).reshape(size, dim)
        else:
            raise ValueError(f"no scan for {type(storage).__name__}")
        self.table = id_table_view(index)
        live = np.flatnonzero(self.table >= 0)
        self.slot_of = np.full(int(self.table.max()) + 1 if len(live) else 1, -1, dtype=np.int32)
        self.slot_of[self.table[live]] = live

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's answer shape: (scores, ids), each (queries, k); -1 ids (score -inf) where fewer pass."""
        pks = np.asarray(allowed, dtype=np.int64)
        pks = pks[(pks >= 0) & (pks < len(self.slot_of))]
        slots = self.slot_of[pks]
        # The table is read now, not when this scan was set up: a paper deleted since is a tombstone (-1).
        alive = (slots >= 0) & (self.table[np.maximum(slots, 0)] == pks)
        slots, pks = slots[alive], pks[alive]
        weights = (self.scale[:, None] * queries.T).astype(np.float32)  # (dim, queries)
        scores = np.empty((len(slots), len(queries)), dtype=np.float32)
        for start in range(0, len(slots), SCAN_BLOCK):
            block = slots[start:start + SCAN_BLOCK]
            scores[start:start + len(block)] = self.codes[block].astype(np.float32) @ weights
        scores += queries @ self.offset
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        found = min(k, len(slots))
        for row in range(len(queries)):
            column = scores[:, row]
            best = np.argpartition(-column, found - 1)[:found] if found < len(slots) else np.arange(len(slots))
            best = best[np.argsort(-column[best], kind="stable")]
            out_scores[row, :found], out_ids[row, :found] = column[best], pks[best]
        return out_scores, out_ids


class HNSWIndex(VectorIndex):
    layout = "hnsw"

    def __init__(self, index: faiss.Index, params: dict[str, Any] | None = None, tuning: SearchTuning | None = None):
        super().__init__(index, params, tuning)
        self._tombstones = int(np.count_nonzero(id_table_view(index) == -1))
        self._live_selector = faiss.IDSelectorRange(*_LIVE_IDS)
        self._scan: CodeScan | None = None  # set up at the first narrow filter; an add drops it
        self._unscannable = False

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._scan = None  # new slots, and the storage may have moved
        super().add(ids, vectors)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A narrow filter (SCAN_FILTER_MAX_SHARE) scans its papers' codes; anything else walks the graph."""
        scan = self._code_scan() if allowed is not None and 0 < len(allowed) <= SCAN_FILTER_MAX_SHARE * len(self) else None
        if scan is not None:
            return scan.search(np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32), max(1, min(k, len(self))), allowed)
        return super().search(queries, k, allowed)

    def _code_scan(self) -> CodeScan | None:
        scan = self._scan
        if scan is None and not self._unscannable:
            try:
                scan = self._scan = CodeScan(self.faiss_index)
            except (ValueError, AttributeError):  # another storage or metric: the graph walk serves it
                self._unscannable = True
        return scan

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

    def remove(self, ids: np.ndarray) -> int:
        """Tombstone the slots of these ids; returns how many live papers were removed."""
        if not len(ids) or not self.faiss_index.ntotal:
            return 0
        # The id table in place, through a view: copying it out and back and rebuilding the reverse
        # map (id -> slot) made a one-paper delete O(collection) (benchmarks/scale.py). The reverse
        # map keeps the dead ids' old slots: nothing here looks an id up through it (searches read
        # the table), an id added again overwrites its entry, and loading the file rebuilds it.
        table = id_table_view(self.faiss_index)
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
