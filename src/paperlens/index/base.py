"""The vector index interface: integer ids (store pks) in, (scores, ids) out.

One file per FAISS layout implements it; ``paperlens.index.create_index`` chooses among them.
Build-time parameters (HNSW's M, IVF's nlist, ...) live in the manifest; search-time ones
(efSearch, nprobe) come from Settings on every open, so they can be tuned without a rebuild.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..faults import crash_point

# OpenMP threads FAISS may use for a batch of queries (rebuilds, benchmarks): the machine's default.
BATCH_THREADS = faiss.omp_get_max_threads()


def skip_sapphire_rapids_kernels() -> str | None:
    """Run FAISS's AVX-512 kernels where it would pick its Sapphire Rapids ones; the level set, or None.

    faiss 1.15 chooses its SIMD level when it loads (``FAISS_SIMD_LEVEL`` overrides). On a 2-core
    Sapphire Rapids Xeon its AVX512_SPR level searched an HNSW graph of 8-bit codes 1.7x slower than
    its AVX512 level, with the same answers (200k papers: 1.44 against 0.84 ms; flat and IVF-PQ
    fast-scan searches alike at both levels; README, "On a CPU without VNNI"). A level the user set
    is kept, as is a FAISS that does not dispatch at run time."""
    config = getattr(faiss, "SIMDConfig", None)
    if os.environ.get("FAISS_SIMD_LEVEL") or config is None or not config.has_dynamic_dispatch():
        return None
    if config.get_level() != faiss.SIMDLevel_AVX512_SPR or not config.is_simd_level_available(faiss.SIMDLevel_AVX512):
        return None
    config.set_level(faiss.SIMDLevel_AVX512)
    return config.get_level_name()


skip_sapphire_rapids_kernels()


def use_threads_for(queries: int) -> None:
    """One OpenMP thread for a single query, all of them for a batch (per calling thread in OpenMP).

    FAISS splits a search across queries, so a team for one query only adds start-up and idle
    threads competing for the cores with concurrent requests (on 2 cores, forcing one thread cut
    by-id similar through HTTP from ~3.5 to ~2 ms in one run; runs are noisy).
    """
    faiss.omp_set_num_threads(1 if queries == 1 else BATCH_THREADS)

log = logging.getLogger(__name__)


def atomic_write_index(index: faiss.Index, path: Path) -> None:
    """Write aside, fsync, rename, fsync the folder: a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    crash_point("index-save:before-rename")
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SearchTuning:
    """Search-time knobs, from Settings: more means better recall and slower queries."""

    ef_search: int | None = None  # None: chosen by the collection's size (hnsw.auto_ef_search)
    nprobe: int = 32
    device: str = "auto"  # 'auto' searches on a GPU when the installed faiss has one, 'cpu' never does
    filter_widen_power: float = 0.5  # see Settings.filter_widen_power


def gpu_available() -> bool:
    """True only with a GPU build of faiss (faiss-gpu) and a visible GPU; faiss-cpu has no such attribute."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def id_bitmap(ids: np.ndarray) -> np.ndarray:
    """One bit per id up to the largest: FAISS's IDSelectorBitmap reads it in O(1) per candidate.
    Built in 1.6 ms for 230k of 1M ids, where IDSelectorBatch's hash set took 60 ms."""
    ids = np.asarray(ids, dtype=np.int64)
    mask = np.zeros(int(ids.max()) + 1 if len(ids) else 1, dtype=bool)
    mask[ids] = True
    return np.packbits(mask, bitorder="little")


