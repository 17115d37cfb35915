"""Backups taken from a live index (even during an ingest in another process) restore to an index
that 'paperlens check' passes and that answers as the original did; restore never overwrites an
index by accident and refuses what is not a backup."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import topic_papers
from paperlens.backup import BACKUP_FILE, backup, restore
from paperlens.cli import main
from paperlens.config import Settings
from paperlens.data import DEMO_CORPUS
from paperlens.errors import IndexNotFound, InvalidInput
from paperlens.library import check_library, ingest, open_library
from paperlens.search import search_text
from paperlens.users import create_user

QUERIES = ["protein structure prediction", "dark matter in galaxies", "robot grasping with reinforcement learning"]


@pytest.fixture
def index(tmp_path, settings) -> Path:
    with open_library(settings, tmp_path / "index", create=True) as library:
        ingest(library, topic_papers())
        user = create_user(library, "ada")
        with library.store.transaction():
            library.store.users.add_interaction(user.id, "2401.00001", "like")
    return tmp_path / "index"


def answers(settings: Settings, folder: Path) -> dict:
    with open_library(settings, folder) as library:
        return {(query, mode): [(hit.id, round(hit.score, 5)) for hit in search_text(library, query, 4, mode=mode)]
                for query in QUERIES for mode in ("dense", "bm25", "hybrid")}


def stored_ids(store_file: Path) -> list[str]:
    conn = sqlite3.connect(store_file)
    try:
        return [row[0] for row in conn.execute("SELECT id FROM papers ORDER BY id")]
    finally:
        conn.close()


def run(*args) -> object:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_a_backup_restores_to_an_index_that_answers_the_same(index, tmp_path, settings):
    done = run("backup", tmp_path / "backup", "--index", index, "--json")
    assert done.exit_code == 0, done.output
    info = json.loads(done.output)
    assert info["papers"] == 6 and info["users"] == 1
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == sorted([BACKUP_FILE, "manifest.json", "papers.sqlite"])

    done = run("restore", tmp_path / "backup", "--index", tmp_path / "restored")
    assert done.exit_code == 0, done.output
    assert "6 papers, 6 vectors, 6 in FAISS" in done.output
    assert run("check", "--no-repair", "--index", tmp_path / "restored").exit_code == 0
    assert answers(settings, tmp_path / "restored") == answers(settings, index)
    with open_library(settings, tmp_path / "restored") as library:
        [user] = library.store.users.list_users()
        assert user.name == "ada" and [i.paper_id for i in library.store.users.interactions(user.id)] == ["2401.00001"]


def test_a_backup_during_an_ingest_in_another_process_restores_soundly(index, tmp_path, settings):
    """The store copy is one committed state: before the ingest's commit, or after it, never half."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    writer = subprocess.Popen([sys.executable, "-m", "paperlens.cli", "ingest", str(DEMO_CORPUS), "--quiet", "--index", str(index)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    taken: list[Path] = []
    while writer.poll() is None or not taken:
        path = tmp_path / f"backup-{len(taken)}"
        backup(index, path)
        taken.append(path)
        time.sleep(0.2)
    assert writer.wait(300) == 0, writer.stderr.read()
    counts = {len(stored_ids(path / "papers.sqlite")) for path in taken}
    assert counts <= {6, 59}  # the six papers, or all 53 more: one transaction
    for path in [taken[0], taken[len(taken) // 2], taken[-1]]:
        restored = tmp_path / f"restored-{path.name}"
        report = restore(path, restored, settings)
        assert report.ok
        with open_library(settings, restored) as library:
            check = check_library(library, repair=False)
            assert check.ok and check.repaired == []
            assert check.papers == check.faiss == len(stored_ids(path / "papers.sqlite"))
        assert stored_ids(restored / "papers.sqlite") == stored_ids(path / "papers.sqlite")


def test_restore_never_replaces_an_index_unless_forced(index, tmp_path, settings):
    other = tmp_path / "other"
    with open_library(settings, other, create=True) as library:
        ingest(library, topic_papers()[:2])
    backup(other, tmp_path / "backup")

    refused = run("restore", tmp_path / "backup", "--index", index)
    assert refused.exit_code == 1
    assert refused.output.strip().count("\n") == 0 and "is not empty" in refused.output and "--force" in refused.output
    assert len(stored_ids(index / "papers.sqlite")) == 6  # untouched

    forced = run("restore", tmp_path / "backup", "--index", index, "--force")
    assert forced.exit_code == 0, forced.output
    assert stored_ids(index / "papers.sqlite") == ["2401.00001", "2401.00002"]
    assert run("check", "--no-repair", "--index", index).exit_code == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_restore_refuses_what_is_not_a_backup_and_backup_never_overwrites(index, tmp_path, settings):
    (tmp_path / "empty").mkdir()
    for source in (index, tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(InvalidInput, match="is not a paperlens backup"):
            restore(source, tmp_path / "new", settings)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / BACKUP_FILE).write_text("{}")
    (fake / "papers.sqlite").write_text("not a database")
    with pytest.raises(InvalidInput, match="unreadable"):
        restore(fake, tmp_path / "new", settings)
    assert not (tmp_path / "new").exists()

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    refused = run("backup", tmp_path / "taken", "--index", index)
    assert refused.exit_code == 1 and "never overwrites" in refused.output
    with pytest.raises(IndexNotFound):
        backup(tmp_path / "missing", tmp_path / "backup")
