"""Every paper's vector, and the log of which papers each write changed.

The vectors are kept here so that the FAISS file is a cache that can always be rebuilt without
re-encoding; the log lets a FAISS file saved some writes ago be brought up to date by replaying
the papers changed since, instead of saving it whole after every write (see Settings.index_save_share),
and lets another process that holds the index open follow the writes (Library.catch_up).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import ConcurrentChange
from .db import Database


class VectorTable(Database):
    """Vectors by paper pk, and the store's write generation that the caches are measured against."""

    def put_vectors(self, pks: Iterable[int], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.conn.executemany(
            "INSERT INTO vectors(pk, vector) VALUES (?, ?) ON CONFLICT(pk) DO UPDATE SET vector = excluded.vector",
            [(int(pk), vector.tobytes()) for pk, vector in zip(pks, vectors)],
        )

    def get_vectors(self, pks: list[int], dim: int) -> np.ndarray:
        """Vectors in the order of pks (by-id similar reads them instead of re-encoding); every pk must exist."""
        present, vectors = self.candidate_vectors(pks, dim)
        if len(present) != len(pks):
            raise ConcurrentChange("a paper of this request was deleted while it was being read; try again")
        return vectors

    def candidate_vectors(self, pks: list[int], dim: int) -> tuple[list[int], np.ndarray]:
        """Vectors of search candidates, leaving out any deleted since the (snapshot) index found them."""
        by_pk = dict(self.select_in("SELECT pk, vector FROM vectors WHERE pk IN ({marks})", {int(pk) for pk in pks}, plain=True))
        present = [int(pk) for pk in pks if int(pk) in by_pk]
        vectors = np.frombuffer(b"".join([by_pk[pk] for pk in present]), dtype=np.float32).reshape(len(present), dim)
        return present, vectors.copy()  # writable, as callers normalise or stack in place

    def iter_vectors(self, batch: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (pks, vectors) in pk order, in batches: the FAISS index is rebuilt from these."""
        last = 0
        while True:
            rows = self.conn.execute("SELECT pk, vector FROM vectors WHERE pk > ? ORDER BY pk LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            pks = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), -1)
            yield pks, vectors
            last = int(pks[-1])

    def vector_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def max_vector_pk(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(pk), 0) FROM vectors").fetchone()[0]

    def vector_pks(self) -> np.ndarray:
        """Every pk with a vector, sorted: what the FAISS index must hold."""
        rows = self.conn.execute("SELECT pk FROM vectors ORDER BY pk").fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    # --- the change log ----------------------------------------------------------------------

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def bump_generation(self, pks: Iterable[int] | None = None) -> int:
        """Count one more write that changed the papers ``pks``, in the write's transaction.

        The manifest records the generation its FAISS file reflects, so a file saved before a
        write that was killed half-way is known to be stale even when its count still matches
        (an update replaces a vector without changing the count). ``pks`` None: the write is not
        logged, and no older FAISS file can be replayed past it."""
        generation = self.generation() + 1
        self.set_meta("generation", str(generation))
        if pks is None:
            self.set_meta("changes_from", str(generation))
        else:
            self.conn.executemany("INSERT OR IGNORE INTO vector_changes(generation, pk) VALUES (?, ?)",
                                  [(generation, int(pk)) for pk in pks])
        return generation

    def changed_since(self, generation: int) -> np.ndarray | None:
        """The pks written after ``generation`` (added, given a new vector or other fields, or
        deleted); None when the log does not reach back that far."""
        if not self._log_reaches(generation):
            return None
        rows = self.conn.execute("SELECT DISTINCT pk FROM vector_changes WHERE generation > ?", (generation,)).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def count_changed_since(self, generation: int) -> int | None:
        """How many papers ``changed_since`` would list, counted in SQLite: a small index asks after
        every write whether its file is due for a save."""
        if not self._log_reaches(generation):
            return None
        return self.conn.execute("SELECT COUNT(DISTINCT pk) FROM vector_changes WHERE generation > ?", (generation,)).fetchone()[0]

    def _log_reaches(self, generation: int) -> bool:
        """Whether the log still holds every write after ``generation`` (saves forget older ones)."""
        return generation >= int(self.get_meta("changes_from") or 0)

    def forget_changes(self, upto: int) -> None:
        """Drop the log of writes up to ``upto`` (a FAISS file that reflects them has been saved), in
        the caller's transaction."""
        self.conn.execute("DELETE FROM vector_changes WHERE generation <= ?", (upto,))
        if upto > int(self.get_meta("changes_from") or 0):
            self.set_meta("changes_from", str(upto))
