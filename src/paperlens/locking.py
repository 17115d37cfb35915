"""One writer of an index folder at a time, across threads and processes.

A write (ingest, delete, dedup, check's repairs) changes the store and then the files beside it
(vectors.faiss, keywords/, manifest.json); two processes doing so at once would save files that
each lack the other's papers. The writer lock is an ``flock`` on ``writer.lock`` in the folder
(through the filelock package; the kernel drops it when its process dies, so a killed writer never
leaves the folder locked), taken after this process's own ``threading.RLock``. Readers never take it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

from .errors import WriterBusy

LOCK_FILE = "writer.lock"


class WriterLock:
    """Re-entrant in the thread that holds it: a check that repairs by ingesting takes it once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.thread_lock = threading.RLock()
        # Not thread-local and not a per-path singleton: two opened libraries of one folder in one
        # process exclude each other as two processes do (an flock belongs to its open file).
        # The file stays after release: removing it would let a third process lock a new file while
        # a second still holds the old one.
        self._file = filelock.FileLock(folder / LOCK_FILE, thread_local=False, is_singleton=False, preserve_lock_file=True)
        self._owner: int | None = None
        self.depth = 0

    @property
    def held(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def try_acquire(self) -> bool:
        """Take the lock if no one holds it; never waits."""
        if not self.thread_lock.acquire(blocking=False):
            return False
        if self.depth == 0:
            try:
                self._file.acquire(blocking=False)
            except (filelock.Timeout, OSError):  # OSError: a read-only folder, which no one writes
                self.thread_lock.release()
                return False
        self._enter()
        return True

    def acquire(self, wait: float) -> None:
        """Take the lock, waiting at most ``wait`` seconds for its holder; WriterBusy after that."""
        deadline = time.monotonic() + wait
        if not self.thread_lock.acquire(timeout=wait):
            raise self._busy(wait)
        if self.depth == 0:
            try:
                self._file.acquire(timeout=max(0.0, deadline - time.monotonic()), poll_interval=0.05)
            except filelock.Timeout:
                self.thread_lock.release()
                raise self._busy(wait) from None
        self._enter()

    def _enter(self) -> None:
        self.depth += 1
        self._owner = threading.get_ident()

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            self._owner = None
            self._file.release()
        self.thread_lock.release()

    @contextmanager
    def hold(self, wait: float) -> Iterator[None]:
        self.acquire(wait)
        try:
            yield
        finally:
            self.release()

    def _busy(self, wait: float) -> WriterBusy:
        return WriterBusy(f"another writer (a process or request) kept {self.folder} busy for {wait:g} s; "
                          "try again when it has finished (PAPERLENS_WRITER_WAIT_SECONDS sets the wait)")
