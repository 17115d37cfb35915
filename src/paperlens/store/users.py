"""Users and what they tell us: access-token hashes, interactions with papers, free-text
interests, collections (personal feeds). Validation lives in ``paperlens.users``; the SQL here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .db import TableGroup, now


@dataclass
class UserRow:
    id: int
    name: str
    created_at: str


@dataclass
class DigestRecipient:
    id: int
    name: str
    email: str | None
    last_digest_at: str | None
    last_digest_pk: int | None  # the last paper stored before that digest


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


class UserStore(TableGroup):
    """The SQL of users and their data."""

    # What is a user's, in the order foreign keys need.
    TABLES = ("users", "interactions", "interests", "collections", "collection_papers", "feed_secrets")

    def copy_from(self, path: Path) -> None:
        """Every user's rows of another store file into this (new, empty) one: a sharded collection
        keeps its users in a store of their own (shards.py)."""
        self.conn.execute("ATTACH DATABASE ? AS source", (str(path),))
        try:
            with self.transaction():
                for table in self.TABLES:
                    columns = ", ".join(row[1] for row in self.conn.execute(f"PRAGMA main.table_info({table})"))
                    self.conn.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM source.{table}")
        finally:
            self.conn.execute("DETACH DATABASE source")

    def add_user(self, name: str) -> UserRow:
        user_id = self.conn.execute("INSERT INTO users(name, created_at) VALUES (?, ?)", (name, now())).lastrowid
        return self.get_user(user_id)

    def set_token_hash(self, user_id: int, digest: str) -> bool:
        """Replace the user's token hash. False if there is no such user."""
        return self.conn.execute("UPDATE users SET token_hash = ? WHERE id = ?", (digest, user_id)).rowcount > 0

    def token_hash(self, user_id: int) -> str | None:
        row = self.conn.execute("SELECT token_hash FROM users WHERE id = ?", (user_id,)).fetchone()
        return row[0] if row else None

    def user_with_token_hash(self, digest: str) -> tuple[str, int] | None:
        """(hash, user id) of the user with this token hash. A scan of the users table, which holds
        the people of one server, not a population."""
        row = self.conn.execute("SELECT token_hash, id FROM users WHERE token_hash = ?", (digest,)).fetchone()
        return (row[0], row[1]) if row else None

    def set_feed_secret(self, user_id: int, collection: str, digest: str) -> None:
        """The feed's secret hash, replacing an earlier one (collection '' is the user's own feed)."""
        self.conn.execute("DELETE FROM feed_secrets WHERE user_id = ? AND collection = ?", (user_id, collection))
        self.conn.execute("INSERT INTO feed_secrets(secret_hash, user_id, collection, created_at) VALUES (?, ?, ?, ?)",
                          (digest, user_id, collection, now()))

    def delete_feed_secret(self, user_id: int, collection: str) -> bool:
        return self.conn.execute("DELETE FROM feed_secrets WHERE user_id = ? AND collection = ?", (user_id, collection)).rowcount > 0

    def feed_secret(self, digest: str) -> tuple[str, int, str] | None:
        """(hash, user id, collection) of the feed with this secret hash."""
        row = self.conn.execute("SELECT secret_hash, user_id, collection FROM feed_secrets WHERE secret_hash = ?", (digest,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def get_user(self, user_id: int) -> UserRow | None:
        row = self.conn.execute("SELECT id, name, created_at FROM users WHERE id = ?", (user_id,)).fetchone()
        return UserRow(*row) if row else None

    def list_users(self) -> list[UserRow]:
        return [UserRow(*row) for row in self.conn.execute("SELECT id, name, created_at FROM users ORDER BY id")]

    def set_email(self, user_id: int, email: str | None) -> bool:
        """The address digests go to (None: none). False if there is no such user."""
        return self.conn.execute("UPDATE users SET email = ? WHERE id = ?", (email, user_id)).rowcount > 0

    def email(self, user_id: int) -> str | None:
        row = self.conn.execute("SELECT email FROM users WHERE id = ?", (user_id,)).fetchone()
        return row[0] if row else None

    def digest_recipients(self) -> list[DigestRecipient]:
        """Every user, with their address (or None) and the time of their last digest."""
        rows = self.conn.execute("SELECT id, name, email, last_digest_at, last_digest_pk FROM users ORDER BY id")
        return [DigestRecipient(*row) for row in rows]

    def set_last_digest(self, user_id: int, when: str, last_pk: int) -> None:
        self.conn.execute("UPDATE users SET last_digest_at = ?, last_digest_pk = ? WHERE id = ?", (when, last_pk, user_id))

    def delete_user(self, user_id: int) -> bool:
        """Interactions, interests and collections go with the user (ON DELETE CASCADE)."""
        return self.conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0

    def add_interaction(self, user_id: int, paper_id: str, kind: str, created_at: str | None = None) -> InteractionRow:
        """Re-recording the same interaction refreshes its time (a second like counts as recent).

        ``created_at`` (ISO 8601) is for imports of older histories; by default it is now."""
        when = created_at or now()
        self.conn.execute(
            "INSERT INTO interactions(user_id, paper_id, kind, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(user_id, paper_id, kind) DO UPDATE SET created_at = excluded.created_at",
            (user_id, paper_id, kind, when),
        )
        return InteractionRow(paper_id, kind, when)

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
        """Replace the user's interests with these (texts and their vectors, in order)."""
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
            "INSERT OR IGNORE INTO collections(user_id, name, created_at) VALUES (?, ?, ?)", (user_id, name, now())
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
            (user_id, name, paper_id, now()),
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
