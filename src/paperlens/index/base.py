"""The vector index interface: integer ids (store pks) in, (scores, ids) out.

One file per FAISS layout implements it; ``paperlens.index.create_index`` chooses among them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import faiss
import numpy as np

from ..faults import crash_point


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


class VectorIndex(ABC):
    layout: str

    def __init__(self, index: faiss.Index):
        self.faiss_index = index

    @property
    def dim(self) -> int:
        return self.faiss_index.d

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.faiss_index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        return int(self.faiss_index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64))))

    def copy(self) -> "VectorIndex":
        """An independent copy: writers change a copy and swap it in, so searches never see a half-done change."""
        return type(self)(faiss.clone_index(self.faiss_index))

    def ids(self) -> np.ndarray:
        """The ids held, sorted: 'paperlens check' compares them with the store's."""
        id_map = getattr(self.faiss_index, "id_map", None)
        if id_map is None:
            raise NotImplementedError(f"{type(self).__name__} does not list its ids")
        return np.sort(faiss.vector_to_array(id_map).astype(np.int64))

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top k by inner product; ``allowed`` restricts to those ids (filters). Missing slots have id -1."""

    def save(self, path: Path) -> None:
        atomic_write_index(self.faiss_index, path)
