"""Vector index layouts behind one interface; the choice is made here and nowhere else.

    flat   exact search              below FLAT_LIMIT papers
    hnsw   HNSW graph + SQ8 codes    from FLAT_LIMIT to IVFPQ_LIMIT papers
    ivfpq  IVF lists + PQ codes      above IVFPQ_LIMIT, or when memory matters more than recall

Thresholds and parameters come from benchmarks/speed.py on a 2-core machine (numbers there).
Growth policy: the layout is chosen when the index is built. When the collection later grows
past the next threshold, ``layout_outdated`` says so, and the library rebuilds the index from
the stored vectors (on open, and at the end of an ingest), logging why. A shrinking collection
keeps its layout: flapping between layouts around a threshold would cost a rebuild each time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PaperlensError
from .base import SearchTuning, VectorIndex, atomic_write_index, fsync_dir, gpu_available
from .flat import FlatIndex
from .hnsw import DEFAULT_EF_CONSTRUCTION, HNSWIndex, built_ef_construction
from .ivfpq import IVFPQIndex

LAYOUTS: dict[str, type[VectorIndex]] = {"flat": FlatIndex, "hnsw": HNSWIndex, "ivfpq": IVFPQIndex}
ORDER = ["flat", "hnsw", "ivfpq"]

# Flat search reads every vector: p50 1.7 ms at 10k and 30 ms at 100k papers (one thread, shared
# 2-core machine), so past ~50k a query costs more than the ~5 ms budget; HNSW stays at 0.24 ms.
FLAT_LIMIT = 50_000
# HNSW+SQ8 takes ~0.66 KB a paper; past 5M papers (3.3 GB) PQ's ~135 bytes a paper wins.
IVFPQ_LIMIT = 5_000_000
# Enough vectors to fit SQ8 ranges and k-means centroids well; more only slows the build.
TRAINING_SAMPLE = 100_000

__all__ = [
    "LAYOUTS",
    "FlatIndex",
    "HNSWIndex",
    "IVFPQIndex",
    "SearchTuning",
    "VectorIndex",
    "atomic_write_index",
    "choose_layout",
    "create_index",
    "fsync_dir",
    "gpu_available",
    "layout_outdated",
    "layout_params",
    "load_index",
    "params_outdated",
    "training_sample",
]


def choose_layout(expected_count: int, configured: str = "auto") -> str:
    """The layout for a collection of this size, unless one is configured."""
    if configured != "auto":
        if configured not in LAYOUTS:
            raise PaperlensError(f"index layout {configured!r} is not available; choose one of {', '.join(LAYOUTS)}")
        return configured
    if expected_count < FLAT_LIMIT:
        return "flat"
    if expected_count < IVFPQ_LIMIT:
        return "hnsw"
    return "ivfpq"


def layout_params(layout: str, count: int) -> dict[str, Any]:
    """Build-time parameters for a layout at this size; they are recorded in the manifest."""
    if layout == "hnsw":
        # M=32 + SQ8: 664 bytes a paper on disk. efConstruction 200 (was 80): at 1M the same recall
        # at half the efSearch (hnsw.EF_SEARCH_CURVES) for ~2x the graph's build time, which in an
        # ingest is small beside the encoder's. M not yet swept.
        return {"m": 32, "ef_construction": DEFAULT_EF_CONSTRUCTION, "sq8": True}
    if layout == "ivfpq":
        # ~4*sqrt(n) lists as usual, a power of two, with at least 39 training points per list.
        nlist = 1 << max(3, int(np.log2(max(8, 4 * np.sqrt(max(count, 1))))))
        while nlist > 8 and nlist * 39 > count:
            nlist //= 2
        return {"nlist": nlist, "pq_m": 48, "nbits": 8}
    return {}


def layout_outdated(layout: str, count: int, configured: str = "auto") -> str | None:
    """Why an index of this layout should be rebuilt at this size or configuration, or None."""
    wanted = choose_layout(count, configured)
    if wanted == layout or count == 0:
        return None
    if configured != "auto":
        return f"layout {configured} is configured but the index is {layout}"
    if ORDER.index(wanted) < ORDER.index(layout):
        return None  # shrinking keeps the layout
    return f"{count} papers is past the {layout} limit; the index becomes {wanted}"


def params_outdated(layout: str, params: dict[str, Any], count: int) -> str | None:
    """Why an index built with ``params`` is slower than one built today would be, or None. Not a
    fault: it searches as well (the search breadth follows its recorded parameters), so it is
    rebuilt only when asked ('paperlens check --rebuild-index'), never on open."""
    if layout != "hnsw":
        return None
    built, today = built_ef_construction(params), int(layout_params(layout, count)["ef_construction"])
    if built >= today:
        return None
    return (f"the HNSW graph was built with efConstruction {built}; one built with {today} reaches the same recall "
            f"with about half the search time at 1M papers")


def training_sample(vectors: np.ndarray, size: int = TRAINING_SAMPLE, seed: int = 0) -> np.ndarray:
    """A random subset for training quantisers: deterministic, so rebuilds are reproducible."""
    if len(vectors) <= size:
        return vectors
    rows = np.random.default_rng(seed).choice(len(vectors), size, replace=False)
    return vectors[np.sort(rows)]


def create_index(
    layout: str, dim: int, params: dict[str, Any] | None = None, training: np.ndarray | None = None, tuning: SearchTuning | None = None
) -> VectorIndex:
    return LAYOUTS[layout].create(dim, params or layout_params(layout, 0 if training is None else len(training)), training, tuning or SearchTuning())


def load_index(layout: str, path: Path, params: dict[str, Any] | None = None, tuning: SearchTuning | None = None) -> VectorIndex:
    if layout not in LAYOUTS:
        raise PaperlensError(f"index layout {layout!r} in the manifest is unknown to this version of paperlens")
    return LAYOUTS[layout].load(path, params or {}, tuning or SearchTuning())
