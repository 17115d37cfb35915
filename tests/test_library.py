import shutil

import numpy as np
import pytest

from conftest import topic_papers
from paperlens.config import Settings
from paperlens.embed import packaged_model_path
from paperlens.errors import IndexMismatch, IndexNotFound, NothingToIngest
from paperlens.library import INDEX_FILE, Manifest, delete, ingest, open_library
from paperlens.papers import Paper
from paperlens.search import search_text, similar_to_paper


def test_manifest_records_model_dim_count_layout(small_library):
    manifest = Manifest.read(small_library.folder)
    assert (manifest.model, manifest.dim, manifest.count, manifest.layout) == ("sentence-transformers/all-MiniLM-L6-v2", 384, 6, "flat")
    assert (small_library.folder / INDEX_FILE).exists() and not list(small_library.folder.glob("*.tmp"))


def test_reingest_adds_nothing_and_encodes_nothing(small_library):
    report = ingest(small_library, topic_papers())
    assert report.added == [] and report.encoded == 0 and len(report.unchanged) == 6
    assert len(small_library) == 6 and len(small_library.index) == 6


def test_new_version_updates_in_place(small_library):
    paper = topic_papers()[0]
    changed = Paper(id="2401.00001v2", title=paper.title, abstract="Completely new abstract about ocean tides and the moon.")
    report = ingest(small_library, [changed])
    assert report.updated == ["2401.00001"] and report.encoded == 1
    assert len(small_library) == 6 and len(small_library.index) == 6
    assert search_text(small_library, "ocean tides and the moon", k=1)[0].id == "2401.00001"


def test_metadata_change_does_not_reencode(small_library):
    paper = topic_papers()[0]
    paper.popularity = 99
    report = ingest(small_library, [paper])
    assert report.updated == ["2401.00001"] and report.encoded == 0
    assert small_library.store.get("2401.00001").paper.popularity == 99


def test_delete_then_search_never_returns_it(small_library):
    assert delete(small_library, ["2402.00003", "no-such-id"]) == ["2402.00003"]
    hits = search_text(small_library, "galaxy rotation curves dark matter", k=10)
    assert "2402.00003" not in [h.id for h in hits] and len(hits) == 5
    with open_library(Settings(index=small_library.folder)) as reopened:
        assert "2402.00003" not in [h.id for h in search_text(reopened, "dark matter galaxies", k=10)]


def test_reopen_gives_identical_results(small_library):
    before = search_text(small_library, "robots learning to grasp", k=6)
    with open_library(Settings(index=small_library.folder)) as reopened:
        after = search_text(reopened, "robots learning to grasp", k=6)
    assert [(h.id, h.score) for h in before] == [(h.id, h.score) for h in after]


def test_stale_faiss_file_is_rebuilt_from_the_store_without_the_model(small_library):
    expected = [h.id for h in similar_to_paper(small_library, "2401.00001", k=5)]
    (small_library.folder / INDEX_FILE).write_bytes(b"garbage")
    with open_library(Settings(index=small_library.folder)) as reopened:
        assert len(reopened.index) == 6
        assert [h.id for h in similar_to_paper(reopened, "2401.00001", k=5)] == expected


def test_model_mismatch_is_a_clear_error(small_library, tmp_path):
    other = tmp_path / "other-model"
    shutil.copytree(packaged_model_path(), other)
    with pytest.raises(IndexMismatch, match="built with model"):
        open_library(Settings(index=small_library.folder, model=str(other)))
    # the same model named differently is no mismatch
    open_library(Settings(index=small_library.folder, model="sentence-transformers/all-MiniLM-L6-v2")).close()


def test_missing_index_and_empty_ingest(tmp_path):
    with pytest.raises(IndexNotFound, match="paperlens ingest"):
        open_library(Settings(index=tmp_path / "nope"))
    with open_library(Settings(index=tmp_path / "new"), create=True) as library:
        with pytest.raises(NothingToIngest):
            ingest(library, [])
        assert search_text(library, "anything") == []


def test_stored_vectors_are_unit_length(small_library):
    vectors = small_library.store.get_vectors([1, 2, 3], 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
