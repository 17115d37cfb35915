"""Vector index layouts behind one interface; the choice is made here and nowhere else."""

from __future__ import annotations

from pathlib import Path

from ..errors import PaperlensError
from .base import VectorIndex, atomic_write_index, fsync_dir
from .flat import FlatIndex

LAYOUTS: dict[str, type[VectorIndex]] = {"flat": FlatIndex}

__all__ = ["VectorIndex", "FlatIndex", "LAYOUTS", "choose_layout", "create_index", "load_index", "atomic_write_index", "fsync_dir"]


def choose_layout(expected_count: int, configured: str = "auto") -> str:
    """Exact search is fast enough, and exact, for every collection the flat layout serves."""
    if configured != "auto":
        if configured not in LAYOUTS:
            raise PaperlensError(f"index layout {configured!r} is not available; choose one of {', '.join(LAYOUTS)}")
        return configured
    return "flat"


def create_index(layout: str, dim: int) -> VectorIndex:
    return LAYOUTS[layout].create(dim)


def load_index(layout: str, path: Path) -> VectorIndex:
    if layout not in LAYOUTS:
        raise PaperlensError(f"index layout {layout!r} in the manifest is unknown to this version of paperlens")
    return LAYOUTS[layout].load(path)
