"""The papers table and its lookups: by id, by pk, by text, and the columns filters run on."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import orjson

from ..filters import FilterColumns
from ..names import AUTHOR_DTYPE, author_entries
from ..papers import PAPERLENS, LookupKey, Paper, external_id_keys, title_key
from .db import Database, now

# (pk, title, abstract, date, categories, popularity): a paper as keyword.py indexes it.
KeywordRow = tuple[int, str, str, str | None, list[str], float, bytes]
_KEYWORD_COLUMNS = "pk, title, abstract, date, categories, popularity, author_keys"


def _keyword_row(row: tuple) -> KeywordRow:
    return row[0], row[1], row[2], row[3], _loads(row[4]), row[5], row[6] or b""

_PAPER_COLUMNS = "pk, id, title, abstract, authors, date, categories, popularity, url, source, extra"


@dataclass
class StoredPaper:
    pk: int
    paper: Paper


@dataclass
class UpsertOutcome:
    pk: int
    id: str
    status: str  # "added", "updated" (text changed: re-encode), "refreshed" (metadata only), "unchanged"


def _loads(text: str):
    """A JSON column, read by orjson: the stdlib's decodes were half of a search's paper reads. The
    stdlib wrote them, and reads back what orjson refuses (NaN in an ``extra``)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _row_to_paper(row: sqlite3.Row) -> StoredPaper:
    return StoredPaper(
        pk=row["pk"],
        paper=Paper(
            id=row["id"],
            title=row["title"],
            abstract=row["abstract"],
            authors=_loads(row["authors"]),
            date=row["date"],
            categories=_loads(row["categories"]),
            popularity=row["popularity"],
            url=row["url"],
            source=row["source"],
            extra=_loads(row["extra"]),
        ),
    )


