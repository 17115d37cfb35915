"""Filters on every query, and every paper's filterable fields as arrays to apply them with.

No SQL here: the store reads the columns (``Store.filter_columns``), the library keeps them in step
with its writes (a cache like the FAISS file), and searches apply them to a query's candidates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass
class Filters:
    """Filters on every query; None means no filter on that field."""

    since: str | None = None
    until: str | None = None
    categories: tuple[str, ...] = ()
    min_popularity: float | None = None

    def active(self) -> bool:
        return bool(self.since or self.until or self.categories or self.min_popularity is not None)


def category_matches(name: str, wanted: str) -> bool:
    return name == wanted or name.lower().startswith(wanted.lower() + ".")


@dataclass(frozen=True)
class FilterColumns:
    """Every paper's filterable fields as arrays: a filter over a large collection costs a few ms
    this way, against far longer for SQL that returns a large share of the pks (measured with
    benchmarks/scale.py's store). A paper without a date fails any date filter; a category 'cs'
    matches 'cs' itself and, case-insensitively, 'cs.*' (tests/test_filters.py checks this against
    the SQL it replaced)."""

    pks: np.ndarray  # sorted int64
    dates: np.ndarray  # 'S10' ISO dates, b"" where there is none
    popularity: np.ndarray  # float64, NaN where there is none
    categories: dict[str, np.ndarray]  # category → sorted pks

    def allowed(self, filters: Filters) -> np.ndarray:
        keep = np.ones(len(self.pks), dtype=bool)
        if filters.since or filters.until:
            keep &= self.dates != b""
        if filters.since:
            keep &= self.dates >= filters.since.encode()
        if filters.until:
            keep &= self.dates <= filters.until.encode()
        if filters.min_popularity is not None:
            keep &= self.popularity >= filters.min_popularity
        if filters.categories:
            in_category = np.zeros(len(self.pks), dtype=bool)
            for name, members in self.categories.items():
                if any(category_matches(name, c) for c in filters.categories):
                    in_category[np.searchsorted(self.pks, members)] = True  # members are a subset of pks
            keep &= in_category
        return self.pks[keep]

    def unknown_categories(self, wanted: Iterable[str]) -> list[str]:
        """The categories asked for that no paper here has (a typo, or another field's scheme)."""
        return [c for c in wanted if not any(category_matches(name, c) for name in self.categories)]

    def patched(self, fresh: FilterColumns, removed: Iterable[int] = ()) -> FilterColumns:
        """These columns with ``fresh``'s papers replaced or added and ``removed`` dropped (a copy).

        Positions come from binary searches in the sorted arrays, so a one-paper write costs a few
        memcpy of the columns, not a re-sort."""
        gone = np.union1d(np.fromiter(removed, dtype=np.int64), fresh.pks)
        drop = _positions(self.pks, gone)
        pks, dates, popularity = (np.delete(column, drop) for column in (self.pks, self.dates, self.popularity))
        at = np.searchsorted(pks, fresh.pks)
        categories = {}
        for name in self.categories.keys() | fresh.categories.keys():
            members = self.categories.get(name, np.zeros(0, dtype=np.int64))
            members = np.delete(members, _positions(members, gone))
            added = fresh.categories.get(name)
            if added is not None:
                members = np.insert(members, np.searchsorted(members, added), added)
            if len(members):
                categories[name] = members
        return FilterColumns(np.insert(pks, at, fresh.pks), np.insert(dates, at, fresh.dates),
                             np.insert(popularity, at, fresh.popularity), categories)


def _positions(sorted_values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where the values of ``wanted`` sit in ``sorted_values`` (those present only)."""
    if not len(sorted_values) or not len(wanted):
        return np.zeros(0, dtype=np.int64)
    at = np.minimum(np.searchsorted(sorted_values, wanted), len(sorted_values) - 1)
    return at[sorted_values[at] == wanted]
