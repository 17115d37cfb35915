"""The store's transaction rule: the caller owns the transaction, and transactions nest."""

from __future__ import annotations

import pytest

from paperlens.papers import Paper
from paperlens.store import MIGRATIONS, Store


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


def test_papers_read_back_as_written_and_a_changed_papers_count_matches_its_list(tmp_path):
    """Reading a paper back gives what was written, NaN in its metadata included (orjson reads the
    JSON columns and refuses NaN, which the writer lets through); the count of changed papers is
    the length of their list."""
    store = Store(tmp_path / "papers.sqlite")
    written = [Paper(id="p1", title="Tides", abstract="Tidal range.", authors=["Ada Lovelace"], categories=["physics.ao-ph"],
                     extra={"doi": "10.1/x", "nested": {"k": [1, 2]}}),
               Paper(id="p2", title="Waves", abstract="Swell.", extra={"score": float("nan")})]
    with store.transaction():
        outcomes = store.upsert_papers(written, ["h1", "h2"])
        store.bump_generation([outcome.pk for outcome in outcomes])
    read = store.get_many(outcome.pk for outcome in outcomes)
    first, second = (read[outcome.pk].paper for outcome in outcomes)
    assert (first.authors, first.categories, first.extra) == (["Ada Lovelace"], ["physics.ao-ph"], {"doi": "10.1/x", "nested": {"k": [1, 2]}})
    assert second.extra["score"] != second.extra["score"]  # NaN
    assert store.count_changed_since(0) == len(store.changed_since(0)) == 2
    assert store.count_changed_since(store.generation()) == 0


def _store_at_version(path, version: int, *statements: str | tuple[str, tuple]) -> None:
    """An SQLite file as an older paperlens left it: the migrations up to ``version`` only, then
    ``statements`` (SQL, or SQL with its parameters) writing the rows that older version stored."""
    import sqlite3

    from paperlens.store.db import MIGRATIONS, SQL_FUNCTIONS, _statements

    conn = sqlite3.connect(path)
    for name, (arity, function) in SQL_FUNCTIONS.items():
        conn.create_function(name, arity, function, deterministic=True)
    for script in MIGRATIONS[:version]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={version}")
    for statement in statements:
        conn.execute(*((statement,) if isinstance(statement, str) else statement))
    conn.commit()
    conn.close()


def test_an_older_file_learns_the_external_ids_of_its_papers(tmp_path):
    path = tmp_path / "papers.sqlite"
    _store_at_version(path, 7, "INSERT INTO papers(id, title, abstract, extra, text_hash, added_at, updated_at) VALUES "
                      "('h1', 't', 'a', '{\"doi\": \"https://doi.org/10.9/AB\", \"corpusId\": 42}', 'x', '', ''), "
                      "('2301.00001', 't', 'a', '{}', 'y', '', '')")
    keys = [("doi", "10.9/ab"), ("corpusid", "42"), ("arxiv", "2301.00001")]
    assert Store(path).resolve(keys) == dict(zip(keys, ["h1", "h1", "2301.00001"]))


def test_an_external_id_or_a_merged_papers_old_id_resolves_to_the_stored_entry(tmp_path):
    """paper_external_ids for other services' ids (the oldest paper when two carry one), paper_aliases
    for the paperlens id of a paper merged into another; a stored id wins over an alias."""
    store = Store(tmp_path / "papers.sqlite")
    with store.transaction():
        kept, _ = store.upsert_papers([Paper(id="keep", title="t", abstract="a", extra={"doi": "10.1/X"}),
                                       Paper(id="copy", title="t", abstract="a", extra={"doi": "10.1/x"})], ["h1", "h2"])
        store.add_aliases([("gone", kept.pk), ("copy", kept.pk)])
    keys = [("paperlens", "gone"), ("paperlens", "copy"), ("doi", "10.1/x"), ("doi", "10.1/none"), ("paperlens", "none")]
    assert store.resolve(keys) == {("paperlens", "gone"): "keep", ("paperlens", "copy"): "copy", ("doi", "10.1/x"): "keep"}


def test_an_older_file_loses_the_characters_xml_forbids(tmp_path):

    path = tmp_path / "papers.sqlite"
    _store_at_version(
        path, 8,
        ("INSERT INTO papers(id, title, abstract, authors, categories, extra, url, text_hash, added_at, updated_at) "
         "VALUES ('p1', ?, ?, ?, ?, ?, ?, 'h', '', ''), ('p2', 'clean', 'clean', '[]', '[]', '{}', NULL, 'h2', '', '')",
         ("Ti\x00tle\ufffe", "Ab\x0cstract", '["Ada\\u0002 L"]', '["cs\\u0003.CL"]', '{"k": "v\\u0007"}', "http://x/\x01")),
        ("INSERT INTO paper_categories(category, pk) VALUES (?, 1)", ("cs\x03.CL",)))
    store = Store(path)
    paper = store.get("p1").paper
    assert (paper.title, paper.abstract, paper.authors, paper.categories, paper.extra, paper.url) == (
        "Title", "Ab stract", ["Ada L"], ["cs.CL"], {"k": "v"}, "http://x/")
    assert [tuple(r) for r in store.conn.execute("SELECT category, pk FROM paper_categories")] == [("cs.CL", 1)]
    assert store.get("p2").paper.title == "clean"


def test_an_older_file_learns_the_normalised_titles_of_its_papers(tmp_path):
    """Migration 12: title_key, filled for the papers already stored, so dedup finds their records."""

    path = tmp_path / "papers.sqlite"
    _store_at_version(path, 11, "INSERT INTO papers(id, title, abstract, extra, text_hash, added_at, updated_at) VALUES "
                      "('h1', 'Deep  Learning!', 'a', '{}', 'x', '', ''), ('2301.00001', 'deep learning', 'b', '{}', 'y', '', '')")
    store = Store(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.duplicate_candidates() == [[1, 2]]
    assert store.same_titles(["deep learning"]) == {"deep learning": [(1, "x"), (2, "y")]}


def test_a_merged_record_gives_its_external_ids_to_the_entry_it_joins(tmp_path):
    """absorb moves the merged rows' external ids (a DOI the entry lacks, a second DOI, an arXiv id)
    to the kept entry, once each; a later write of the entry keeps them and drops only what its own
    record no longer carries."""
    store = Store(tmp_path / "papers.sqlite")
    with store.transaction():
        kept, other = store.upsert_papers([Paper(id="h1", title="t", abstract="a", extra={"doi": "10.1/journal", "corpusId": 7}),
                                           Paper(id="2301.00001", title="t", abstract="a", extra={"doi": "10.48550/arXiv.2301.00001"})],
                                          ["x", "x"])
        store.absorb(kept.pk, {other.pk: other.id})
    rows = {tuple(row) for row in store.conn.execute("SELECT scheme, value, pk FROM paper_external_ids")}
    assert rows == {("doi", "10.1/journal", kept.pk), ("corpusid", "7", kept.pk),
                    ("doi", "10.48550/arxiv.2301.00001", kept.pk), ("arxiv", "2301.00001", kept.pk)}
    assert [tuple(row) for row in store.conn.execute("SELECT alias, pk FROM paper_aliases")] == [("2301.00001", kept.pk)]
    with store.transaction():
        store.upsert_papers([Paper(id="h1", title="t", abstract="a", extra={"doi": "10.1/journal"})], ["x"])
    keys = [("doi", "10.1/journal"), ("doi", "10.48550/arxiv.2301.00001"), ("arxiv", "2301.00001"), ("corpusid", "7")]
    assert store.resolve(keys) == dict(zip(keys[:3], ["h1"] * 3))
