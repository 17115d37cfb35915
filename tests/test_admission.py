"""Search admission (admission.py): with every search slot taken, writes still go through, reads queue,
and a read that waits past the bound is a 503 with Retry-After."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from conftest import hold_calls, topic_papers
from paperlens import api
from paperlens.admission import is_read, search_slots
from paperlens.api import create_app
from paperlens.api_deps import reads_on_loop
from paperlens.config import Settings
from paperlens.library import ingest, open_library


@pytest.fixture()
def index_dir(tmp_path):
    folder = tmp_path / "index"
    with open_library(Settings(index=folder, show_progress=False), create=True) as library:
        ingest(library, topic_papers())
    return folder


@pytest.fixture()
def held_search(monkeypatch):
    """Searches that stop before they run until ``release`` is set: a slow search, in flight (on the
    thread pool, as a large index's: the apps below set search_thread_min_papers to 0)."""
    started, release = hold_calls(monkeypatch, api, "search_text")
    yield started, release
    release.set()


@contextmanager
def a_search_in_flight(index_dir, held_search, **settings):
    """A served app whose first search is held in flight: (client, pool, that search's future)."""
    started, _ = held_search
    with TestClient(create_app(Settings(index=index_dir, show_progress=False, search_thread_min_papers=0, **settings))) as client, \
            ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.get, "/search", params={"q": "protein"})
        assert started.wait(30)
        yield client, pool, first


def test_writes_pass_a_search_in_flight_and_reads_wait_for_its_slot(index_dir, held_search):
    with a_search_in_flight(index_dir, held_search, search_concurrency=1, search_queue_seconds=60) as (client, pool, first):
        second = pool.submit(client.post, "/similar", json={"text": "dark matter halos"})  # a read: waits for the slot
        # Writes of every kind answer while the one slot is held.
        added = client.post("/papers", json=[{"id": "2501.00009", "title": "Dark energy surveys", "abstract": "Supernovae."}])
        assert added.status_code == 201, added.text
        user = client.post("/users", json={"name": "reader"}).json()
        liked = client.post(f"/users/{user['id']}/interactions", json={"paper_id": "2401.00001", "kind": "like"},
                            headers={"X-User-Token": user.get("token", "")})
        assert liked.status_code == 201, liked.text
        assert client.delete("/papers/2501.00009").status_code == 200
        assert client.get("/health").status_code == 200  # never queued
        assert not first.done() and not second.done()
        held_search[1].set()
        assert first.result(60).status_code == 200
        answer = second.result(60)
        assert answer.status_code == 200 and answer.json()["results"][0]["id"].startswith("2402.")


def test_a_read_that_waits_past_the_bound_is_a_503_with_retry_after(index_dir, held_search):
    with a_search_in_flight(index_dir, held_search, search_concurrency=1, search_queue_seconds=0.2) as (client, _, first):
        refused = client.get("/papers/2401.00001")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1" and "search slot" in refused.json()["detail"]
        held_search[1].set()
        assert first.result(60).status_code == 200
        assert client.get("/papers/2401.00001").status_code == 200  # the slot came back


def test_no_bound_lets_reads_run_together(index_dir, held_search):
    with a_search_in_flight(index_dir, held_search, search_concurrency=0, search_queue_seconds=0.2) as (client, _, first):
        assert client.get("/papers/2401.00001").status_code == 200
        held_search[1].set()
        assert first.result(60).status_code == 200


def test_which_requests_are_reads():
    assert is_read("GET", "/search") and is_read("HEAD", "/") and is_read("GET", "/papers/2401.00001/similar")
    assert is_read("POST", "/recommend") and is_read("POST", "/graph/v1/paper/batch/")
    assert not is_read("GET", "/health") and not is_read("GET", "/metrics")
    assert not is_read("POST", "/papers") and not is_read("DELETE", "/papers/x") and not is_read("POST", "/users/1/interactions")
    assert not is_read("PUT", "/users/1/interests")
    assert search_slots(Settings(search_concurrency=3)) == 3 and search_slots(Settings()) >= 1


