"""What an index folder keeps in step with its store: each a cache behind one small interface.

    FilterCache    every paper's filterable fields as arrays (filters.FilterColumns), in memory
    KeywordCache   keywords/, the BM25 index over titles and abstracts (keyword.py)
    FaissCache     vectors.faiss, the ANN index over the stored vectors (index/)

A writer commits to the store, then hands the change to ``Library.apply_write``, which applies it
to each cache in turn. A kill between two of them leaves the later ones behind the store; the next
open asks each cache whether it is behind (``problem``) and rebuilds the ones that are, so the
SQLite file stays the one source of truth. Adding a cache means one class here and one line in
``Library.__init__``.

Another process may write the same folder (a CLI ingest beside a running server). Each cache
records the store write it reflects (``generation``); ``Library.catch_up`` reads the store's log of
the papers changed since and hands it to each cache that is behind (``catch_up``), which brings
itself up to it in memory, without writing anything to the folder: the writer keeps the files.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .faults import crash_point
from .filters import FilterColumns
from .index import (
    VectorIndex,
    choose_layout,
    create_index,
    layout_outdated,
    layout_params,
    load_index,
    training_sample,
)
from .index.hnsw import HNSWIndex
from .index.layered import LayeredIndex
from .keyword import PENDING_MAX, KeywordIndex, KeywordView, PendingPapers, Row

if TYPE_CHECKING:
    from .library import Library

log = logging.getLogger(__name__)

INDEX_FILE = "vectors.faiss"
KEYWORD_DIR = "keywords"


@dataclass(frozen=True)
class ChangeSet:
    """One committed write of the store, as the caches need to see it."""

    generation: int  # the store's write generation once it committed
    rows: list[Row] = field(default_factory=list)  # (pk, title, abstract) of papers added or whose text changed
    vectors: np.ndarray | None = None  # their new vectors, row for row
    refreshed: list[int] = field(default_factory=list)  # pks whose other fields only (date, categories, ...) changed
    removed: list[int] = field(default_factory=list)  # pks deleted

    @property
    def changed(self) -> np.ndarray:
        return np.array([pk for pk, _, _ in self.rows], dtype=np.int64)

    @classmethod
    def merged(cls, parts: list[ChangeSet], generation: int) -> ChangeSet:
        """The writes of one group commit as one change, in their order: a later write of a paper
        wins (added then deleted is deleted; deleted then added again is added)."""
        state: dict[int, tuple[str, Row | None, np.ndarray | None]] = {}
        for part in parts:
            for n, row in enumerate(part.rows):
                state[row[0]] = ("row", row, part.vectors[n])
            for pk in part.refreshed:
                if state.get(pk, ("",))[0] != "row":
                    state[pk] = ("refreshed", None, None)
            for pk in part.removed:
                state[pk] = ("removed", None, None)
        rows = [(row, vector) for kind, row, vector in state.values() if kind == "row"]
        return cls(generation,
                   rows=[row for row, _ in rows],
                   vectors=np.stack([vector for _, vector in rows]) if rows else None,
                   refreshed=[pk for pk, (kind, _, _) in state.items() if kind == "refreshed"],
                   removed=[pk for pk, (kind, _, _) in state.items() if kind == "removed"])


class Cache(ABC):
    """Something kept in step with the store: brought up to date by each write, rebuilt from the store.

    ``apply`` and ``rebuild`` run under the library's writer lock (or before the library is shared)."""

    name: str  # as messages name it: the file or folder
    key: str  # short, for crash points

    def __init__(self, library: Library):
        self.library = library
        # The store write this cache reflects in this process (set by open, apply_write, catch_up).
        self.generation = -1

    def open(self) -> str | None:
        """Load from the folder; why the result cannot be trusted, or None when it can."""
        return self.problem()

    @abstractmethod
    def apply(self, changes: ChangeSet) -> None:
        """Bring this cache up to a write the store has just committed (under the writer lock)."""

    @abstractmethod
    def problem(self) -> str | None:
        """Why this cache is behind the store or disagrees with it; None when it is in step."""

    @abstractmethod
    def rebuild(self) -> None:
        """Rebuild from the store alone (no model needed)."""

    @abstractmethod
    def catch_up(self, changes: ChangeSet | None, generation: int) -> int:
        """Bring this process's copy up to writes another process committed, in memory only, and
        return the store write it now reflects. ``changes`` holds the current state of every paper
        written since this cache's ``generation`` (applying it twice is harmless); None when the
        store's log no longer reaches back that far: reload whole."""

    def stale(self) -> bool:
        """Whether another process replaced the files under this cache without a store write
        ('paperlens check' rebuilding them): catch up by reloading whole."""
        return False

    @property
    def deferred(self) -> bool:
        """Whether ``close`` has anything to save (it then runs under the writer lock)."""
        return False

    def close(self) -> None:  # noqa: B027 - most caches defer nothing
        """Save whatever the cache has deferred."""


