"""Group commit: writes of an index folder that arrive together share one commit.

A write's fixed costs dwarf its own rows: the BM25 index's commit (a new tantivy writer, its files
synced), the FAISS copy-and-swap and its save, the manifest's fsync, the writer lock. Writers
(ingests with their vectors already encoded, deletes) queue here and wait; one committer thread
per library takes the writer lock, stages every queued write in arrival order in one store
transaction (each in its own savepoint, so a write that fails rolls back alone and reports its own
error), commits, and brings the caches up to the merged change with one ``Library.apply_write``.
Writes that arrive meanwhile queue for the next group.

The writers are answered once the store has committed and the filter columns and FAISS hold the
change, before keywords/ commits (``Library.apply_write``'s ``answer``): tantivy's commit, which
syncs every new segment file, was most of a group's time under load, and a write is durable once
the store has it (a kill before keywords/ commits leaves it behind the store; the next open
rebuilds it). Searches of this process still see every answered write: ``Library.keywords`` waits
for the commit in flight. The committer keeps the writer lock until keywords/ has committed, so
another process never sees the folder half written.

No timer before a group: a write alone commits at once; under load a group is whatever queued
while the previous one committed. After a group the committer keeps the writer lock a little
(KEYWORD_LINGER_SECONDS, at most KEYWORD_BATCH_SECONDS in all): groups that queue meanwhile are
committed and answered at once, and keywords/ takes them all in one commit before the lock goes
(``Library.settle_keywords``), so tantivy commits ~10 times a second under load rather than once a
group. Encoding never happens here (ingest encodes before queueing), so a delete never waits for a
model.

The tantivy writer is still opened per group and closed after it (keyword.py): the writer lock is
released between groups, and another process (a CLI ingest beside a server) must then be able to
take tantivy's own lock on keywords/; per group, its cost is shared by every write of the group.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .caches import ChangeSet
from .errors import PaperlensError
from .faults import crash_point

if TYPE_CHECKING:
    from .library import Library

# A write's part of a group: under the writer lock, in the group's transaction, change the store
# and say what changed (a ChangeSet whose generation is ignored) and what to answer.
Stage = Callable[[], tuple[ChangeSet, Any]]

# Writes one group takes at most: a bound on how long the first writes of a long queue wait for their answer.
MAX_GROUP = 256
# Groups committed in a row share one keywords/ commit: the committer keeps the writer lock while
# another group queues within the linger, for at most the batch's time or papers. A commit of
# tantivy costs ~9 ms of CPU however few papers it takes (new segment files, their fsyncs), most of
# a small group's cost under load (benchmarks/load.py); searches read the owed papers through a
# view meanwhile, and another process waits for the lock at most that much longer.
KEYWORD_LINGER_SECONDS = 0.02
KEYWORD_BATCH_SECONDS = 0.1
KEYWORD_BATCH_PAPERS = 200


@dataclass(eq=False)
class _Pending:
    kind: str  # "ingest", "delete": names the crash point after the commit
    stage: Stage
    woken: threading.Event = field(default_factory=threading.Event)
    changes: ChangeSet | None = None
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    """The queue of one library's writers (``Library.commits``) and its committer thread."""

    def __init__(self, library: Library):
        self.library = library
        self._changed = threading.Condition()  # guards the queue; notified when a write queues or at close
        self._queue: list[_Pending] = []
        self._committer: threading.Thread | None = None
        self._committer_pid = os.getpid()
        self._closed = False
        # Groups committed and writes in them, for the server's metrics and the tests.
        self.groups = 0
        self.writes = 0

    @property
    def waiting(self) -> int:
        """Writes queued for the next group."""
        with self._changed:
            return len(self._queue)

    def submit(self, kind: str, stage: Stage) -> Any:
        """Run ``stage`` in the next group commit and return its result once the group is in the
        store, the filter columns and FAISS (keywords/ follows; see the module's docstring), or raise
        its own error. A thread that already holds the writer lock (a repair that ingests) commits
        alone at once, keywords/ included: queueing would wait for itself."""
        pending = _Pending(kind, stage)
        if self.library.writer.held:
            self._commit([pending])
        else:
            with self._changed:
                if self._closed:
                    raise PaperlensError(f"{self.library.folder} is closed: no more writes")
                self._queue.append(pending)
                if self._committer is None or self._committer_pid != os.getpid():  # none yet, or a forked copy's parent's
                    self._committer = threading.Thread(target=self._run, name="paperlens-commit", daemon=True)
                    self._committer_pid = os.getpid()
                    self._committer.start()
                self._changed.notify()
            pending.woken.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def close(self) -> None:
        """Commit what is queued, then stop the committer thread (Library.close)."""
        with self._changed:
            self._closed = True
            self._changed.notify()
            committer = self._committer
        if committer is not None:
            committer.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closed:
                    self._changed.wait()
                if not self._queue:
                    return
            self._lead()

    def _lead(self) -> None:
        """Take the writer lock, then every write queued by then (those that arrived while it waited
        join too), and commit them; then each group that queues within KEYWORD_LINGER_SECONDS, for at
        most KEYWORD_BATCH_SECONDS, and keywords/ takes them all in one commit before the lock goes."""
        group: list[_Pending] = []
        library = self.library
        try:
            with library.writing():
                started = time.monotonic()
                try:
                    while True:
                        with self._changed:
                            left = started + KEYWORD_BATCH_SECONDS - time.monotonic()
                            if not self._queue and not self._closed and left > 0:
                                self._changed.wait(min(KEYWORD_LINGER_SECONDS, left))
                            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                        if not group:
                            break
                        self._commit(group, defer_keywords=True)
                        group = []
                        if time.monotonic() - started >= KEYWORD_BATCH_SECONDS or library.keyword_cache.owed_papers() >= KEYWORD_BATCH_PAPERS:
                            break
                finally:
                    library.settle_keywords()
        except BaseException as exc:  # the writer lock was not had (WriterBusy)
            if not group:  # every write queued meanwhile fails with it, rather than wait as long again in turn
                with self._changed:
                    group, self._queue = self._queue, []
            for member in group:
                if member.error is None and not member.woken.is_set():
                    member.error = exc
        finally:
            _answer(group)

    def _commit(self, group: list[_Pending], defer_keywords: bool = False) -> None:
        """Under the writer lock: stage, commit and apply ``group``; every error before the answer goes
        to its writers. Each writer is answered as soon as its write is durable and searchable.
        ``defer_keywords``: keywords/ is left owing the change (``Library.settle_keywords``)."""
        library = self.library
        store = library.store
        self.groups += 1  # counted before any answer, so an answered writer sees its group counted
        self.writes += len(group)
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
                changes = ChangeSet.merged([p.changes for p in group if p.error is None], generation)
                library.apply_write(changes, answer=functools.partial(_answer, group), defer_keywords=defer_keywords)
        except BaseException as exc:  # the commit or a cache failed before the answer: every write of the group hears it
            for pending in group:
                if pending.error is None and not pending.woken.is_set():
                    pending.error = exc
                    pending.result = None
        finally:
            _answer(group)


def _answer(group: list[_Pending]) -> None:
    for pending in group:
        pending.woken.set()
