"""Group commit: writes of an index folder that arrive together share one commit.

A write's fixed costs dwarf its own rows: the BM25 index's commit (a new tantivy writer, its files
synced), the FAISS copy-and-swap and its save, the manifest's fsync, the writer lock. Writers
(ingests with their vectors already encoded, deletes) queue here; the first in line leads: it
takes the writer lock, stages every queued write in arrival order in one store transaction (each
in its own savepoint, so a write that fails rolls back alone and reports its own error), commits,
brings the caches up to the merged change with one ``Library.apply_write``, and then answers each
writer. Writes that arrive meanwhile queue for the next group, whose first writer then leads.

No thread of its own and no timer: a write alone commits at once, as before; under load a group is
whatever queued while the previous one committed. Encoding never happens here (ingest encodes
before queueing), so a delete never waits for a model.

The tantivy writer is still opened per group and closed after it (keyword.py): the writer lock is
released between groups, and another process (a CLI ingest beside a server) must then be able to
take tantivy's own lock on keywords/; per group, its cost is shared by every write of the group.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .caches import ChangeSet
from .faults import crash_point

if TYPE_CHECKING:
    from .library import Library

# A write's part of a group: under the writer lock, in the group's transaction, change the store
# and say what changed (a ChangeSet whose generation is ignored) and what to answer.
Stage = Callable[[], tuple[ChangeSet, Any]]

# Writes one group takes at most: a bound on how long its leader waits before its own answer.
MAX_GROUP = 256


@dataclass(eq=False)
class _Pending:
    kind: str  # "ingest", "delete": names the crash point after the commit
    stage: Stage
    woken: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    finished: bool = False
    changes: ChangeSet | None = None
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    """The queue of one library's writers (``Library.commits``)."""

    def __init__(self, library: Library):
        self.library = library
        self._mutex = threading.Lock()
        self._queue: list[_Pending] = []
        self._leading = False
        # Groups committed and writes in them, for the server's metrics and the tests.
        self.groups = 0
        self.writes = 0

    @property
    def waiting(self) -> int:
        """Writes queued for the next group."""
        with self._mutex:
            return len(self._queue)

    def submit(self, kind: str, stage: Stage) -> Any:
        """Run ``stage`` in the next group commit and return its result once the group is in the
        store and the caches, or raise its own error. A thread that already holds the writer lock
        (a repair that ingests) commits alone at once: queueing would wait for itself."""
        pending = _Pending(kind, stage)
        if self.library.writer.held:
            self._commit([pending])
        else:
            with self._mutex:
                self._queue.append(pending)
                if not self._leading:
                    self._leading = pending.leads = True
            if not pending.leads:
                pending.woken.wait()
            if not pending.finished:  # first in line: commit the group
                self._lead(pending)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _lead(self, pending: _Pending) -> None:
        """Take the writer lock, then every write queued by then (those that arrived while it waited
        join too), and commit them; then hand the lead to the first writer queued meanwhile."""
        group: list[_Pending] = []
        try:
            with self.library.writing():
                with self._mutex:
                    group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                self._commit(group)
        except BaseException as exc:  # the writer lock was not had (WriterBusy)
            if not group:  # every write queued meanwhile fails with it, rather than wait as long again in turn
                with self._mutex:
                    group, self._queue = self._queue, []
            for member in group:
                if member.error is None and not member.finished:
                    member.error = exc
        finally:
            with self._mutex:
                if self._queue:  # the next group's first writer leads it
                    self._queue[0].leads = True
                    self._queue[0].woken.set()
                else:
                    self._leading = False
            for member in group:
                member.finished = True
                member.woken.set()

    def _commit(self, group: list[_Pending]) -> None:
        """Under the writer lock: stage, commit and apply ``group``; every error goes to its writers."""
        library = self.library
        store = library.store
        try:
            before = store.generation()
            with store.transaction():
                for pending in group:
                    manifest = library.manifest
                    try:
                        with store.transaction():  # a savepoint: this write alone rolls back
                            pending.changes, pending.result = pending.stage()
                    except Exception as exc:  # reported to its own writer; the others go on
                        pending.error = exc
                        library.manifest = manifest  # a first ingest that failed leaves no manifest
                generation = store.generation()
            for kind in dict.fromkeys(p.kind for p in group if p.error is None):
                crash_point(f"{kind}:after-commit")
            crash_point("group:after-commit")
            if generation != before:
                library.apply_write(ChangeSet.merged([p.changes for p in group if p.error is None], generation))
        except BaseException as exc:  # the commit or a cache failed: every write of the group hears it
            for pending in group:
                if pending.error is None:
                    pending.error = exc
                    pending.result = None
        finally:
            self.groups += 1
            self.writes += len(group)