class FilterCache(Cache):
    """Loaded on the first filtered query, replaced whole (searches keep the columns they started with).

    A write only notes its papers' fresh rows; the next read of the columns patches them in, all
    writes since at once. Patching copies every column, O(collection): on the write path it was a
    large share of a one-paper write at scale (benchmarks/scale.py), and under a burst of writes
    one patch now serves many."""

    name = "filter columns"
    key = "filters"
    # Pending rows past this are patched in by the write itself: merging them stays cheap.
    MAX_PENDING = 4096

    def __init__(self, library: Library):
        super().__init__(library)
        self.columns: FilterColumns | None = None
        # Writes not yet patched in: their papers' rows as now stored, and the papers removed.
        self._fresh: FilterColumns | None = None
        self._removed: set[int] = set()
        self._patching = threading.Lock()

    def get(self) -> FilterColumns:
        columns = self.columns
        if columns is None:
            with self.library.lock:  # a writer's patch must not be lost under a load that read the store before its commit
                if self.columns is None:
                    self.columns = self.library.store.filter_columns()
                columns = self.columns
        if self._fresh is not None:
            with self._patching:
                self._patch_pending()
                columns = self.columns
        return columns

    def _patch_pending(self) -> None:
        """Under ``_patching``: patch the noted writes into the columns."""
        if self._fresh is not None and self.columns is not None:
            self.columns = self.columns.patched(self._fresh, self._removed)
        self._fresh, self._removed = None, set()

    def open(self) -> str | None:
        return None  # nothing on disk: loaded when first needed

    def apply(self, changes: ChangeSet) -> None:
        if self.columns is None:
            return
        fresh = self.library.store.filter_columns([*changes.changed.tolist(), *changes.refreshed])
        with self._patching:
            # Merged into the pending rows as into the columns: a later write of a paper wins.
            self._fresh = fresh if self._fresh is None else self._fresh.patched(fresh, changes.removed)
            self._removed.update(changes.removed)
            if len(self._fresh.pks) > self.MAX_PENDING:
                self._patch_pending()

    def problem(self) -> str | None:
        if self.columns is None:
            return None
        held, stored = len(self.get().pks), self.library.store.count()
        return None if held == stored else f"the {self.name} hold {held} papers, the store {stored}"

    def rebuild(self) -> None:
        if self.columns is not None:
            with self._patching:
                self._fresh, self._removed = None, set()
                self.columns = self.library.store.filter_columns()

    def catch_up(self, changes: ChangeSet | None, generation: int) -> int:
        if changes is None:
            self.rebuild()
        else:
            self.apply(changes)
        return generation


