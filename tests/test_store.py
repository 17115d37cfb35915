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
