"""Writes from another process reach a running server without a restart, and two writers never
corrupt an index: two opened libraries of one folder in this process, then a real `paperlens serve`
beside real `paperlens ingest` / `delete` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import topic_papers, write_jsonl
from paperlens.config import Settings
from paperlens.errors import InvalidInput, WriterBusy
from paperlens.library import check_library, delete, ingest, open_library
from paperlens.papers import Paper
from paperlens.search import make_filters, search_text, similar_to_paper
from serverproc import ServerProcess

NEW = Paper(id="2405.00007", title="Volcanic eruptions and sulfate aerosols",
            abstract="Stratospheric sulfate aerosols from volcanic eruptions cool the climate for several years.",
            date="2024-05-01", categories=["physics.ao-ph"], popularity=3)
OTHER = Paper(id="2405.00008", title="Coral reef bleaching under ocean warming",
              abstract="Marine heatwaves bleach coral reefs; recovery takes a decade between events.",
              date="2024-05-02", categories=["q-bio.PE"], popularity=1)


def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> float:
    """Seconds until ``check()`` holds; fails the test after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def ids(hits) -> list[str]:
    return [hit.id for hit in hits]


@pytest.fixture
def folder(tmp_path, settings) -> Path:
    with open_library(settings, tmp_path / "index", create=True) as library:
        ingest(library, topic_papers())
    return tmp_path / "index"


# --- two libraries of one folder, in this process ----------------------------------------------


def committed(writer) -> None:
    """Group commit answers a write before keywords/ commits it and the manifest vouches for that;
    another library of the folder catches up with the keyword side once both are done."""
    writer.keyword_cache.wait_settled(60)


def test_a_reader_catches_up_with_another_writers_ingest_update_and_delete(folder, settings):
    with open_library(settings, folder) as reader, open_library(settings, folder) as writer:
        filters = make_filters(categories=["physics.ao-ph"])
        reader.filter_columns()  # loaded before the write: catching up must patch them
        assert NEW.id not in ids(search_text(reader, "volcanic sulfate aerosols", 3, mode="bm25"))
        generation = reader.generation
        ingest(writer, [NEW])
        committed(writer)
        assert reader.catch_up()
        assert reader.generation == generation + 1 and len(reader) == 7
        for mode in ("dense", "bm25", "hybrid"):
            assert ids(search_text(reader, "volcanic sulfate aerosols", 3, mode=mode))[0] == NEW.id, mode
        assert ids(search_text(reader, "climate", 5, filters, mode="dense")) == [NEW.id]
        assert NEW.id in ids(similar_to_paper(reader, "2402.00003", 6, mode="dense"))

        # Only the categories change: no new vector, still logged, so the filter columns follow.
        ingest(writer, [Paper(**{**NEW.to_dict(), "categories": ["physics.geo-ph"]})])
        committed(writer)
        assert reader.catch_up()
        with pytest.raises(InvalidInput, match=r"no paper in this index has the category 'physics\.ao-ph'"):
            search_text(reader, "climate", 5, filters, mode="dense")
        assert ids(search_text(reader, "climate", 5, make_filters(categories=["physics.geo-ph"]), mode="dense")) == [NEW.id]

        delete(writer, [NEW.id])
        committed(writer)
        assert reader.catch_up()
        assert len(reader) == 6 and reader.index is not None and len(reader.index) == 6
        for mode in ("dense", "bm25", "hybrid"):
            assert NEW.id not in ids(search_text(reader, "volcanic sulfate aerosols", 6, mode=mode)), mode
        assert not reader.catch_up()  # nothing new: nothing to do


