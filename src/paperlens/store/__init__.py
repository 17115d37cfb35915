"""SQLite: the source of truth for papers, their vectors and users. The only SQL in the code.

    db.py        connections (one per thread), transactions, migrations, meta, the integrity check
    papers.py    papers and their lookups
    vectors.py   vectors, and the log of which vectors each write changed
    users.py     users, token hashes, interactions, interests, collections
    harvests.py  OAI-PMH harvest progress and runs

One rule for writes: the caller owns the transaction (``with store.transaction(): ...``); no
method opens its own, and transactions nest.
"""

from __future__ import annotations

from functools import cached_property

from ..filters import FilterColumns, Filters
from .db import MIGRATIONS, Database
from .harvests import HarvestRun, HarvestState, HarvestStore, HarvestTotals
from .papers import PaperTable, StoredPaper, UpsertOutcome
from .users import CollectionRow, DigestRecipient, InteractionRow, InterestRow, UserRow, UserStore
from .vectors import VectorTable

__all__ = [
    "MIGRATIONS", "CollectionRow", "Database", "DigestRecipient", "FilterColumns", "Filters", "HarvestRun", "HarvestState", "HarvestStore",
    "HarvestTotals", "InteractionRow", "InterestRow", "Store",
    "StoredPaper", "UpsertOutcome", "UserRow", "UserStore",
]


class Store(PaperTable, VectorTable):
    """One index folder's SQLite file: its papers and vectors here, its users under ``users``, its
    harvests under ``harvests``."""

    @cached_property
    def users(self) -> UserStore:
        return UserStore(self)

    @cached_property
    def harvests(self) -> HarvestStore:
        return HarvestStore(self)
