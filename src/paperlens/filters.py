"""Filters on every query, and every paper's filterable fields as arrays to apply them with.

No SQL here: the store reads the columns (``Store.filter_columns``), the library keeps them in step
with its writes (a cache like the FAISS file), and searches apply them to a query's candidates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .names import author_key

# Filter answers each set of columns keeps (FilterColumns.allowed).
REMEMBERED_FILTERS = 32


@dataclass
class Filters:
    """Filters on every query; None means no filter on that field."""

    since: str | None = None
    until: str | None = None
    categories: tuple[str, ...] = ()
    min_popularity: float | None = None
    authors: tuple[str, ...] = ()  # names as asked for; a paper passes when ANY of them is among its authors

    def active(self) -> bool:
        return bool(self.since or self.until or self.categories or self.min_popularity is not None or self.authors)

    def key(self) -> tuple:
        return self.since, self.until, self.categories, self.min_popularity, self.authors


def category_matches(name: str, wanted: str) -> bool:
    return name == wanted or name.lower().startswith(wanted.lower() + ".")


@dataclass(frozen=True)
class FilterColumns:
    """Every paper's filterable fields as arrays: a filter over a large collection costs a few ms
    this way, against far longer for SQL that returns a large share of the pks (measured with
    benchmarks/scale.py's store). A paper without a date fails any date filter; a category 'cs'
    matches 'cs' itself and, case-insensitively, 'cs.*' (tests/test_filters.py checks this against
    the SQL it replaced). Authors are compared as names.author_key makes them: paper i's authors
    are entries author_offsets[i]:author_offsets[i + 1] of author_family (a hash of the family
    name) and author_initial (a code point, 0 for none), read from bytes the store keeps with each
    paper, so loading them parses nothing (benchmarks/scale.py times the load)."""

    pks: np.ndarray  # sorted int64
    dates: np.ndarray  # 'S10' ISO dates, b"" where there is none
    popularity: np.ndarray  # float64, NaN where there is none
    categories: dict[str, np.ndarray]  # category → sorted pks
    author_offsets: np.ndarray  # int64, len(pks) + 1
    author_family: np.ndarray  # int64, one per (paper, distinct author key)
    author_initial: np.ndarray  # uint32, beside author_family
    # Filters asked for recently → their pks. The columns never change (writers patch a copy), so
    # an answer stays right for as long as these columns are the library's; a filter that repeats
    # (a category, "since 2020") then costs a dict lookup, not a pass over every paper.
    _answers: OrderedDict = field(default_factory=OrderedDict, compare=False, repr=False)

    def allowed(self, filters: Filters) -> np.ndarray:
        """The sorted pks that pass ``filters`` (read-only: the same array may answer again)."""
        key = filters.key()
        answer = self._answers.get(key)
        if answer is None:
            answer = self._allowed(filters)
            answer.flags.writeable = False
            self._answers[key] = answer
            while len(self._answers) > REMEMBERED_FILTERS:
                self._answers.popitem(last=False)
        return answer

    def _allowed(self, filters: Filters) -> np.ndarray:
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
        if filters.authors:
            keep &= self.by_authors(filters.authors)
        return self.pks[keep]

    def by_authors(self, names: Iterable[str]) -> np.ndarray:
        """Which papers have any of ``names`` among their authors (a mask over pks): the family
        name must agree, and the initial too when both the name asked for and the stored one have one."""
        entries = np.zeros(len(self.author_family), dtype=bool)
        for key in {key for key in map(author_key, names) if key is not None}:
            match = self.author_family == key.family_hash
            if key.initial:
                match &= (self.author_initial == ord(key.initial)) | (self.author_initial == 0)
            entries |= match
        papers = np.zeros(len(self.pks), dtype=bool)
        papers[np.searchsorted(self.author_offsets, np.flatnonzero(entries), side="right") - 1] = True
        return papers

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
        # Authors: the entries spliced by slices, not masks over all of them (4-5 a paper).
        before = np.searchsorted(self.pks, fresh.pks)  # each fresh paper goes before this paper of self
        family = _splice(self.author_family, self.author_offsets, drop, before, fresh.author_family, fresh.author_offsets)
        initial = _splice(self.author_initial, self.author_offsets, drop, before, fresh.author_initial, fresh.author_offsets)
        counts = np.insert(np.delete(np.diff(self.author_offsets), drop), at, np.diff(fresh.author_offsets))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return FilterColumns(np.insert(pks, at, fresh.pks), np.insert(dates, at, fresh.dates),
                             np.insert(popularity, at, fresh.popularity), categories, offsets, family, initial)


def _splice(values: np.ndarray, offsets: np.ndarray, drop: np.ndarray, before: np.ndarray, fresh_values: np.ndarray,
            fresh_offsets: np.ndarray) -> np.ndarray:
    """Per-paper runs of ``values`` (paper i's: offsets[i]:offsets[i + 1]) without the runs of the
    papers at positions ``drop``, with fresh paper j's run put before paper ``before[j]``'s."""
    # (where, 0: insert fresh paper j / 1: skip to end); at one place an insert comes first
    events = sorted([(int(offsets[i]), 0, j) for j, i in enumerate(before)] +
                    [(int(offsets[i]), 1, int(offsets[i + 1])) for i in drop])
    pieces, cursor = [], 0
    for where, skip, arg in events:
        pieces.append(values[cursor:where])
        if skip:
            cursor = arg
        else:
            pieces.append(fresh_values[fresh_offsets[arg]:fresh_offsets[arg + 1]])
            cursor = where
    pieces.append(values[cursor:])
    return np.concatenate(pieces).astype(values.dtype, copy=False)


def _positions(sorted_values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where the values of ``wanted`` sit in ``sorted_values`` (those present only)."""
    if not len(sorted_values) or not len(wanted):
        return np.zeros(0, dtype=np.int64)
    at = np.minimum(np.searchsorted(sorted_values, wanted), len(sorted_values) - 1)
    return at[sorted_values[at] == wanted]