class PaperTable(Database):
    """Papers and their categories. FAISS ids are the ``pk`` column (AUTOINCREMENT, so a deleted
    paper's number is never reused and a stale FAISS file can never point at the wrong paper)."""

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM papers").fetchone()[0]

    def upsert_papers(self, papers: Iterable[Paper], text_hashes: Iterable[str]) -> list[UpsertOutcome]:
        """Insert or update by id, in the caller's transaction. Re-ingesting unchanged papers is a no-op."""
        outcomes = []
        stamp = now()
        for paper, text_hash in zip(papers, text_hashes):
            values = (
                paper.title, paper.abstract, json.dumps(paper.authors), paper.date, json.dumps(paper.categories),
                float(paper.popularity), paper.url, paper.source, json.dumps(paper.extra, sort_keys=True),
            )
            row = self.conn.execute(
                "SELECT pk, title, abstract, authors, date, categories, popularity, url, source, extra, text_hash "
                "FROM papers WHERE id = ?",
                (paper.id,),
            ).fetchone()
            if row is None:
                pk = self.conn.execute(
                    "INSERT INTO papers (id, title, abstract, authors, date, categories, popularity, url, source, "
                    "extra, text_hash, title_key, author_keys, added_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (paper.id, *values, text_hash, title_key(paper.title), author_entries(paper.authors), stamp, stamp),
                ).lastrowid
                status = "added"
            else:
                pk = row["pk"]
                if tuple(row)[1:10] == values and row["text_hash"] == text_hash:
                    outcomes.append(UpsertOutcome(pk, paper.id, "unchanged"))
                    continue
                self.conn.execute(
                    "UPDATE papers SET title=?, abstract=?, authors=?, date=?, categories=?, popularity=?, url=?, "
                    "source=?, extra=?, text_hash=?, title_key=?, author_keys=?, updated_at=? WHERE pk=?",
                    (*values, text_hash, title_key(paper.title), author_entries(paper.authors), stamp, pk),
                )
                self.conn.execute("DELETE FROM paper_categories WHERE pk = ?", (pk,))
                status = "updated" if row["text_hash"] != text_hash else "refreshed"
            self.conn.executemany(
                "INSERT OR IGNORE INTO paper_categories(category, pk) VALUES (?, ?)",
                [(category, pk) for category in paper.categories],
            )
            self._put_external_ids(pk, paper, row["extra"] if row is not None else None)
            outcomes.append(UpsertOutcome(pk, paper.id, status))
        return outcomes

    def delete(self, ids: Iterable[str]) -> list[int]:
        """Delete papers (their vectors and categories cascade), in the caller's transaction."""
        pks = list(self.pks_for_ids(ids).values())
        self.conn.executemany("DELETE FROM papers WHERE pk = ?", [(pk,) for pk in pks])
        return pks

    def _put_external_ids(self, pk: int, paper: Paper, old_extra: str | None = None) -> None:
        """The paper's external ids, replacing those of its stored version (``old_extra``). An entry
        that records were merged into keeps theirs (add_external_ids, absorb): only the ids its own
        earlier version carried and this one does not are dropped."""
        keys = external_id_keys(paper)
        if old_extra is None or not self.has_merged([pk]):
            self.conn.execute("DELETE FROM paper_external_ids WHERE pk = ?", (pk,))
        else:
            old = external_id_keys(Paper(id=paper.id, title="", abstract="", extra=json.loads(old_extra)))
            self.conn.executemany("DELETE FROM paper_external_ids WHERE scheme = ? AND value = ? AND pk = ?",
                                  [(*key, pk) for key in set(old) - set(keys)])
        self.conn.executemany("INSERT OR IGNORE INTO paper_external_ids(scheme, value, pk) VALUES (?, ?, ?)",
                              [(*key, pk) for key in keys])

    def add_external_ids(self, pairs: Iterable[tuple[int, Paper]]) -> None:
        """The external ids (papers.external_id_keys) of records merged into the entries ``pk``, as
        well as the entries' own, in the caller's transaction: the entry takes a record's DOI, arXiv id, ..."""
        self.conn.executemany("INSERT OR IGNORE INTO paper_external_ids(scheme, value, pk) VALUES (?, ?, ?)",
                              [(*key, pk) for pk, paper in pairs for key in external_id_keys(paper)])

    def get(self, paper_id: str) -> StoredPaper | None:
        row = self.conn.execute(f"SELECT {_PAPER_COLUMNS} FROM papers WHERE id = ?", (paper_id,)).fetchone()
        return _row_to_paper(row) if row else None

    def get_many(self, pks: Iterable[int]) -> dict[int, StoredPaper]:
        rows = self.select_in(f"SELECT {_PAPER_COLUMNS} FROM papers WHERE pk IN ({{marks}})", (int(pk) for pk in pks))
        return {row["pk"]: _row_to_paper(row) for row in rows}

    def pks_for_ids(self, ids: Iterable[str]) -> dict[str, int]:
        return {row[0]: row[1] for row in self.select_in("SELECT id, pk FROM papers WHERE id IN ({marks})", ids)}

    def same_titles(self, keys: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
        """(pk, text_hash) of the stored papers with each normalised title (papers.title_key); an
        empty title matches nothing."""
        found: dict[str, list[tuple[int, str]]] = {}
        for row in self.select_in("SELECT title_key, pk, text_hash FROM papers WHERE title_key IN ({marks}) ORDER BY pk",
                                  {key for key in keys if key}):
            found.setdefault(row[0], []).append((row[1], row[2]))
        return found

    def identities(self, pks: Iterable[int]) -> dict[int, tuple[str, str]]:
        """(title_key, text_hash) by pk: what tells two records of one paper apart from two papers."""
        return {row[0]: (row[1], row[2]) for row in
                self.select_in("SELECT pk, title_key, text_hash FROM papers WHERE pk IN ({marks})", {int(pk) for pk in pks})}

    def copy_candidates(self, pks: Iterable[int]) -> list[tuple[int, int, bool]]:
        """(pk, other pk, same text) for every other record with the same text or the same non-empty
        normalised title as one of ``pks``; two indexed joins."""
        pks = {int(pk) for pk in pks}
        same_text = {(row[0], row[1]) for row in self.select_in(
            "SELECT a.pk, b.pk FROM papers a JOIN papers b ON b.text_hash = a.text_hash AND b.pk != a.pk "
            "WHERE a.pk IN ({marks})", pks)}
        same_title = {(row[0], row[1]) for row in self.select_in(
            "SELECT a.pk, b.pk FROM papers a JOIN papers b ON b.title_key = a.title_key AND b.pk != a.pk "
            "WHERE a.title_key != '' AND a.pk IN ({marks})", pks)}
        return [(a, b, (a, b) in same_text) for a, b in sorted(same_text | same_title)]

    def duplicate_candidates(self) -> list[list[int]]:
        """Groups of pks that share a non-empty normalised title or a text, ascending: the papers that
        may be records of one paper (duplicates.duplicate_groups decides which are)."""
        groups = [[int(pk) for pk in row[0].split(",")] for row in self.conn.execute(
            "SELECT group_concat(pk) FROM papers WHERE title_key != '' GROUP BY title_key HAVING COUNT(*) > 1")]
        groups += [[int(pk) for pk in row[0].split(",")] for row in self.conn.execute(
            "SELECT group_concat(pk) FROM papers GROUP BY text_hash HAVING COUNT(*) > 1")]
        return [sorted(group) for group in groups]

    def absorb(self, kept: int, others: dict[int, str]) -> None:
        """Make ``others`` (pk: id) names of ``kept``: their ids and aliases point at it, as do their
        external ids (DOI, arXiv, CorpusId, ...); their rows go (vectors and categories cascade), in
        the caller's transaction."""
        marks = ",".join("?" * len(others))
        self.conn.execute(f"UPDATE paper_aliases SET pk = ? WHERE pk IN ({marks})", (kept, *others))
        # An id the kept entry carries already stays once; the others' copies go with their rows.
        self.conn.execute(f"UPDATE OR IGNORE paper_external_ids SET pk = ? WHERE pk IN ({marks})", (kept, *others))
        self.conn.executemany("INSERT OR REPLACE INTO paper_aliases(alias, pk) VALUES (?, ?)",
                              [(paper_id, kept) for paper_id in others.values()])
        self.conn.executemany("DELETE FROM papers WHERE pk = ?", [(pk,) for pk in others])

    def names(self, paper_id: str) -> list[str]:
        """A stored paper's id and the old ids of records merged into it (paper_aliases)."""
        rows = self.conn.execute("SELECT a.alias FROM paper_aliases a JOIN papers p ON p.pk = a.pk WHERE p.id = ? "
                                 "ORDER BY a.alias", (paper_id,)).fetchall()
        return [paper_id, *(row[0] for row in rows)]

    def has_merged(self, pks: Iterable[int]) -> set[int]:
        """The pks that records of other ids were merged into (they have an alias)."""
        return {row[0] for row in self.select_in(
            "SELECT DISTINCT pk FROM paper_aliases WHERE pk IN ({marks})", {int(pk) for pk in pks})}

    def resolve(self, keys: Iterable[LookupKey]) -> dict[LookupKey, str]:
        """Stored ids by lookup key (papers.lookup_keys): a paperlens id is a paper's own id or the old
        id of a paper merged into it (paper_aliases); another service's id is looked up in
        paper_external_ids, the oldest paper winning when several carry it. One indexed query a kind."""
        by_scheme: dict[str, list[str]] = {}
        for scheme, value in dict.fromkeys(keys):
            by_scheme.setdefault(scheme, []).append(value)
        ids = by_scheme.pop(PAPERLENS, [])
        found = {(PAPERLENS, row[0]): row[0] for row in self.select_in("SELECT id FROM papers WHERE id IN ({marks})", ids)}
        found.update({(PAPERLENS, row[0]): row[1] for row in self.select_in(
            "SELECT a.alias, p.id FROM paper_aliases a JOIN papers p ON p.pk = a.pk WHERE a.alias IN ({marks})",
            [i for i in ids if (PAPERLENS, i) not in found])})
        for scheme, values in by_scheme.items():
            found.update({(scheme, row[0]): row[1] for row in self.select_in(
                "SELECT e.value, p.id FROM papers p JOIN (SELECT value, MIN(pk) AS pk FROM paper_external_ids "
                "WHERE scheme = ? AND value IN ({marks}) GROUP BY value) e ON p.pk = e.pk", values, (scheme,))})
        return found

    def add_aliases(self, pairs: Iterable[tuple[str, int]]) -> None:
        """Old paperlens ids of papers merged into others (alias, kept pk), in the caller's transaction;
        an alias already taken keeps its paper."""
        self.conn.executemany("INSERT OR IGNORE INTO paper_aliases(alias, pk) VALUES (?, ?)", list(pairs))

    def text_hashes(self, ids: Iterable[str]) -> dict[str, str]:
        return {row[0]: row[1] for row in self.select_in("SELECT id, text_hash FROM papers WHERE id IN ({marks})", ids)}

    def max_pk(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(pk), 0) FROM papers").fetchone()[0]

    def filter_columns(self, pks: Iterable[int] | None = None) -> FilterColumns:
        """The filterable fields of every paper (``pks`` None) or of those papers."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        if pks is None:
            rows = cursor.execute("SELECT pk, date, popularity, author_keys FROM papers ORDER BY pk").fetchall()
            pairs = cursor.execute("SELECT category, pk FROM paper_categories ORDER BY category, pk").fetchall()
        else:
            wanted = sorted({int(pk) for pk in pks})
            rows, pairs = [], []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows += cursor.execute(f"SELECT pk, date, popularity, author_keys FROM papers WHERE pk IN ({marks}) ORDER BY pk",
                                       chunk).fetchall()
                pairs += cursor.execute(f"SELECT category, pk FROM paper_categories WHERE pk IN ({marks})", chunk).fetchall()
            pairs.sort()
        # pairs come sorted by (category, pk): each category is one run of them
        members = np.fromiter((pk for _, pk in pairs), dtype=np.int64, count=len(pairs))
        starts = [i for i in range(len(pairs)) if i == 0 or pairs[i][0] != pairs[i - 1][0]]
        categories = {pairs[start][0]: members[start:end] for start, end in zip(starts, [*starts[1:], len(pairs)])}
        blobs = [r[3] for r in rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)) // AUTHOR_DTYPE.itemsize, out=offsets[1:])
        authors = np.frombuffer(b"".join(blobs), dtype=AUTHOR_DTYPE)
        return FilterColumns(
            pks=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            dates=np.array([r[1] or "" for r in rows], dtype="S10"),
            popularity=np.array([r[2] for r in rows], dtype=np.float64),  # None becomes NaN
            categories=categories,
            author_offsets=offsets,
            author_family=np.ascontiguousarray(authors["family"]),
            author_initial=np.ascontiguousarray(authors["initial"]),
        )

    def iter_keyword_rows(self, batch: int = 5000) -> Iterator[KeywordRow]:
        """Every paper as the keyword index holds it, in pk order: what keywords/ is rebuilt from."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        last = 0
        while rows := cursor.execute(f"SELECT {_KEYWORD_COLUMNS} FROM papers WHERE pk > ? ORDER BY pk LIMIT ?", (last, batch)).fetchall():
            yield from map(_keyword_row, rows)
            last = rows[-1][0]

    def keyword_rows(self, pks: Iterable[int]) -> list[KeywordRow]:
        """The given papers that exist as the keyword index holds them, in pk order."""
        rows = self.select_in(f"SELECT {_KEYWORD_COLUMNS} FROM papers WHERE pk IN ({{marks}})", {int(pk) for pk in pks})
        return sorted(map(_keyword_row, (tuple(row) for row in rows)))

    def texts(self, pks: Iterable[int]) -> list[tuple[int, str, str]]:
        """(pk, title, abstract) of the given papers that exist, in pk order."""
        rows = self.select_in("SELECT pk, title, abstract FROM papers WHERE pk IN ({marks})", {int(pk) for pk in pks})
        return sorted((row[0], row[1], row[2]) for row in rows)

    def iter_papers(self, batch: int = 1000) -> Iterator[StoredPaper]:
        last = 0
        while True:
            rows = self.conn.execute(f"SELECT {_PAPER_COLUMNS} FROM papers WHERE pk > ? ORDER BY pk LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield _row_to_paper(row)
            last = rows[-1]["pk"]

    def stored_after(self, pk: int) -> list[tuple[int, str, str | None]]:
        """(pk, id, date) of the papers stored after the one with this pk (AUTOINCREMENT: pks only grow)."""
        return [(row[0], row[1], row[2]) for row in self.conn.execute("SELECT pk, id, date FROM papers WHERE pk > ? ORDER BY pk", (pk,))]

    def papers_without_vectors(self) -> list[StoredPaper]:
        """Papers that search cannot find; an ingest writes both in one transaction, so normally none."""
        rows = self.conn.execute(f"SELECT {_PAPER_COLUMNS} FROM papers WHERE pk NOT IN (SELECT pk FROM vectors) ORDER BY pk")
        return [_row_to_paper(row) for row in rows]
