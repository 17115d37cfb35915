"""SQLite underneath the store: one connection per thread, transactions, migrations, meta.

Every write method of the store runs inside the caller's ``transaction()``; none opens its own, so
several writes (a user and their token, papers and their vectors) commit together or not at all.
A ``transaction()`` inside another is a SAVEPOINT: it rolls back alone and commits with the outer one.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..names import author_entries
from ..papers import Paper, clean_text, clean_value, external_id_keys, title_key

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
    # 2: the keyword side of hybrid search: an external-content FTS5 table over title and abstract,
    # kept in step by triggers. Dropped by migration 6 (keyword.py says why); kept, as every
    # migration is, so that any older file reaches the current version by the same steps.
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
    # scored every matching paper, too slow for large collections (README, Performance).
    """
    DROP TRIGGER IF EXISTS papers_fts_insert;
    DROP TRIGGER IF EXISTS papers_fts_delete;
    DROP TRIGGER IF EXISTS papers_fts_update;
    DROP TABLE IF EXISTS papers_fts;
    """,
    # 7: the papers each write changed, so that a FAISS file saved some writes ago is brought up
    # to date by replaying them (caches.py), instead of being saved whole after every write.
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
    # 8: the ids other services know a paper by (DOI, arXiv, S2 CorpusId and sha, from the record's
    # extra: papers.external_ids), so Semantic Scholar's id forms resolve with one indexed lookup.
    """
    CREATE TABLE paper_external_ids (
        scheme TEXT NOT NULL,
        value TEXT NOT NULL,
        pk INTEGER NOT NULL REFERENCES papers(pk) ON DELETE CASCADE,
        PRIMARY KEY (scheme, value, pk)
    ) WITHOUT ROWID;
    CREATE INDEX paper_external_ids_pk ON paper_external_ids(pk);
    INSERT OR IGNORE INTO paper_external_ids(scheme, value, pk)
        SELECT json_extract(key.value, '$[0]'), json_extract(key.value, '$[1]'), papers.pk
        FROM papers, json_each(paperlens_external_ids(papers.id, papers.extra)) AS key;
    """,
    # 9: papers stored before ingest dropped the characters XML 1.0 forbids (papers.clean_text)
    # lose them too, so no export meets them. text_hash stays: the vectors and the keyword index
    # were made from text whose tokenizers skip those characters; a re-ingest re-encodes.
    """
    UPDATE papers SET
        title = paperlens_clean_text(title), abstract = paperlens_clean_text(abstract),
        authors = paperlens_clean_json(authors, 0), categories = paperlens_clean_json(categories, 0),
        extra = paperlens_clean_json(extra, 1), url = paperlens_clean_text(url), source = paperlens_clean_text(source)
    WHERE title IS NOT paperlens_clean_text(title) OR abstract IS NOT paperlens_clean_text(abstract)
        OR authors IS NOT paperlens_clean_json(authors, 0) OR categories IS NOT paperlens_clean_json(categories, 0)
        OR extra IS NOT paperlens_clean_json(extra, 1) OR url IS NOT paperlens_clean_text(url)
        OR source IS NOT paperlens_clean_text(source);
    DELETE FROM paper_categories WHERE category IS NOT paperlens_clean_text(category)
        AND EXISTS (SELECT 1 FROM paper_categories AS clean
                    WHERE clean.pk = paper_categories.pk AND clean.category = paperlens_clean_text(paper_categories.category));
    UPDATE paper_categories SET category = paperlens_clean_text(category) WHERE category IS NOT paperlens_clean_text(category);
    """,
    # 10: secret feed URLs (/feeds/{secret}.atom) for feed readers, which cannot send a token:
    # one per user feed (collection '') and per collection, kept as a SHA-256 of the secret.
    """
    CREATE TABLE feed_secrets (
        secret_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        collection TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        UNIQUE (user_id, collection)
    );
    """,
    # 11: old paperlens ids of papers merged into another entry (duplicates), each resolving to the
    # entry kept (library.resolve_ids). Ids from other services (DOIs, ...) are in paper_external_ids.
    """
    CREATE TABLE paper_aliases (
        alias TEXT PRIMARY KEY,
        pk INTEGER NOT NULL REFERENCES papers(pk) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX paper_aliases_pk ON paper_aliases(pk);
    """,
    # 12: each paper's normalised title (papers.title_key), indexed: records of one paper from two
    # sources (a listing's hash id, an arXiv id) are found by it, at ingest and by 'paperlens dedup'.
    """
    ALTER TABLE papers ADD COLUMN title_key TEXT NOT NULL DEFAULT '';
    UPDATE papers SET title_key = paperlens_title_key(title);
    CREATE INDEX papers_title_key ON papers(title_key);
    """,
    # 13: where a user's digest e-mail goes, when the last one went, and the last paper stored
    # before it (papers.pk only grows): the next digest's new papers are those after it ('paperlens digest --all').
    """
    ALTER TABLE users ADD COLUMN email TEXT;
    ALTER TABLE users ADD COLUMN last_digest_at TEXT;
    ALTER TABLE users ADD COLUMN last_digest_pk INTEGER;
    """,
    # 14: OAI-PMH harvests (harvest.py): per source, set and metadata format, the day the next run
    # asks from and the progress of a run under way (its last committed page's resumption token);
    # and one row per run, which /metrics reports.
    """
    CREATE TABLE harvest_state (
        source TEXT NOT NULL,
        set_spec TEXT NOT NULL,
        prefix TEXT NOT NULL,
        next_from TEXT,
        run_from TEXT,
        run_until TEXT,
        run_response_day TEXT,
        token TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (source, set_spec, prefix)
    ) WITHOUT ROWID;
    CREATE TABLE harvest_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        set_spec TEXT NOT NULL,
        prefix TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        records INTEGER NOT NULL,
        added INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        unchanged INTEGER NOT NULL,
        pages INTEGER NOT NULL,
        seconds REAL NOT NULL,
        error TEXT
    );
    """,
    # 15: each paper's authors as the author filter compares them (names.author_entries: a hash of
    # the family name and the first initial, packed), so the filter columns load them without
    # parsing a name (filters.FilterColumns); and a covering index of the columns they load, so
    # that load scans small index rows instead of every paper's abstract (benchmarks/scale.py).
    """
    ALTER TABLE papers ADD COLUMN author_keys BLOB NOT NULL DEFAULT x'';
    UPDATE papers SET author_keys = paperlens_author_entries(authors) WHERE authors != '[]';
    CREATE INDEX papers_filter_columns ON papers(pk, date, popularity, author_keys);
    """,
]


def _external_id_rows(paper_id: str, extra: str) -> str:
    """Migrations' view of papers.external_ids: [[scheme, value], ...] as JSON."""
    paper = Paper(id=paper_id, title="", abstract="", extra=json.loads(extra or "{}"))
    return json.dumps(external_id_keys(paper))