def test_a_write_in_flight_holds_one_search_slot_back(index_dir, held_search, monkeypatch):
    """With two slots and a write in flight, one search runs and the next read waits; once the write
    is answered the second slot is free again, though the first search still runs."""
    written, release_write = hold_calls(monkeypatch, api, "ingest")
    settings = Settings(index=index_dir, show_progress=False, search_concurrency=2, search_queue_seconds=60, search_thread_min_papers=0)
    with TestClient(create_app(settings)) as client, \
            ThreadPoolExecutor(4) as pool:
        write = pool.submit(client.post, "/papers", json=[{"id": "2501.00009", "title": "Dark energy surveys", "abstract": "Supernovae."}])
        assert written.wait(30)
        first = pool.submit(client.get, "/search", params={"q": "protein"})
        assert held_search[0].wait(30)  # the one slot a write leaves
        second = pool.submit(client.get, "/papers/2401.00001")
        with pytest.raises(TimeoutError):
            second.result(0.5)  # waits: the other slot is the write's
        release_write.set()
        assert write.result(60).status_code == 201
        assert second.result(60).status_code == 200  # the write is answered: its slot is a search's again
        assert not first.done()
        held_search[1].set()
        assert first.result(60).status_code == 200


# --- where a read runs: the event loop for a small index, the thread pool for a large one -------------


READS = (
    ("GET", "/search", {"params": {"q": "protein folding", "k": 3}}),
    ("GET", "/search", {"params": {"q": "galaxies", "category": "astro-ph", "mode": "dense"}}),
    ("GET", "/papers/2401.00001/similar", {"params": {"k": 3}}),
    ("POST", "/similar", {"json": {"text": "dark matter halos and galaxy rotation", "k": 3}}),
    ("POST", "/recommend", {"json": {"positive": ["2401.00001"], "negative": [{"id": "2402.00004", "weight": 2}], "k": 3}}),
    # Bad input raised by the work itself is the same 4xx from either side.
    ("GET", "/papers/2409.99999/similar", {}),
    ("GET", "/search", {"params": {"q": "stars", "since": "2024-13-01"}}),
    ("POST", "/recommend", {"json": {"positive": ["2409.99999"]}}),
)


def _answers(index_dir, monkeypatch, **settings) -> tuple[list[tuple[int, object]], dict[str, set[str]]]:
    """Each of READS's status and body, and by work the names of the threads it ran on."""
    threads: dict[str, set[str]] = {}
    for name in ("search_text", "similar_to_paper", "recommend", "similar_to_text"):
        real = getattr(api, name)

        def noted(*args, _real=real, _name=name, **kwargs):
            threads.setdefault(_name, set()).add(threading.current_thread().name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(api, name, noted)
    with TestClient(create_app(Settings(index=index_dir, show_progress=False, **settings))) as client:
        answers = [(r.status_code, r.json()) for r in (client.request(method, path, **kw) for method, path, kw in READS)]
    monkeypatch.undo()
    return answers, threads


def _pooled(names: set[str]) -> bool:
    return all(name.startswith("AnyIO worker") for name in names)


def test_small_indexes_search_on_the_event_loop_large_ones_on_the_thread_pool_with_the_same_answers(index_dir, monkeypatch):
    on_loop, loop_threads = _answers(index_dir, monkeypatch)  # six papers, far below the default
    # As many as it holds: "large".
    pooled, pool_threads = _answers(index_dir, monkeypatch, search_thread_min_papers=len(topic_papers()))
    searches = ("search_text", "similar_to_paper", "recommend")
    assert all(loop_threads[name] and not any(_pooled({thread}) for thread in loop_threads[name]) for name in searches)
    assert all(_pooled(pool_threads[name]) for name in searches)
    # A pasted abstract is encoded on the thread pool whatever the index's size.
    assert _pooled(loop_threads["similar_to_text"]) and _pooled(pool_threads["similar_to_text"])
    assert on_loop == pooled
    assert [status for status, _ in on_loop] == [200] * 5 + [404, 422, 404]
    assert all(body["results"] for _, body in on_loop[:5])


def test_which_libraries_read_on_the_loop(index_dir):
    with open_library(Settings(index=index_dir, show_progress=False)) as library:
        assert reads_on_loop(library)
        library.settings.search_thread_min_papers = len(library)
        assert not reads_on_loop(library)