class KeywordCache(Cache):
    """keywords/, vouched for by the manifest's ``keyword_generation``."""

    name = f"{KEYWORD_DIR}/"
    key = "keywords"

    def __init__(self, library: Library):
        super().__init__(library)
        self.index: KeywordIndex | None = None
        self.folder_id: tuple[int, int] | None = None  # the folder's inode: a rebuild renames a new one into place
        # Applies of writes answered before keywords/ took them (group commit): begun and ended.
        self._settled = threading.Condition()
        self._begun = self._ended = 0
        # A write's change that keywords/ failed to take after it was answered: retried with the next.
        self._backlog: ChangeSet | None = None
        # The papers of the apply in flight, which searches read through a KeywordView meanwhile.
        self._pending: PendingPapers | None = None
        self._answered_generation = -1  # the write that apply brings keywords/ to
        # The answered writes that apply owes keywords/, merged: group commit's groups in a row.
        self.owed: ChangeSet | None = None

    def _with_backlog(self, changes: ChangeSet) -> tuple[ChangeSet, list[int]]:
        """``changes`` after any backlog, and the pks whose rows keywords/ re-reads: the index holds the
        filter fields too, which a metadata-only change (refreshed) moves."""
        if self._backlog is not None:
            changes = ChangeSet.merged([self._backlog, changes], changes.generation)
        return changes, [*changes.changed.tolist(), *changes.refreshed]

    def expect(self, changes: ChangeSet) -> None:
        """``changes`` are about to be answered before this cache applies them: until it has, searches
        read them through a view (``reading``), or wait when they touch over PENDING_MAX papers.
        Writes expected one after another add up (``owed``) until one apply takes them all."""
        self.owed = changes if self.owed is None else ChangeSet.merged([self.owed, changes], changes.generation)
        changes, changed = self._with_backlog(self.owed)
        pending = None
        if len(changed) + len(changes.removed) <= PENDING_MAX:
            # The writes are committed: a failure here only means searches wait for this apply, as
            # they would for a large one.
            try:
                pending = PendingPapers(self.library.store.keyword_rows(changed), [*changed, *changes.removed])
            except Exception:
                log.exception("papers of write %d could not be read for searches during its keywords/ commit", changes.generation)
        with self._settled:
            self._begun += 1
            self._pending = pending
            self._answered_generation = changes.generation

    def settled(self) -> None:
        """The apply that ``expect`` announced has ended (committed or failed)."""
        with self._settled:
            self._ended = self._begun
            self._pending = None
            self.owed = None
            self._settled.notify_all()

    def owed_papers(self) -> int:
        """Papers the owed writes change or remove (a view scores each on every search)."""
        owed = self.owed
        return 0 if owed is None else len(owed.rows) + len(owed.refreshed) + len(owed.removed)

    def readable_generation(self) -> int:
        """The last write a search of this process sees here: an apply in flight's, whose writes were
        answered (a search reads them through a view, or waits for them)."""
        with self._settled:
            return max(self.generation, self._answered_generation) if self._ended < self._begun else self.generation

    def reading(self, timeout: float) -> KeywordIndex | KeywordView | None:
        """The index holding every write answered before this call. While an apply of answered writes
        is in flight: a view of the committed snapshot with that apply's papers; waited for (at most
        ``timeout`` seconds) only when it is too large to view, the snapshot holds none of its words,
        or titles weigh more (settings.title_weight)."""
        with self._settled:
            pending = self._pending if self._ended < self._begun else None
            index = self.index
        if pending is not None and index is not None and self.library.settings.title_weight == 1.0:
            base = index.snapshot()
            if pending.ready(base):
                return KeywordView(base, pending, lambda where: self.library.filter_columns().allowed(where),
                                   lambda: self._settled_index(timeout))
        return self._settled_index(timeout)

    def _settled_index(self, timeout: float) -> KeywordIndex | None:
        self.wait_settled(timeout)
        return self.index

    def wait_settled(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the apply in flight, if any, of writes answered
        before this call; never for one that begins later, so a reader waits one commit at most."""
        with self._settled:
            target = self._begun
            if self._ended < target:
                self._settled.wait_for(lambda: self._ended >= target, timeout)

    @property
    def path(self) -> Path:
        return self.library.folder / KEYWORD_DIR

    def _current_folder(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def open(self) -> str | None:
        if not self.path.exists():
            if self.library.store.count() == 0 and self.library.writer.held:  # a new folder: nothing to recover
                self.rebuild()
                return None
            return f"{self.name} is missing"
        try:
            self._open_folder()
        except (ValueError, OSError, RuntimeError) as exc:
            return f"{self.name} is unreadable ({exc})"
        self.index.generation = self.library.store.generation()
        return self.problem()

    def _open_folder(self) -> None:
        folder_id = self._current_folder()
        self.index = KeywordIndex.open(self.path)
        self.folder_id = folder_id

    def problem(self) -> str | None:
        store, manifest = self.library.store, self.library.manifest
        store_generation = store.generation()
        if manifest is not None and manifest.keyword_generation != store_generation:
            return f"{self.name} reflects write {manifest.keyword_generation}, the store is at write {store_generation}"
        if len(self.index) != store.count():
            return f"{self.name} holds {len(self.index)} papers, the store {store.count()}"
        return None

    def apply(self, changes: ChangeSet) -> None:
        changes, changed = self._with_backlog(changes)
        self._backlog = changes
        if changes.rows or changes.removed or changes.refreshed:
            pending = self._pending  # the rows ``expect`` read for this apply
            rows = pending.rows if pending is not None else self.library.store.keyword_rows(changed)
            self.index.write(rows, [*changed, *changes.removed], changes.generation)
        else:
            self.index.generation = changes.generation
        self._backlog = None
        if self.library.manifest is not None:  # written after this apply (Library.apply_write), or by rebuild
            self.library.manifest.keyword_generation = self.index.generation

    def rebuild(self) -> None:
        store, manifest = self.library.store, self.library.manifest
        generation = store.generation()
        self.index = KeywordIndex.recreate(self.path, store.iter_keyword_rows(), generation)
        self.folder_id = self._current_folder()
        if manifest is not None:
            manifest.keyword_generation = generation
            manifest.write(self.library.folder)

    def stale(self) -> bool:
        return self.index is not None and self._current_folder() != self.folder_id

    def catch_up(self, changes: ChangeSet | None, generation: int) -> int:
        """Reload the writer's commits. The writer commits the store, then keywords/, then the manifest
        that says so: until its ``keyword_generation`` reaches the store's write, keywords/ may lack
        that write, and the next catch-up reloads again."""
        manifest = self.library.manifest
        reached = generation if manifest is None else min(generation, manifest.keyword_generation)
        try:
            if self.index is None or self.stale():
                self._open_folder()
            else:
                self.index.reload()
        except (ValueError, OSError, RuntimeError) as exc:  # a writer's rebuild renaming folders meanwhile
            log.info("%s: reload failed (%s); trying again at the next catch-up", self.name, exc)
            return self.generation
        self.index.generation = reached
        return reached


class FaissCache(Cache):
    """vectors.faiss and the index loaded from it. Writers copy the index, change the copy and swap
    it in, so a search keeps the snapshot it started with. The file is saved whole only once
    Settings.index_save_share of the collection (and index_save_min_changes papers) changed; until
    then the manifest keeps describing the older file, and an open replays the store's log of
    changed vectors onto it."""

    name = INDEX_FILE
    key = "faiss"

    def __init__(self, library: Library):
        super().__init__(library)
        self.index: VectorIndex | None = None
        self.layout: str | None = None  # the layout of ``index``; another process's rebuild may change the manifest's
        # The write the in-memory index reflects when its file was left older (see _save).
        self.unsaved_generation: int | None = None

    @property
    def path(self) -> Path:
        return self.library.folder / INDEX_FILE

    def open(self) -> str | None:
        leftover = self.path.with_name(INDEX_FILE + ".tmp")
        interrupted = leftover.exists()
        if interrupted and not self.library.writer.held:  # another process may be saving right now
            return f"{leftover.name} exists: another process is saving {INDEX_FILE}, or a save was interrupted"
        if interrupted:  # a save killed before its rename: the old file is intact, but behind
            leftover.unlink()
            self.library.recovered.append(f"removed {leftover.name} left by an interrupted save of {INDEX_FILE}")
        manifest = self.library.manifest
        if manifest is None:
            return None
        if interrupted:
            return "an earlier save was interrupted"
        index, problem = self._load(note=True)
        if problem is not None:
            return problem
        self.index, self.layout = index, manifest.layout
        if self.library.writer.held:
            self._rebuild_if_needed()
        return None

    def _load(self, note: bool = False) -> tuple[VectorIndex | None, str | None]:
        """The saved file with the writes since replayed from the store's log, or why it cannot be."""
        manifest = self.library.manifest
        problem = self._file_problem()
        if problem is not None:
            return None, problem
        try:
            index = load_index(manifest.layout, self.path, manifest.index_params, self.library.tuning)
        except RuntimeError as exc:
            return None, f"{INDEX_FILE} is unreadable ({exc})"
        if len(index) != manifest.count or index.dim != manifest.dim:
            return None, f"{INDEX_FILE} holds {len(index)} {index.dim}-d vectors, not {manifest.count} {manifest.dim}-d"
        self._replay(index, note)
        stored = self.library.store.vector_count()
        if len(index) != stored:
            return None, f"{INDEX_FILE} holds {len(index)} vectors, the store {stored}"
        return index, None

    def stale(self) -> bool:
        manifest = self.library.manifest
        return manifest is not None and (self.index is None or manifest.layout != self.layout)

    def catch_up(self, changes: ChangeSet | None, generation: int) -> int:
        """Apply the changed papers' stored vectors to a copy and swap it in, as a write does, but save
        nothing. Too far behind (or the file rebuilt in another layout): load the saved file and replay
        the log, or failing that (the writer is saving it right now) build the index from the store."""
        manifest = self.library.manifest
        if manifest is None:
            return generation
        if changes is None or self.stale():
            index, problem = self._load()
            if problem is not None:
                log.info("catching up from the store, not %s: %s", INDEX_FILE, problem)
                index, _, _ = self._build(manifest.layout)
            self.index, self.layout = index, manifest.layout
            return generation
        if len(changes.changed) or changes.removed:
            index = self._writable()
            index.remove(np.concatenate([changes.changed, np.asarray(changes.removed, dtype=np.int64)]))
            index.add(changes.changed, changes.vectors)
            self.index = index
        return generation

    def problem(self) -> str | None:
        """The in-memory index against the store (by ids), then the file on disk against the manifest."""
        if self.library.manifest is None:
            return None
        if self.index is None:
            return f"{INDEX_FILE} is not loaded"
        stored = self.library.store.vector_pks()
        try:
            held = self.index.ids()
        except NotImplementedError:
            held = None
        if held is not None and not np.array_equal(held, stored):
            extra = np.setdiff1d(held, stored)
            missing = np.setdiff1d(stored, held)
            return f"{INDEX_FILE} holds {len(extra)} ids the store does not and lacks {len(missing)} that it has"
        if held is None and len(self.index) != len(stored):
            return f"{INDEX_FILE} holds {len(self.index)} vectors, the store {len(stored)}"
        return self._file_problem()

    def _file_problem(self) -> str | None:
        """Why the file cannot be brought up to the store's vectors, or None if it can.

        A file that reflects an older write is fine as long as the store logged every write since."""
        manifest, store = self.library.manifest, self.library.store
        if not self.path.exists():
            return f"{INDEX_FILE} is missing"
        if manifest.generation != store.generation() and store.changed_since(manifest.generation) is None:
            return f"{INDEX_FILE} reflects write {manifest.generation}, the store is at write {store.generation()}"
        if not manifest.checksum or file_sha256(self.path) != manifest.checksum:
            return f"{INDEX_FILE} does not match the checksum in the manifest"
        return None

    def _replay(self, index: VectorIndex, note: bool = False) -> None:
        """Apply to a loaded index the writes made since its file was saved, from the store's log."""
        store, behind = self.library.store, self.library.manifest.generation
        changed = store.changed_since(behind)
        if changed is None or len(changed) == 0:
            return
        index.remove(changed)
        pks, vectors = store.candidate_vectors(changed.tolist(), self.library.manifest.dim)
        if pks:
            index.add(np.asarray(pks, dtype=np.int64), vectors)
        if note:
            self.library.recovered.append(f"brought {INDEX_FILE} from write {behind} to {store.generation()} "
                                      f"by replaying {len(changed)} changed papers from the store")

    def apply(self, changes: ChangeSet) -> None:
        manifest = self.library.manifest
        if manifest is None:
            return
        if not changes.rows and not changes.removed and self.index is not None and self.path.exists():
            return  # no vector changed; the manifest written after keywords/ records the write
        vectors = changes.vectors if changes.vectors is not None else np.zeros((0, manifest.dim), np.float32)
        if self.index is None:
            self.index, self.layout = self._new_index(changes.vectors), manifest.layout
            index = self.index
        else:
            index = self._writable()
        index.remove(np.concatenate([changes.changed, np.asarray(changes.removed, dtype=np.int64)]))
        index.add(changes.changed, vectors)
        self.index = index
        if not self._rebuild_if_needed():
            self._save(changes.generation)

    def _writable(self) -> VectorIndex:
        """The index a write changes and then swaps in; searches keep the one they started with.

        Flat and IVF-PQ indexes are copied whole. An HNSW index is layered (index/layered.py): the
        write goes to a small exact part and the graph is shared, because copying it grows with the
        collection (benchmarks/scale.py)."""
        index = self.index
        if isinstance(index, LayeredIndex):
            return index.copy()
        if isinstance(index, HNSWIndex):
            return LayeredIndex.over(index)
        return index.copy()

    def _new_index(self, vectors: np.ndarray | None) -> VectorIndex:
        """The first index of a library, its quantisers (if any) trained on the first papers."""
        manifest = self.library.manifest
        training = training_sample(vectors) if vectors is not None and manifest.layout != "flat" else None
        return create_index(manifest.layout, manifest.dim, manifest.index_params, training, self.library.tuning)

    def _rebuild_if_needed(self) -> bool:
        """Rebuild when the collection outgrew its layout or the index asks for it (HNSW tombstones)."""
        library = self.library
        reason = layout_outdated(library.manifest.layout, len(self.index), library.settings.layout) or self.index.needs_rebuild()
        if not reason:
            return False
        log.warning("rebuilding the index of %s from stored vectors: %s", library.folder, reason)
        self.rebuild()
        return True

    def rebuild(self, layout: str | None = None) -> None:
        """A fresh index from the vectors in the store.

        ``layout`` None keeps the manifest's layout unless the collection outgrew it (``layout_outdated``).
        Trained layouts (SQ8, PQ) are retrained on a sample of the stored vectors."""
        library = self.library
        manifest, store = library.manifest, library.store
        if layout is None:
            count = store.vector_count()
            outdated = layout_outdated(manifest.layout, count, library.settings.layout)
            layout = choose_layout(count, library.settings.layout) if outdated else manifest.layout
        index, layout, params = self._build(layout)
        manifest.layout = layout
        manifest.index_params = params
        self.index, self.layout = index, layout
        self._persist(store.generation())

    def _build(self, layout: str) -> tuple[VectorIndex, str, dict]:
        """An index of ``layout`` over the stored vectors, in memory; with its layout and parameters."""
        library = self.library
        count = library.store.vector_count()
        if count == 0:
            layout = "flat"  # nothing to train a quantiser on; the next ingest grows it into the configured layout
        params = layout_params(layout, count)
        training = self._stored_sample(count) if layout != "flat" else None
        index = create_index(layout, library.manifest.dim, params, training, library.tuning)
        for pks, vectors in library.store.iter_vectors():
            index.add(pks, vectors)
        return index, layout, params

    def _stored_sample(self, count: int, size: int = 100_000) -> np.ndarray:
        """About ``size`` stored vectors taken evenly from every batch, without holding them all."""
        keep = min(1.0, size / max(count, 1))
        parts = [training_sample(vectors, int(np.ceil(len(vectors) * keep)), seed=i)
                 for i, (_, vectors) in enumerate(self.library.store.iter_vectors())]
        return np.concatenate(parts) if parts else np.zeros((0, self.library.manifest.dim), np.float32)

    def _save(self, generation: int) -> None:
        """After a write: save the file when due (see Settings.index_save_share), else only the
        manifest, whose FAISS fields keep describing the older file that the store's log completes."""
        library = self.library
        settings = library.settings
        if len(self.index) >= settings.index_save_every_write_below and self.path.exists():
            changed = library.store.count_changed_since(library.manifest.generation)
            due = max(settings.index_save_share * len(self.index), settings.index_save_min_changes)
            if changed is not None and changed < due:
                self.unsaved_generation = generation  # the manifest written after keywords/ keeps the older file's fields
                return
        self._persist(generation)

    def _persist(self, generation: int) -> None:
        """Save the file, then the manifest that vouches for it (each written aside and renamed),
        then let the store forget the log that the saved file no longer needs."""
        library = self.library
        if isinstance(self.index, LayeredIndex):
            self.index = self.index.merged()
        index = self.index
        index.save(self.path)
        crash_point("persist:before-manifest")
        manifest = library.manifest
        manifest.count = len(index)
        manifest.generation = generation
        manifest.max_pk = library.store.max_vector_pk()  # the index holds exactly the stored vectors
        manifest.checksum = file_sha256(self.path)
        manifest.write(library.folder)
        # The log is kept a while past the save: other processes following the folder catch up from it.
        with library.store.transaction():
            library.store.forget_changes(generation - library.settings.change_log_writes)
        self.unsaved_generation = None

    @property
    def deferred(self) -> bool:
        return self.unsaved_generation is not None and self.index is not None

    def close(self) -> None:
        """Under the writer lock (Library.close), caught up with every other process's write."""
        if self.unsaved_generation is not None and self.index is not None:
            self._persist(max(self.unsaved_generation, self.generation))  # the next open need not replay anything


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