def _author_entries_column(authors: str) -> bytes:
    return author_entries(json.loads(authors or "[]"))


def _clean_column(text: str | None) -> str | None:
    return clean_text(text) if isinstance(text, str) else text


def _clean_json_column(text: str | None, sort_keys: int) -> str | None:
    """A JSON column's strings cleaned, written as the store writes it (papers.py: upsert_papers)."""
    if not isinstance(text, str):
        return text
    value = json.loads(text)
    cleaned = clean_value(value)
    return text if cleaned == value else json.dumps(cleaned, sort_keys=bool(sort_keys))


# Python functions the migrations call, registered on every connection: one definition of each
# rule, shared by the writers and the migrations that apply it to older files.
SQL_FUNCTIONS = {"paperlens_external_ids": (2, _external_id_rows), "paperlens_clean_text": (1, _clean_column),
                 "paperlens_clean_json": (2, _clean_json_column), "paperlens_title_key": (1, title_key),
                 "paperlens_author_entries": (1, _author_entries_column)}


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements; a trigger body's inner ';' does not end its statement."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Database:
    """SQLite with one connection per thread: in WAL mode a reader sees the last committed state and
    never waits for the writer, and a writer's open transaction is invisible to other threads.
    Writers of the index are serialised by the caller (library.Library's lock), and all writers,
    across threads and processes, by SQLite itself (``BEGIN IMMEDIATE`` and the busy timeout)."""

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
            self._local.depth = 0
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
        for name, (arity, function) in SQL_FUNCTIONS.items():
            conn.create_function(name, arity, function, deterministic=True)
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
        """Commit what the block writes, or roll it back if it raises. The outermost block takes
        SQLite's write lock at once (BEGIN IMMEDIATE); a nested one is a savepoint within it."""
        conn = self.conn
        depth = self._local.depth
        begin, commit, rollback = (
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK") if depth == 0 else
            (f"SAVEPOINT s{depth}", f"RELEASE s{depth}", f"ROLLBACK TO s{depth}; RELEASE s{depth}")
        )
        conn.execute(begin)
        self._local.depth = depth + 1
        try:
            yield conn
        except BaseException:
            for statement in rollback.split("; "):
                conn.execute(statement)
            raise
        finally:
            self._local.depth = depth
        conn.execute(commit)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads in the block see one committed state of the file, however many statements they take
        (another process may commit between them). Inside a transaction the block is already one."""
        conn = self.conn
        if self._local.depth:
            yield
            return
        conn.execute("BEGIN DEFERRED")
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            conn.execute("COMMIT")

    def select_in(self, sql: str, values: Iterable, params: tuple = (), plain: bool = False) -> Iterator[sqlite3.Row | tuple]:
        """Run ``sql`` (with ``{marks}`` for the IN list, after ``params``) in chunks under SQLite's bound-parameter limit.
        ``plain``: rows as tuples, without the cost of a ``sqlite3.Row`` each (a search reads hundreds)."""
        values = list(values)
        for start in range(0, len(values), 900):
            chunk = values[start:start + 900]
            cursor = self.conn.cursor()
            if plain:
                cursor.row_factory = None
            yield from cursor.execute(sql.format(marks=",".join("?" * len(chunk))), [*params, *chunk])

    # --- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def integrity_check(self, quick: bool = False) -> list[str]:
        """SQLite's own check: ['ok'] when the file is sound. quick_check skips index contents (fast at start-up)."""
        pragma = "quick_check" if quick else "integrity_check"
        return [row[0] for row in self.conn.execute(f"PRAGMA {pragma}")]


class TableGroup:
    """A group of tables with its own SQL (users, harvests) over a ``Database``'s per-thread
    connections; its writes run in the caller's ``transaction()``."""

    def __init__(self, db: Database):
        self.db = db
        self.transaction = db.transaction

    @property
    def conn(self) -> sqlite3.Connection:
        """The calling thread's connection (``Database.conn`` is per thread)."""
        return self.db.conn
