"""Fault injection for crash tests: ``PAPERLENS_CRASH_AT=name[,name]`` kills the process at a named point.

The crash tests start a real server with this variable and check that a restart serves every
acknowledged paper and nothing half-written. It is read from the environment, not from Settings,
because the points sit deep in code (index saving) that is given no settings; unset, it costs one
dictionary lookup per write.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "PAPERLENS_CRASH_AT"

# The points, in the order a write reaches them.
POINTS = (
    "ingest:after-commit",       # store committed, no cache updated yet
    "delete:after-commit",       # a delete committed, FAISS still holds the paper
    "group:after-commit",        # a group commit's writes all in the store, no cache updated, none answered (commits.py)
    "cache-applied:filters",     # the filter columns updated (Library.apply_write: one per cache, in this order)
    "index-save:before-rename",  # the new FAISS file is written aside (*.tmp), not yet in place
    "persist:before-manifest",   # the new FAISS file is in place, the manifest still describes the old one
    "cache-applied:faiss",       # FAISS updated (its file saved only when due); group commit answers its writers next
    "cache-applied:keywords",    # keywords/ committed after the answer, the manifest not yet written to vouch for it
    "harvest:page-committed",    # a harvested page and the harvest's progress committed, the next page not asked for
)


def crash_point(name: str) -> None:
    """SIGKILL this process here if the environment names this point: no cleanup, no flush, like a power cut."""
    wanted = os.environ.get(CRASH_ENV)
    if wanted and name in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
