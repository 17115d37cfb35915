"""SQLite: the source of truth for papers and their vectors. The only SQL in the code.

FAISS ids are the ``pk`` column (AUTOINCREMENT, so a deleted paper's number is never reused and a
stale FAISS file can never point at the wrong paper). Vectors are kept here too, so the FAISS
file is a cache that can always be rebuilt without re-encoding.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import ConcurrentChange
from .papers import Paper

MIGRATIONS: list[str] = [
    # 1: papers, their categories (for filters) and vectors
    """
    CREATE TABLE papers (
        pk INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        abstract TEXT NOT NULL,
        authors TEXT NOT NULL DEFAULT '[]',
        date TEXT,
        categories TEXT NOT NULL DEFAULT '[]',
        popularity REAL NOT NULL DEFAULT 0,
        url TEXT,
        source TEXT,
        extra TEXT NOT NULL DEFAULT '{}',
        text_hash TEXT NOT NULL,
        added_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX papers_date ON papers(date);
    CREATE INDEX papers_popularity ON papers(popularity);
    CREATE INDEX papers_text_hash ON papers(text_hash);
    CREATE TABLE paper_categories (
        category TEXT NOT NULL,
        pk INTEGER NOT NULL REFERENCES papers(pk) ON DELETE CASCADE,
        PRIMARY KEY (category, pk)
    ) WITHOUT ROWID;
    CREATE INDEX paper_categories_pk ON paper_categories(pk);
    CREATE TABLE vectors (
        pk INTEGER PRIMARY KEY REFERENCES papers(pk) ON DELETE CASCADE,
        vector BLOB NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: the keyword side of hybrid search (see keyword.py). An external-content FTS5 table over
    # title and abstract, kept in step by triggers, so every insert, update and delete of a paper
    # updates it in the same transaction. Porter stemming: measured on scifact-subset, FTS5 +
    # porter scored nDCG@10 0.797 against 0.789 for bm25s + Snowball.
    """
    CREATE VIRTUAL TABLE papers_fts USING fts5(
        title, abstract, content='papers', content_rowid='pk', tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER papers_fts_insert AFTER INSERT ON papers BEGIN
        INSERT INTO papers_fts(rowid, title, abstract) VALUES (new.pk, new.title, new.abstract);
    END;
    CREATE TRIGGER papers_fts_delete AFTER DELETE ON papers BEGIN
        INSERT INTO papers_fts(papers_fts, rowid, title, abstract) VALUES ('delete', old.pk, old.title, old.abstract);
    END;
    CREATE TRIGGER papers_fts_update AFTER UPDATE OF title, abstract ON papers BEGIN
        INSERT INTO papers_fts(papers_fts, rowid, title, abstract) VALUES ('delete', old.pk, old.title, old.abstract);
        INSERT INTO papers_fts(rowid, title, abstract) VALUES (new.pk, new.title, new.abstract);
    END;
    INSERT INTO papers_fts(papers_fts) VALUES ('rebuild');
    """,
    # 3: users (the personal-feeds tables build on this one)
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
    # 4: a user's access token, as a SHA-256 hex digest (the token itself is never stored)
    """
    ALTER TABLE users ADD COLUMN token_hash TEXT;
    """,
    # 5: what users did with papers, their free-text interests and their collections. Interactions
    # keep the paper's id (not its pk) so a re-ingested paper keeps its history.
    """
    CREATE TABLE interactions (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        paper_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, paper_id, kind)
    ) WITHOUT ROWID;
    CREATE TABLE interests (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (user_id, position)
    ) WITHOUT ROWID;
    CREATE TABLE collections (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, name)
    ) WITHOUT ROWID;
    CREATE TABLE collection_papers (
        user_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        paper_id TEXT NOT NULL,
        added_at TEXT NOT NULL,
        PRIMARY KEY (user_id, name, paper_id),
        FOREIGN KEY (user_id, name) REFERENCES collections(user_id, name) ON DELETE CASCADE
    ) WITHOUT ROWID;
    """,
    # 6: the keyword side moved to a tantivy index beside the FAISS file (keyword.py): FTS5
    # scored every matching paper, too slow past ~100k papers.
    """
    DROP TRIGGER IF EXISTS papers_fts_insert;
    DROP TRIGGER IF EXISTS papers_fts_delete;
    DROP TRIGGER IF EXISTS papers_fts_update;
    DROP TABLE IF EXISTS papers_fts;
    """,
    # 7: the papers each write changed, so that a FAISS file saved some writes ago is brought up
    # to date by replaying them (library.py), instead of being saved whole after every write.
    # meta 'changes_from': the log holds every write after that generation.
    """
    CREATE TABLE vector_changes (
        generation INTEGER NOT NULL,
        pk INTEGER NOT NULL,
        PRIMARY KEY (generation, pk)
    ) WITHOUT ROWID;
    INSERT OR REPLACE INTO meta(key, value)
        SELECT 'changes_from', COALESCE((SELECT value FROM meta WHERE key = 'generation'), '0');
    """,
]

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


@dataclass
class Filters:
    """Filters on every query; None means no filter on that field."""

    since: str | None = None
    until: str | None = None
    categories: tuple[str, ...] = ()
    min_popularity: float | None = None

    def active(self) -> bool:
        return bool(self.since or self.until or self.categories or self.min_popularity is not None)


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements; a trigger body's inner ';' does not end its statement."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _row_to_paper(row: sqlite3.Row) -> StoredPaper:
    return StoredPaper(
        pk=row["pk"],
        paper=Paper(
            id=row["id"],
            title=row["title"],
            abstract=row["abstract"],
            authors=json.loads(row["authors"]),
            date=row["date"],
            categories=json.loads(row["categories"]),
            popularity=row["popularity"],
            url=row["url"],
            source=row["source"],
            extra=json.loads(row["extra"]),
        ),
    )


@dataclass(frozen=True)
class FilterColumns:
    """Every paper's filterable fields as arrays: a filter over 1M papers costs a few ms this way,
    against 0.4-1 s for SQL that returns ~200k pks (measured with benchmarks/scale.py's store).
    A paper without a date fails any date filter; a category 'cs' matches 'cs' itself and,
    case-insensitively, 'cs.*' (tests/test_filters.py checks this against the SQL it replaced)."""

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
                if any(name == c or name.lower().startswith(c.lower() + ".") for c in filters.categories):
                    in_category[np.searchsorted(self.pks, members)] = True  # members are a subset of pks
            keep &= in_category
        return self.pks[keep]

    def patched(self, fresh: FilterColumns, removed: Iterable[int] = ()) -> FilterColumns:
        """These columns with ``fresh``'s papers replaced or added and ``removed`` dropped (a copy).

        Positions come from binary searches in the sorted arrays, so a one-paper write costs a few
        memcpy of the columns (~10 ms at 1M papers), not a re-sort."""
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


class Store:
    """SQLite with one connection per thread: in WAL mode a reader sees the last committed state and
    never waits for the writer, and a writer's open transaction is invisible to other threads.
    Writers are serialised by the caller (library.Library's lock) and, across processes, by SQLite."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._migrate()

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed write survives a killed process; only power loss can
        # drop the last transactions, at a fraction of FULL's fsync cost.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for statement in _statements(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={number}")

    def close(self) -> None:
        """Close every thread's connection (at shutdown, when no request is running)."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def bump_generation(self, pks: Iterable[int] | None = None) -> int:
        """Count one more write that changed the vectors of ``pks``; call inside the write's transaction.

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
        """The pks whose vectors changed (added, replaced or deleted) after ``generation``; None when
        the log does not reach back that far."""
        if generation < int(self.get_meta("changes_from") or 0):
            return None
        rows = self.conn.execute("SELECT DISTINCT pk FROM vector_changes WHERE generation > ?", (generation,)).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def forget_changes(self, upto: int) -> None:
        """Drop the log of writes up to ``upto``: a FAISS file that reflects them has been saved."""
        with self.transaction():
            self.conn.execute("DELETE FROM vector_changes WHERE generation <= ?", (upto,))
            if upto > int(self.get_meta("changes_from") or 0):
                self.set_meta("changes_from", str(upto))

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def integrity_check(self, quick: bool = False) -> list[str]:
        """SQLite's own check: ['ok'] when the file is sound. quick_check skips index contents (fast at start-up)."""
        pragma = "quick_check" if quick else "integrity_check"
        return [row[0] for row in self.conn.execute(f"PRAGMA {pragma}")]

    # --- papers ----------------------------------------------------------------------------

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM papers").fetchone()[0]

    def upsert_papers(self, papers: Iterable[Paper], text_hashes: Iterable[str]) -> list[UpsertOutcome]:
        """Insert or update by id; call inside a transaction. Re-ingesting unchanged papers is a no-op."""
        outcomes = []
        now = _now()
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
                    "extra, text_hash, added_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (paper.id, *values, text_hash, now, now),
                ).lastrowid
                status = "added"
            else:
                pk = row["pk"]
                if tuple(row)[1:10] == values and row["text_hash"] == text_hash:
                    outcomes.append(UpsertOutcome(pk, paper.id, "unchanged"))
                    continue
                self.conn.execute(
                    "UPDATE papers SET title=?, abstract=?, authors=?, date=?, categories=?, popularity=?, url=?, "
                    "source=?, extra=?, text_hash=?, updated_at=? WHERE pk=?",
                    (*values, text_hash, now, pk),
                )
                self.conn.execute("DELETE FROM paper_categories WHERE pk = ?", (pk,))
                status = "updated" if row["text_hash"] != text_hash else "refreshed"
            self.conn.executemany(
                "INSERT OR IGNORE INTO paper_categories(category, pk) VALUES (?, ?)",
                [(category, pk) for category in paper.categories],
            )
            outcomes.append(UpsertOutcome(pk, paper.id, status))
        return outcomes

    def get(self, paper_id: str) -> StoredPaper | None:
        row = self.conn.execute(f"SELECT {_PAPER_COLUMNS} FROM papers WHERE id = ?", (paper_id,)).fetchone()
        return _row_to_paper(row) if row else None

    def _select_in(self, sql: str, values: Iterable, params: tuple = ()) -> Iterator[sqlite3.Row]:
        """Run ``sql`` (with ``{marks}`` for the IN list, after ``params``) in chunks under SQLite's bound-parameter limit."""
        values = list(values)
        for start in range(0, len(values), 900):
            chunk = values[start:start + 900]
            yield from self.conn.execute(sql.format(marks=",".join("?" * len(chunk))), [*params, *chunk])

    def get_many(self, pks: Iterable[int]) -> dict[int, StoredPaper]:
        rows = self._select_in(f"SELECT {_PAPER_COLUMNS} FROM papers WHERE pk IN ({{marks}})", (int(pk) for pk in pks))
        return {row["pk"]: _row_to_paper(row) for row in rows}

    def pks_for_ids(self, ids: Iterable[str]) -> dict[str, int]:
        return {row[0]: row[1] for row in self._select_in("SELECT id, pk FROM papers WHERE id IN ({marks})", ids)}

    def paper_and_copies(self, paper_id: str) -> tuple[int, list[int]] | None:
        """The paper's pk and the pks of other records of the same text (a paper ingested under two
        ids), which by-id similar leaves out; one indexed query, None for an unknown id."""
        rows = self.conn.execute(
            "SELECT a.pk, b.pk FROM papers a JOIN papers b ON a.text_hash = b.text_hash WHERE a.id = ?", (paper_id,)
        ).fetchall()
        if not rows:
            return None
        return rows[0][0], [row[1] for row in rows if row[1] != rows[0][0]]

    def text_hashes(self, ids: Iterable[str]) -> dict[str, str]:
        return {row[0]: row[1] for row in self._select_in("SELECT id, text_hash FROM papers WHERE id IN ({marks})", ids)}

    def delete(self, ids: Iterable[str]) -> list[int]:
        """Delete papers (their vectors and categories cascade); call inside a transaction."""
        pks = list(self.pks_for_ids(ids).values())
        self.conn.executemany("DELETE FROM papers WHERE pk = ?", [(pk,) for pk in pks])
        return pks

    def filter_columns(self, pks: Iterable[int] | None = None) -> FilterColumns:
        """The filterable fields of every paper (``pks`` None) or of those papers."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        if pks is None:
            rows = cursor.execute("SELECT pk, date, popularity FROM papers ORDER BY pk").fetchall()
            pairs = cursor.execute("SELECT category, pk FROM paper_categories ORDER BY category, pk").fetchall()
        else:
            wanted = sorted({int(pk) for pk in pks})
            rows, pairs = [], []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows += cursor.execute(f"SELECT pk, date, popularity FROM papers WHERE pk IN ({marks}) ORDER BY pk", chunk).fetchall()
                pairs += cursor.execute(f"SELECT category, pk FROM paper_categories WHERE pk IN ({marks})", chunk).fetchall()
            pairs.sort()
        # pairs come sorted by (category, pk): each category is one run of them
        members = np.fromiter((pk for _, pk in pairs), dtype=np.int64, count=len(pairs))
        starts = [i for i in range(len(pairs)) if i == 0 or pairs[i][0] != pairs[i - 1][0]]
        categories = {pairs[start][0]: members[start:end] for start, end in zip(starts, [*starts[1:], len(pairs)])}
        return FilterColumns(
            pks=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            dates=np.array([r[1] or "" for r in rows], dtype="S10"),
            popularity=np.array([r[2] for r in rows], dtype=np.float64),  # None becomes NaN
            categories=categories,
        )

    def iter_texts(self, batch: int = 5000) -> Iterator[tuple[int, str, str]]:
        """(pk, title, abstract) of every paper in pk order: what the keyword index is rebuilt from."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        last = 0
        while rows := cursor.execute("SELECT pk, title, abstract FROM papers WHERE pk > ? ORDER BY pk LIMIT ?", (last, batch)).fetchall():
            yield from rows
            last = rows[-1][0]

    def iter_papers(self, batch: int = 1000) -> Iterator[StoredPaper]:
        last = 0
        while True:
            rows = self.conn.execute(f"SELECT {_PAPER_COLUMNS} FROM papers WHERE pk > ? ORDER BY pk LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield _row_to_paper(row)
            last = rows[-1]["pk"]

    # --- vectors ---------------------------------------------------------------------------

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
        by_pk = dict(self._select_in("SELECT pk, vector FROM vectors WHERE pk IN ({marks})", {int(pk) for pk in pks}))
        present = [int(pk) for pk in pks if int(pk) in by_pk]
        out = np.zeros((len(present), dim), dtype=np.float32)
        for i, pk in enumerate(present):
            out[i] = np.frombuffer(by_pk[pk], dtype=np.float32)
        return present, out

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

    def max_pk(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(pk), 0) FROM papers").fetchone()[0]

    def max_vector_pk(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(pk), 0) FROM vectors").fetchone()[0]

    def vector_pks(self) -> np.ndarray:
        """Every pk with a vector, sorted: what the FAISS index must hold."""
        rows = self.conn.execute("SELECT pk FROM vectors ORDER BY pk").fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def papers_without_vectors(self) -> list[StoredPaper]:
        """Papers that search cannot find; an ingest writes both in one transaction, so normally none."""
        rows = self.conn.execute(f"SELECT {_PAPER_COLUMNS} FROM papers WHERE pk NOT IN (SELECT pk FROM vectors) ORDER BY pk")
        return [_row_to_paper(row) for row in rows]

    # --- users -----------------------------------------------------------------------------

    def add_user(self, name: str) -> int:
        """A new user's id; call inside a transaction."""
        return self.conn.execute("INSERT INTO users(name, created_at) VALUES (?, ?)", (name, _now())).lastrowid

    def set_user_token_hash(self, user_id: int, digest: str) -> bool:
        """Replace the user's token hash; call inside a transaction. False if there is no such user."""
        return self.conn.execute("UPDATE users SET token_hash = ? WHERE id = ?", (digest, user_id)).rowcount > 0

    def user_token_hash(self, user_id: int) -> str | None:
        row = self.conn.execute("SELECT token_hash FROM users WHERE id = ?", (user_id,)).fetchone()
        return row[0] if row else None


# --- users, interactions, interests, collections (personal feeds) ------------------------------


@dataclass
class UserRow:
    id: int
    name: str
    created_at: str


@dataclass
class InteractionRow:
    paper_id: str
    kind: str
    created_at: str


@dataclass
class InterestRow:
    text: str
    vector: np.ndarray


@dataclass
class CollectionRow:
    name: str
    created_at: str
    paper_ids: list[str]


class UserStore:
    """The SQL of users and their data, over the same connection as ``Store`` (same file, same lock)."""

    def __init__(self, store: Store):
        self.store = store
        self.transaction = store.transaction

    @property
    def conn(self) -> sqlite3.Connection:
        """The calling thread's connection (``Store.conn`` is per thread)."""
        return self.store.conn

    def add_user(self, name: str) -> UserRow:
        user_id = self.store.add_user(name)
        return self.get_user(user_id)

    def get_user(self, user_id: int) -> UserRow | None:
        row = self.conn.execute("SELECT id, name, created_at FROM users WHERE id = ?", (user_id,)).fetchone()
        return UserRow(*row) if row else None

    def delete_user(self, user_id: int) -> bool:
        """Interactions, interests and collections go with the user (ON DELETE CASCADE)."""
        return self.conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0

    def add_interaction(self, user_id: int, paper_id: str, kind: str, created_at: str | None = None) -> InteractionRow:
        """Re-recording the same interaction refreshes its time (a second like counts as recent).

        ``created_at`` (ISO 8601) is for imports of older histories; by default it is now."""
        now = created_at or _now()
        self.conn.execute(
            "INSERT INTO interactions(user_id, paper_id, kind, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(user_id, paper_id, kind) DO UPDATE SET created_at = excluded.created_at",
            (user_id, paper_id, kind, now),
        )
        return InteractionRow(paper_id, kind, now)

    def interactions(self, user_id: int, kinds: Iterable[str] | None = None) -> list[InteractionRow]:
        sql, params = "SELECT paper_id, kind, created_at FROM interactions WHERE user_id = ?", [user_id]
        if kinds is not None:
            kinds = list(kinds)
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            params.extend(kinds)
        rows = self.conn.execute(sql + " ORDER BY created_at DESC, paper_id", params).fetchall()
        return [InteractionRow(*row) for row in rows]

    def delete_interactions(self, user_id: int, paper_id: str, kind: str | None = None) -> int:
        if kind is None:
            return self.conn.execute("DELETE FROM interactions WHERE user_id = ? AND paper_id = ?", (user_id, paper_id)).rowcount
        return self.conn.execute(
            "DELETE FROM interactions WHERE user_id = ? AND paper_id = ? AND kind = ?", (user_id, paper_id, kind)
        ).rowcount

    def set_interests(self, user_id: int, texts: list[str], vectors: np.ndarray) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM interests WHERE user_id = ?", (user_id,))
            self.conn.executemany(
                "INSERT INTO interests(user_id, position, text, vector) VALUES (?, ?, ?, ?)",
                [(user_id, i, text, np.asarray(v, dtype=np.float32).tobytes()) for i, (text, v) in enumerate(zip(texts, vectors))],
            )

    def interests(self, user_id: int) -> list[InterestRow]:
        rows = self.conn.execute("SELECT text, vector FROM interests WHERE user_id = ? ORDER BY position", (user_id,))
        return [InterestRow(text, np.frombuffer(blob, dtype=np.float32)) for text, blob in rows]

    def put_collection(self, user_id: int, name: str) -> tuple[CollectionRow, bool]:
        """Create if missing; returns the collection and whether it was created."""
        created = self.conn.execute(
            "INSERT OR IGNORE INTO collections(user_id, name, created_at) VALUES (?, ?, ?)", (user_id, name, _now())
        ).rowcount > 0
        return self.get_collection(user_id, name), created

    def get_collection(self, user_id: int, name: str) -> CollectionRow | None:
        row = self.conn.execute("SELECT name, created_at FROM collections WHERE user_id = ? AND name = ?", (user_id, name)).fetchone()
        if row is None:
            return None
        papers = self.conn.execute(
            "SELECT paper_id FROM collection_papers WHERE user_id = ? AND name = ? ORDER BY added_at, paper_id", (user_id, name)
        )
        return CollectionRow(row[0], row[1], [r[0] for r in papers])

    def collections(self, user_id: int) -> list[CollectionRow]:
        names = [r[0] for r in self.conn.execute("SELECT name FROM collections WHERE user_id = ? ORDER BY name", (user_id,))]
        return [self.get_collection(user_id, name) for name in names]

    def delete_collection(self, user_id: int, name: str) -> bool:
        return self.conn.execute("DELETE FROM collections WHERE user_id = ? AND name = ?", (user_id, name)).rowcount > 0

    def add_to_collection(self, user_id: int, name: str, paper_id: str) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO collection_papers(user_id, name, paper_id, added_at) VALUES (?, ?, ?, ?)",
            (user_id, name, paper_id, _now()),
        )

    def remove_from_collection(self, user_id: int, name: str, paper_id: str) -> bool:
        return self.conn.execute(
            "DELETE FROM collection_papers WHERE user_id = ? AND name = ? AND paper_id = ?", (user_id, name, paper_id)
        ).rowcount > 0

    def popular_pks(self, allowed: np.ndarray | None, exclude: set[int], k: int) -> list[tuple[int, float]]:
        """Most popular, then newest papers: what a user with no history is shown first."""
        sql = "SELECT pk, popularity FROM papers ORDER BY popularity DESC, date DESC, pk DESC"
        if allowed is None:  # without filters, k plus the excluded papers are always enough
            sql += f" LIMIT {int(k) + len(exclude)}"
        rows = self.conn.execute(sql).fetchall()
        allowed_set = set(allowed.tolist()) if allowed is not None else None
        out = []
        for pk, popularity in rows:
            if pk in exclude or (allowed_set is not None and pk not in allowed_set):
                continue
            out.append((pk, float(popularity)))
            if len(out) == k:
                break
        return out
