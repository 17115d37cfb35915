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


def test_large_index_defers_faiss_saves_and_replays_them_at_open(tmp_path):
    """Past index_save_every_write_below, a write that changed less than index_save_share of the
    index leaves vectors.faiss as it was; a process killed before saving loses nothing, because
    the next open replays the logged writes from the store."""
    settings = Settings(index_save_every_write_below=0, index_save_share=0.5, show_progress=False)
    folder = tmp_path / "index"
    library = open_library(settings, folder, create=True)
    ingest(library, topic_papers())
    saved = (folder / INDEX_FILE).read_bytes()
    extra = Paper("2402.00001", "Ocean tides", "The moon raises ocean tides on the Earth twice a day.")
    ingest(library, [extra])
    delete(library, ["2401.00002"])
    assert (folder / INDEX_FILE).read_bytes() == saved  # 2 changes < 0.5 x 6: not saved
    assert Manifest.read(folder).generation < library.store.generation()
    # a kill: the process ends without close() saving the deferred FAISS file
    library.faiss_cache.unsaved_generation = None
    library.close()

    reopened = open_library(settings, folder)
    assert any("by replaying 2 changed papers" in note for note in reopened.recovered)
    assert len(reopened.index) == 6 and sorted(reopened.index.ids()) == sorted(reopened.store.vector_pks())
    assert search_text(reopened, "the moon and ocean tides", k=1, mode="dense")[0].id == "2402.00001"
    assert "2401.00002" not in {hit.id for hit in similar_to_paper(reopened, "2402.00001", k=10)}
    reopened.close()

    # a write logged nowhere (pks=None) cannot be replayed past: the FAISS file is rebuilt instead
    with open_library(settings, folder) as again:
        assert any("replaying" in note for note in again.recovered)  # a reader replays but does not save
        ingest(again, [Paper("2402.00002", "Tidal locking", "Tidal forces lock the moon's rotation to its orbit.")])
        with again.store.transaction():
            again.store.bump_generation(None)
        again.faiss_cache.unsaved_generation = None  # as if killed: close() does not save
    with open_library(settings, folder) as last:
        assert any("rebuilt vectors.faiss" in note for note in last.recovered)
        assert len(last.index) == 7


def test_close_saves_what_was_deferred(tmp_path):
    settings = Settings(index_save_every_write_below=0, index_save_share=0.9, show_progress=False)
    folder = tmp_path / "index"
    with open_library(settings, folder, create=True) as library:
        ingest(library, topic_papers())
        ingest(library, [Paper("2402.00001", "Ocean tides", "The moon raises ocean tides.")])
        assert library.faiss_cache.unsaved_generation is not None
    with open_library(settings, folder) as reopened:
        assert reopened.recovered == [] and len(reopened.index) == 7
        assert Manifest.read(folder).generation == reopened.store.generation()