def test_a_reader_past_the_kept_log_reloads_the_saved_files(folder):
    # each write saves vectors.faiss, and each save forgets the whole log
    settings = Settings(show_progress=False, change_log_writes=0, index_save_min_changes=0)
    with open_library(settings, folder) as reader, open_library(settings, folder) as writer:
        ingest(writer, [NEW])
        ingest(writer, [OTHER])
        committed(writer)
        assert writer.store.changed_since(reader.generation) is None
        assert reader.catch_up()
        assert len(reader.index) == len(reader) == 8
        assert ids(search_text(reader, "coral reef bleaching", 1, mode="dense")) == [OTHER.id]
        assert ids(search_text(reader, "volcanic sulfate aerosols", 1, mode="bm25")) == [NEW.id]


def test_a_reader_catching_up_while_the_writer_saves_ends_in_step(folder):
    """With no log kept, every catch-up reloads vectors.faiss, which the writer keeps replacing:
    a file caught mid-save is refused (checksum) and the index built from the store instead."""
    settings = Settings(show_progress=False, change_log_writes=0, index_save_min_changes=0)
    papers = [Paper(id=f"2406.{n:05d}", title=f"Note {n} on sea ice", abstract=f"Arctic sea ice extent, season {n}.")
              for n in range(12)]
    with open_library(settings, folder) as reader, open_library(settings, folder) as writer:
        failures: list[BaseException] = []

        def write() -> None:
            try:
                for paper in papers:
                    ingest(writer, [paper])
                delete(writer, [paper.id for paper in papers[::2]])
            except BaseException as exc:
                failures.append(exc)

        reader.filter_columns()  # loaded now, so catching up must keep them in step
        thread = threading.Thread(target=write)
        thread.start()
        while thread.is_alive():
            reader.catch_up()
        thread.join()
        committed(writer)
        reader.catch_up()
        assert not failures
        assert sorted(reader.index.ids().tolist()) == reader.store.vector_pks().tolist()
        assert len(reader) == reader.store.count() == 12
        assert sorted(reader.filter_columns().pks.tolist()) == reader.store.vector_pks().tolist()


def test_a_writer_that_opened_before_another_writes_keeps_its_papers(folder, settings):
    """Both libraries were opened before either wrote: the second write catches up first, so the
    saved FAISS file and manifest hold both papers (check finds nothing to repair)."""
    with open_library(settings, folder) as first, open_library(settings, folder) as second:
        ingest(first, [NEW])
        ingest(second, [OTHER])
    with open_library(settings, folder) as library:
        report = check_library(library, repair=False)
        assert report.ok and report.repaired == [] and report.faiss == report.papers == 8


def test_a_second_writer_waits_for_the_first_then_fails_clearly(folder):
    quick = Settings(show_progress=False, writer_wait_seconds=0.3)
    with open_library(quick, folder) as first, open_library(quick, folder) as second:
        with first.writing():
            started = time.monotonic()
            with pytest.raises(WriterBusy, match=r"busy for 0\.3 s"):
                ingest(second, [OTHER])
            assert 0.3 <= time.monotonic() - started < 5
            assert search_text(second, "protein folding", 1, mode="dense")  # readers never wait
        # A waiting writer goes on as soon as the first is done.
        patient = Settings(show_progress=False, writer_wait_seconds=30)
        with open_library(patient, folder) as third:
            done = threading.Event()
            with first.writing():
                thread = threading.Thread(target=lambda: (ingest(third, [OTHER]), done.set()))
                thread.start()
                time.sleep(0.5)
                assert not done.is_set()
            thread.join(30)
            assert done.is_set() and third.store.count() == 7


def test_the_api_answers_503_while_another_writer_keeps_the_index(folder):
    from fastapi.testclient import TestClient

    from paperlens.api import create_app

    quick = Settings(show_progress=False, writer_wait_seconds=0.2, follow_seconds=0)
    with open_library(quick, folder) as other, open_library(quick, folder) as served:
        with TestClient(create_app(quick, served)) as client, other.writing():
            answer = client.post("/papers", json=[NEW.to_dict()])
            assert answer.status_code == 503 and "busy" in answer.json()["detail"]
            assert client.get("/search", params={"q": "protein folding"}).status_code == 200
        assert served.store.count() == 6  # nothing half-written


