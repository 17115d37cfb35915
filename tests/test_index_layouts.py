"""Each index layout behind the VectorIndex interface, and the choice between them by size."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from paperlens.config import Settings
from paperlens.index import (
    FLAT_LIMIT,
    IVFPQ_LIMIT,
    LAYOUTS,
    SearchTuning,
    choose_layout,
    create_index,
    layout_outdated,
    layout_params,
    load_index,
)
from paperlens.index.hnsw import HNSWIndex, auto_ef_search
from paperlens.library import Manifest, delete, ingest, open_library
from paperlens.papers import Paper
from paperlens.search import search_text, similar_to_paper

DIM = 64
SMALL_PARAMS = {"flat": {}, "hnsw": {"m": 16, "ef_construction": 40, "sq8": True}, "ivfpq": {"nlist": 8, "pq_m": 8, "nbits": 8}}


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(params=list(LAYOUTS))
def layout(request) -> str:
    return request.param


@pytest.fixture
def filled(layout: str):
    vectors = unit_vectors(600)
    index = create_index(layout, DIM, SMALL_PARAMS[layout], vectors, SearchTuning(ef_search=64, nprobe=8))
    index.add(np.arange(1, 601), vectors)
    return index, vectors


def test_a_vector_finds_itself(filled):
    index, vectors = filled
    _, ids = index.search(vectors[:50], 1)
    assert (ids[:, 0] == np.arange(1, 51)).mean() >= 0.98  # PQ may swap a near tie


def test_removed_ids_are_never_returned(filled):
    index, vectors = filled
    gone = np.arange(1, 101)
    assert index.remove(gone) == 100
    assert len(index) == 500
    _, ids = index.search(vectors[:100], 50)
    assert not set(ids.ravel()) & set(gone.tolist())


def test_filter_restricts_results(filled):
    index, vectors = filled
    allowed = np.array([3, 7, 11])
    _, ids = index.search(vectors[:5], 3, allowed=allowed)
    assert set(ids.ravel()) <= {3, 7, 11, -1}
    assert (ids[2, 0], ids[:, :3].ravel().tolist().count(-1)) == (3, 0)


def test_save_and_load_keep_contents(filled, tmp_path: Path, layout: str):
    index, vectors = filled
    index.remove(np.array([5]))
    index.save(tmp_path / "v.faiss")
    loaded = load_index(layout, tmp_path / "v.faiss", SMALL_PARAMS[layout], index.tuning)
    assert len(loaded) == 599
    _, ids = loaded.search(vectors[5:6], 20)
    assert 5 not in ids


def test_choose_layout_by_size():
    assert choose_layout(10) == "flat"
    assert choose_layout(FLAT_LIMIT - 1) == "flat"
    assert choose_layout(FLAT_LIMIT) == "hnsw"
    assert choose_layout(IVFPQ_LIMIT) == "ivfpq"
    assert choose_layout(10, "ivfpq") == "ivfpq"


def test_growth_triggers_a_rebuild_and_shrinking_does_not():
    assert layout_outdated("flat", FLAT_LIMIT + 1) is not None
    assert layout_outdated("hnsw", 10) is None
    assert layout_outdated("flat", 10, "hnsw") is not None


def test_layout_params_fit_the_collection():
    params = layout_params("ivfpq", 1_000_000)
    assert params["nlist"] * 39 <= 1_000_000 and params["nlist"] >= 1024
    assert layout_params("ivfpq", 1000)["nlist"] * 39 <= 1000


def test_hnsw_asks_for_a_rebuild_after_many_deletions():
    vectors = unit_vectors(100)
    index = create_index("hnsw", DIM, SMALL_PARAMS["hnsw"], vectors)
    index.add(np.arange(1, 101), vectors)
    index.remove(np.arange(1, 11))
    assert isinstance(index, HNSWIndex) and index.needs_rebuild() is None
    index.remove(np.arange(11, 31))
    assert "hnsw slots" in index.needs_rebuild()


def test_hnsw_delete_in_place_then_the_same_ids_again(tmp_path: Path):
    """Deletes tombstone slots through a view of the id table: the ids are gone from searches and
    ``ids()``, a copy keeps them as they were, and ids added again (as a layered index merges its
    recent part into the graph) are found, before and after a save."""
    vectors = unit_vectors(200)
    index = create_index("hnsw", DIM, SMALL_PARAMS["hnsw"], vectors, SearchTuning(ef_search=64))
    index.add(np.arange(1, 201), vectors)
    before = index.copy()
    assert index.remove(np.array([5, 6, 999])) == 2 and index.remove(np.array([5])) == 0
    assert len(index) == 198 and not {5, 6} & set(index.ids().tolist())
    assert len(before) == 200 and {5, 6} <= set(before.ids().tolist())
    _, ids = index.search(vectors[[4, 5]], 5)
    assert not {5, 6} & set(ids.ravel().tolist())
    index.add(np.array([5, 6]), vectors[[4, 5]])
    _, ids = index.search(vectors[[4, 5]], 1)
    assert ids[:, 0].tolist() == [5, 6]
    index.save(tmp_path / "vectors.faiss")
    loaded = HNSWIndex.load(tmp_path / "vectors.faiss", SMALL_PARAMS["hnsw"], SearchTuning(ef_search=64))
    assert np.array_equal(np.sort(loaded.ids()), np.arange(1, 201)) and loaded.tombstones == 2
    assert loaded.search(vectors[[4, 5]], 1)[1][:, 0].tolist() == [5, 6]


# --- through the library: manifest, rebuild on open, deletes persisted ------------------------

TOPICS = ["protein folding", "graph neural networks", "malaria vaccines", "galaxy formation", "soil bacteria", "quantum error correction"]


@pytest.fixture(scope="module")
def flat_library(tmp_path_factory) -> Path:
    """300 short papers ingested once with the real packaged model (the flat layout, by size)."""
    folder = tmp_path_factory.mktemp("lib") / "idx"
    papers = [Paper(f"p{i}", f"A study of {TOPICS[i % 6]} number {i}", f"We report finding {i} on {TOPICS[i % 6]}.") for i in range(300)]
    with open_library(Settings(show_progress=False), folder, create=True) as library:
        ingest(library, papers)
    return folder


@pytest.mark.parametrize("name", ["hnsw", "ivfpq"])
def test_library_rebuilds_into_configured_layout_and_reloads(flat_library: Path, tmp_path: Path, name: str):
    folder = tmp_path / "idx"
    shutil.copytree(flat_library, folder)
    settings = Settings(layout=name, show_progress=False)
    with open_library(settings, folder) as library:  # configured layout differs: rebuilt on open
        assert library.index.layout == name
        delete(library, ["p7"])
    manifest = Manifest.read(folder)
    assert (manifest.layout, manifest.count) == (name, 299)
    assert manifest.index_params == layout_params(name, 300)
    with open_library(settings, folder) as library:  # now loaded from the file as saved
        assert library.index.layout == name and len(library.index) == 299
        hits = search_text(library, "malaria vaccines", k=20)
        assert "p7" not in [h.id for h in hits]
        assert sum("malaria" in h.title for h in hits) >= 15
        assert similar_to_paper(library, "p8", k=5)


def test_hnsw_search_breadth_grows_with_the_collection_unless_set():
    assert auto_ef_search(1_000) == auto_ef_search(100_000) == 128
    assert 700 <= auto_ef_search(1_000_000) <= 800
    assert auto_ef_search(10**9) == 4096
    # A graph built with efConstruction 200 reaches the same recall with a shorter queue.
    assert auto_ef_search(1_000, 200) == auto_ef_search(100_000, 200) == 96
    assert 380 <= auto_ef_search(1_000_000, 200) <= 390
    vectors = np.random.default_rng(0).standard_normal((300, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = create_index("hnsw", DIM, SMALL_PARAMS["hnsw"], vectors, SearchTuning())
    assert index.search_parameters(None).efSearch == 128  # built with efConstruction 40: the efConstruction-80 curve
    index.tuning = SearchTuning(ef_search=40)
    assert index.search_parameters(None).efSearch == 40


def test_new_hnsw_graphs_are_built_and_searched_as_efconstruction_200_and_old_ones_as_recorded(tmp_path):
    vectors = np.random.default_rng(1).standard_normal((300, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    params = layout_params("hnsw", 300)
    assert params["ef_construction"] == 200
    fresh = create_index("hnsw", DIM, params, vectors, SearchTuning())
    fresh.add(np.arange(1, 301), vectors)
    assert faiss.downcast_index(fresh.faiss_index.index).hnsw.efConstruction == 200
    assert fresh.search_parameters(None).efSearch == 96
    path = tmp_path / "old.faiss"
    old = create_index("hnsw", DIM, {**params, "ef_construction": 80}, vectors, SearchTuning())
    old.add(np.arange(1, 301), vectors)
    faiss.write_index(old.faiss_index, str(path))
    # As an index folder's manifest describes it: its recorded efConstruction picks the curve.
    assert load_index("hnsw", path, {**params, "ef_construction": 80}).search_parameters(None).efSearch == 128
    assert load_index("hnsw", path, {"m": 32, "sq8": True}).search_parameters(None).efSearch == 128


def test_layered_index_answers_from_both_parts_and_merges():
    """The exact part answers for new vectors, tombstones hide deleted ones, merged() holds both."""
    from paperlens.index.layered import LayeredIndex

    vectors = unit_vectors(300)
    main = create_index("hnsw", DIM, SMALL_PARAMS["hnsw"], vectors)
    main.add(np.arange(1, 201), vectors[:200])
    layered = LayeredIndex.over(main)
    layered.add(np.arange(201, 301), vectors[200:])
    layered.remove(np.array([5, 250]))
    assert len(layered) == 298 and 5 not in layered.ids() and 250 not in layered.ids()
    for pk in (7, 260):
        scores, ids = layered.search(vectors[pk - 1], 3)
        assert ids[0][0] == pk and scores[0][0] == pytest.approx(1.0, abs=0.02)
    for pk in (5, 250):
        assert pk not in layered.search(vectors[pk - 1], 10)[1][0]
    batch = layered.search(vectors[[6, 259]], 4, allowed=np.array([7, 260, 261]))[1]
    assert batch[0][0] == 7 and batch[1][0] == 260 and set(batch.ravel()) <= {7, 260, 261, -1}
    copy = layered.copy()
    copy.add(np.array([400]), vectors[:1])
    assert 400 not in layered.ids() and 400 in copy.ids()
    merged = layered.merged()
    assert isinstance(merged, HNSWIndex) and np.array_equal(merged.ids(), layered.ids())


def test_large_hnsw_library_writes_through_the_layered_index(tmp_path: Path):
    settings = Settings(layout="hnsw", index_save_every_write_below=0, index_save_share=0.9, show_progress=False)
    folder = tmp_path / "index"
    papers = [Paper(f"p{i}", f"Paper {i} on topic {i % 7}", f"An abstract about subject number {i} and theme {i % 7}.") for i in range(40)]
    with open_library(settings, folder, create=True) as library:
        ingest(library, papers)
        ingest(library, [Paper("tides", "Ocean tides", "The moon raises ocean tides on the Earth twice a day.")])
        delete(library, ["p3"])
        from paperlens.index.layered import LayeredIndex

        assert isinstance(library.index, LayeredIndex)
        assert search_text(library, "the moon and ocean tides", k=1, mode="dense")[0].id == "tides"
        assert "p3" not in {hit.id for hit in similar_to_paper(library, "p4", k=40)}
        assert np.array_equal(library.index.ids(), library.store.vector_pks())
    with open_library(settings, folder) as reopened:  # close() merged and saved
        assert isinstance(reopened.index, HNSWIndex) and reopened.recovered == []
        assert np.array_equal(reopened.index.ids(), reopened.store.vector_pks())


@pytest.mark.parametrize("sq8", [True, False])
def test_a_narrow_filter_scans_its_papers_codes_and_finds_what_an_exhaustive_search_does(sq8: bool, monkeypatch):
    """hnsw.SCAN_FILTER_MAX_SHARE: a filter that keeps few papers scores their stored codes one by
    one: the same scores as decoding every code, deleted papers left out, a wide filter still
    walks the graph, and fewer papers than k fill the rest with -1."""
    from paperlens.index import hnsw

    vectors = unit_vectors(3000, seed=3)
    index = create_index("hnsw", DIM, {**SMALL_PARAMS["hnsw"], "sq8": sq8}, vectors, SearchTuning(ef_search=16))
    index.add(np.arange(1, 3001), vectors)
    assert isinstance(index, HNSWIndex)
    rng = np.random.default_rng(4)
    allowed = np.sort(rng.choice(np.arange(1, 3001), 60, replace=False))  # 2 %
    queries = unit_vectors(20, seed=5)
    storage = faiss.downcast_index(faiss.downcast_index(index.faiss_index.index).storage)
    decoded = storage.reconstruct_n(0, storage.ntotal)  # slot i holds id i + 1 here
    expected = decoded[allowed - 1] @ queries.T  # (60, 20): every allowed paper's score, exhaustively
    scores, ids = index.search(queries, 10, allowed)
    for row in range(len(queries)):
        best = allowed[np.argsort(-expected[:, row], kind="stable")[:10]]
        assert set(ids[row].tolist()) == set(best.tolist())
        assert np.allclose(scores[row], np.sort(expected[:, row])[::-1][:10], atol=1e-5)
    walked = []
    monkeypatch.setattr(hnsw.VectorIndex, "search", lambda self, *args: walked.append(args) or (np.zeros((1, 1)), np.zeros((1, 1))))
    index.search(queries, 10, np.arange(1, 1001))  # a third of the papers: the graph
    assert len(walked) == 1
    monkeypatch.undo()
    index.remove(allowed[:55])
    scores, ids = index.search(queries[:1], 10, allowed)
    assert sorted(ids[0][:5].tolist()) == sorted(allowed[55:].tolist()) and ids[0][5:].tolist() == [-1] * 5
    assert np.isneginf(scores[0][5:]).all()
    index.add(allowed[:3], vectors[allowed[:3] - 1])  # added again: new slots, found by the next scan
    assert set(allowed[:3].tolist()) <= set(index.search(queries[:1], 10, allowed)[1][0].tolist())


SIMD_LEVELS = """
import faiss
chosen = faiss.SIMDConfig.get_level_name() if hasattr(faiss, "SIMDConfig") else "static"
import paperlens.index
print(chosen, faiss.SIMDConfig.get_level_name() if hasattr(faiss, "SIMDConfig") else "static")
"""


@pytest.mark.parametrize("asked", [None, "AVX512_SPR"])
def test_faiss_runs_avx512_kernels_where_it_would_pick_sapphire_rapids_ones(asked):
    """Its AVX512_SPR level searched an HNSW graph of 8-bit codes 1.7x slower than AVX512 with the
    same answers; any other level, and a level the user set, are left as they were."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "FAISS_SIMD_LEVEL"}
    if asked:
        if not (hasattr(faiss, "SIMDConfig") and faiss.SIMDConfig.is_simd_level_available(faiss.SIMDLevel_AVX512_SPR)
                and faiss.SIMDConfig.auto_detect_simd_level() == faiss.SIMDLevel_AVX512_SPR):
            pytest.skip("this CPU (or FAISS build) has no AVX512_SPR level to ask for")
        env["FAISS_SIMD_LEVEL"] = asked
    done = subprocess.run([sys.executable, "-c", SIMD_LEVELS], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    chosen, used = done.stdout.split()
    assert used == ("AVX512" if chosen == "AVX512_SPR" and not asked else chosen)