class VectorIndex(ABC):
    layout: str

    def __init__(self, index: faiss.Index, params: dict[str, Any] | None = None, tuning: SearchTuning | None = None):
        self.faiss_index = index
        self.params: dict[str, Any] = dict(params or {})
        self.tuning = tuning or SearchTuning()
        # A GPU copy for search only: the CPU index stays the one that is mutated and saved,
        # because GPU indexes cannot remove ids nor be written to disk directly.
        self._gpu_index: faiss.Index | None = None
        self._gpu_resources: Any = None
        self._gpu_stale = True
        self._bitmaps: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    @property
    def dim(self) -> int:
        return self.faiss_index.d

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.faiss_index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self._gpu_stale = True

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        self._gpu_stale = True
        return int(self.faiss_index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64))))

    def copy(self) -> VectorIndex:
        """An independent copy: writers change a copy and swap it in, so searches never see a half-done change."""
        return type(self)(faiss.clone_index(self.faiss_index), self.params, self.tuning)

    def ids(self) -> np.ndarray:
        """The ids held, sorted: 'paperlens check' compares them with the store's."""
        id_map = getattr(self.faiss_index, "id_map", None)
        if id_map is None:
            raise NotImplementedError(f"{type(self).__name__} does not list its ids")
        held = faiss.vector_to_array(id_map).astype(np.int64)
        return np.sort(held[held != -1])  # -1 marks an HNSW tombstone

    def needs_rebuild(self) -> str | None:
        """A reason to rebuild from the store (e.g. too many tombstones), or None."""
        return None

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top k by inner product; ``allowed`` restricts to those ids (filters). Missing slots have id -1."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        use_threads_for(len(queries))
        gpu = self._gpu_for_search() if allowed is None else None
        if gpu is not None:
            return gpu.search(queries, k)
        bitmap = self._bitmap(allowed) if allowed is not None else None
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)) if bitmap is not None else None
        widen = 1.0 if allowed is None else max(1.0, len(self) / max(len(allowed), 1)) ** self.tuning.filter_widen_power
        return self.faiss_index.search(queries, k, params=self.search_parameters(selector, widen))  # bitmap alive until here

    def _bitmap(self, allowed: np.ndarray) -> np.ndarray:
        """``id_bitmap(allowed)``, remembered for the last few arrays: a filter that repeats hands
        the same read-only array (FilterColumns.allowed), and at 1M papers a bitmap costs ~2 ms."""
        remembered = self._bitmaps.get(id(allowed))
        if remembered is not None and remembered[0] is allowed:
            return remembered[1]
        bitmap = id_bitmap(allowed)
        if not allowed.flags.writeable:  # a caller's own array may change after this search
            self._bitmaps[id(allowed)] = (allowed, bitmap)
            while len(self._bitmaps) > 8:
                self._bitmaps.popitem(last=False)
        return bitmap

    @abstractmethod
    def search_parameters(self, selector: faiss.IDSelector | None, widen: float = 1.0) -> faiss.SearchParameters | None:
        """The layout's search knobs plus an optional id filter.

        ``widen`` is (1 / the share of papers a filter lets through) ** filter_widen_power:
        approximate layouts look at that many times more candidates, else a narrow filter would
        leave result slots empty.
        """

    def supports_gpu(self) -> bool:
        return False

    def _gpu_for_search(self) -> faiss.Index | None:
        """The GPU copy, refreshed after mutations; None when searching on the CPU."""
        if self.tuning.device == "cpu" or not self.supports_gpu() or not gpu_available():
            return None
        if self._gpu_stale or self._gpu_index is None:
            try:
                if self._gpu_resources is None:
                    self._gpu_resources = faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.faiss_index)
                self._configure_gpu(self._gpu_index)
            except RuntimeError as exc:  # e.g. a PQ size the GPU kernels do not support
                log.warning("%s index cannot move to the GPU (%s); searching on the CPU", self.layout, exc)
                self.tuning = dataclasses.replace(self.tuning, device="cpu")
                return None
            self._gpu_stale = False
        return self._gpu_index

    def _configure_gpu(self, gpu_index: faiss.Index) -> None:  # noqa: B027 - layouts without knobs need nothing
        """Apply search knobs to the GPU copy (layouts with knobs override)."""

    def save(self, path: Path) -> None:
        atomic_write_index(self.faiss_index, path)