def test_a_server_starts_without_waiting_for_another_processes_write(folder):
    from paperlens.api import startup_check

    settings = Settings(show_progress=False, writer_wait_seconds=30)
    with open_library(settings, folder) as other, open_library(settings, folder) as served, other.writing():
        started = time.monotonic()
        report = startup_check(served)
        assert time.monotonic() - started < 5 and report.ok and report.papers == report.faiss == 6


# --- a live server beside other processes -----------------------------------------------------


def cli(*args: str, index: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "paperlens.cli", *args, "--index", str(index)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_a_running_server_sees_ingests_and_deletes_of_other_processes(folder, tmp_path):
    server = ServerProcess(folder, tmp_path / "server.log")
    try:
        http = httpx.Client(base_url=server.url, timeout=30)
        before = http.get("/health").json()
        assert before["papers"] == 6

        done = cli("ingest", str(write_jsonl(tmp_path / "new.jsonl", [NEW.to_dict()])), "--quiet", index=folder)
        assert done.returncode == 0, done.stderr

        def top(mode: str, **params) -> list[str]:
            answer = http.get("/search", params={"q": "volcanic eruptions sulfate aerosols", "mode": mode, **params})
            return [hit["id"] for hit in answer.json()["results"]]

        def health_moved() -> bool:
            health = http.get("/health").json()
            return health["papers"] == 7 and health["generation"] > before["generation"]

        eventually(health_moved, what="/health counts the new paper and the write")
        eventually(lambda: top("hybrid")[:1] == [NEW.id], what="hybrid search finds it")
        assert top("bm25")[:1] == [NEW.id]
        assert top("dense", category="physics.ao-ph") == [NEW.id]
        assert http.get(f"/papers/{NEW.id}").json()["title"] == NEW.title
        similar = http.get(f"/papers/{NEW.id}/similar", params={"k": 3})
        assert similar.status_code == 200 and NEW.id not in [hit["id"] for hit in similar.json()["results"]]

        done = cli("delete", NEW.id, index=folder)
        assert done.returncode == 0, done.stderr
        eventually(lambda: http.get(f"/papers/{NEW.id}").status_code == 404, what="the deleted paper is gone")
        eventually(lambda: NEW.id not in top("hybrid") + top("bm25") + top("dense"), what="no search finds it")
        eventually(lambda: http.get("/health").json()["papers"] == 6, what="/health counts one paper less")
        gone = http.get("/search", params={"q": "volcanic", "category": "physics.ao-ph"})
        assert gone.status_code == 422 and "physics.ao-ph" in gone.json()["detail"]  # no paper has it any more
    finally:
        server.kill()


def test_two_ingest_processes_at_once_beside_a_server_leave_a_sound_index(folder, tmp_path):
    server = ServerProcess(folder, tmp_path / "server.log")
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        files = [write_jsonl(tmp_path / f"{paper.id}.jsonl", [paper.to_dict()]) for paper in (NEW, OTHER)]
        procs = [subprocess.Popen([sys.executable, "-m", "paperlens.cli", "ingest", str(path), "--quiet", "--index", str(folder)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for path in files]
        outcomes = [(proc.wait(300), proc.stderr.read()) for proc in procs]
        for code, stderr in outcomes:  # each succeeds, or says in one line that the other kept the index busy
            assert code == 0 or (code == 1 and stderr.strip().count("\n") == 0 and "busy" in stderr), stderr
        added = 6 + sum(code == 0 for code, _ in outcomes)
        eventually(lambda: httpx.get(server.url + "/health").json()["papers"] == added, what="the server sees both")
        check = cli("check", "--no-repair", "--json", index=folder)
        assert check.returncode == 0, check.stdout + check.stderr
        assert '"ok": true' in check.stdout and f'"faiss": {added}' in check.stdout
    finally:
        server.kill()
