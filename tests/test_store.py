"""The store's transaction rule: the caller owns the transaction, and transactions nest."""

from __future__ import annotations

import pytest

from paperlens.store import Store


def test_a_nested_transaction_rolls_back_alone_and_commits_with_the_outer_one(tmp_path):
    store = Store(tmp_path / "papers.sqlite")
    with store.transaction():
        store.set_meta("kept", "1")
        with pytest.raises(ValueError), store.transaction():
            store.set_meta("dropped", "1")
            raise ValueError
        with store.transaction():
            store.users.add_user("ada")
    other = Store(tmp_path / "papers.sqlite")  # another connection sees only what committed
    assert other.get_meta("kept") == "1" and other.get_meta("dropped") is None
    assert other.users.get_user(1).name == "ada"


def test_writes_roll_back_with_the_callers_transaction(tmp_path):
    store = Store(tmp_path / "papers.sqlite")
    with store.transaction():
        generation = store.bump_generation([1, 2])
    with pytest.raises(RuntimeError), store.transaction():
        store.forget_changes(generation)
        user = store.users.add_user("bo")
        store.users.set_interests(user.id, ["tides"], [[0.0, 1.0]])
        raise RuntimeError
    assert store.changed_since(0).tolist() == [1, 2]
    assert store.users.get_user(1) is None


def test_the_alias_migration_gives_stored_dois_their_alias(tmp_path):
    """A store from before migration 8 finds its papers by DOI once opened."""
    import sqlite3

    from paperlens.store.db import MIGRATIONS, _statements

    path = tmp_path / "papers.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:7], start=1):
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={number}")
    conn.execute("INSERT INTO papers (id, title, abstract, extra, text_hash, added_at, updated_at) "
                 "VALUES ('2401.00001', 't', 'a', '{\"doi\": \"10.1000/ABC.1\"}', 'h', 'now', 'now')")
    conn.close()
    assert Store(path).resolve(["doi:10.1000/abc.1"]) == {"doi:10.1000/abc.1": "2401.00001"}
