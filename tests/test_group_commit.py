"""Group commit (commits.py): writes that arrive together share one store commit and one cache
update, each keeps its own answer, and a kill around a group loses nothing acknowledged."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import hold_calls, topic_papers
from paperlens.api import create_app
from paperlens.caches import ChangeSet
from paperlens.config import Settings
from paperlens.errors import WriterBusy
from paperlens.faults import CRASH_ENV
from paperlens.keyword import KeywordIndex, KeywordView
from paperlens.library import Library, check_library, delete, ingest, open_library
from paperlens.papers import Paper
from paperlens.search import search_text
from serverproc import ServerProcess
from test_crash import Ledger, paper, verify


def new_paper(n: int) -> Paper:
    return Paper(id=f"2501.{n:05d}", title=f"Coral reef bleaching survey {n}", abstract=f"Reef number {n} bleached in the heatwave.")


def queued_together(library: Library, writes: list[Callable[[], object]]) -> list[object]:
    """Run ``writes`` in threads while this thread holds the writer lock, release it once all of
    them are queued (an ingest encodes first), so they commit as one group; their answers or errors."""
    answers: list[object] = [None] * len(writes)

    def run(n: int) -> None:
        try:
            answers[n] = writes[n]()
        except Exception as exc:
            answers[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(writes))]
    with library.writing():
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while library.commits.waiting < len(writes):
            assert time.monotonic() < deadline, f"only {library.commits.waiting} of {len(writes)} writes queued"
            time.sleep(0.01)
    for thread in threads:
        thread.join(120)
    return answers


def test_merged_change_keeps_the_last_write_of_each_paper():
    vector = np.ones((1, 2), np.float32)
    merged = ChangeSet.merged([
        ChangeSet(0, rows=[(1, "a", "")], vectors=vector),
        ChangeSet(0, removed=[1, 2]),
        ChangeSet(0, rows=[(2, "b", "")], vectors=vector * 2, refreshed=[3]),
        ChangeSet(0, refreshed=[2]),
    ], 7)
    assert merged.generation == 7
    assert merged.rows == [(2, "b", "")] and merged.vectors.tolist() == [[2.0, 2.0]]
    assert merged.removed == [1] and merged.refreshed == [3]


def test_concurrent_writes_share_one_commit_and_a_failing_one_fails_alone(small_library):
    library = small_library
    groups = library.commits.groups

    def refuse() -> None:
        raise RuntimeError("refused by the caller")

    answers = queued_together(library, [
        lambda: ingest(library, [new_paper(1)]),
        lambda: ingest(library, [new_paper(2)], within=refuse),
        lambda: delete(library, ["2401.00001"]),
        lambda: ingest(library, [new_paper(3), new_paper(4)]),
        lambda: delete(library, ["2401.99999"]),
    ])
    assert library.commits.groups == groups + 1, "the five writes were not one group"
    assert answers[0].added == ["2501.00001"]
    assert isinstance(answers[1], RuntimeError) and "refused" in str(answers[1])
    assert answers[2] == ["2401.00001"]
    assert sorted(answers[3].added) == ["2501.00003", "2501.00004"]
    assert answers[4] == []
    store_ids = {stored.paper.id for stored in library.store.get_many(library.store.vector_pks().tolist()).values()}
    assert store_ids == {p.id for p in topic_papers()} - {"2401.00001"} | {"2501.00001", "2501.00003", "2501.00004"}
    assert len(library.index) == len(library.keywords) == len(store_ids) == library.store.count()
    report = check_library(library, repair=False, quick=True)
    assert report.ok, report.problems
    # What a reopened library sees: the group's writes, nothing of the failed one.
    with open_library(Settings(index=library.folder)) as reopened:
        assert len(reopened.index) == len(reopened.keywords) == len(store_ids)


def test_writes_behind_a_busy_writer_fail_and_write_nothing(tmp_path):
    settings = Settings(index=tmp_path / "index", writer_wait_seconds=0.5)
    with open_library(settings, create=True) as library:
        ingest(library, topic_papers())
        with open_library(settings) as other:  # another writer of the folder, as a CLI beside a server is
            answers = [None] * 3

            def write(n: int) -> None:
                try:
                    answers[n] = ingest(library, [new_paper(n)]) if n else delete(library, ["2401.00002"])
                except Exception as exc:
                    answers[n] = exc

            with other.writing():
                threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
        assert all(isinstance(answer, WriterBusy) for answer in answers), answers
        assert library.commits.waiting == 0
        assert library.store.count() == len(topic_papers())
        assert ingest(library, [new_paper(9)]).added == ["2501.00009"]


def test_http_writes_that_arrive_together_are_all_acknowledged(tmp_path):
    with open_library(Settings(index=tmp_path / "index"), create=True) as library:
        ingest(library, topic_papers())
        with TestClient(create_app(library.settings, library=library)) as client:
            user = client.post("/users", json={"name": "reader"}).json()
            headers = {"X-User-Token": user["token"]} if user.get("token") else {}
            groups = library.commits.groups
            fresh = [{"id": f"2502.{n:05d}", "title": f"Volcanic ash forecast {n}", "abstract": f"Ash cloud number {n}."}
                     for n in range(6)]
            writes = [lambda body=body: client.post("/papers", json=[body]) for body in fresh]
            writes += [lambda: client.delete("/papers/2402.00003"), lambda: client.delete("/papers/2402.99999")]
            answers = queued_together(library, writes)
            assert [a.status_code for a in answers] == [201] * 6 + [200, 404], [a.text for a in answers]
            assert library.commits.groups == groups + 1
            # A like and an invalid paper beside a burst of writes: the like is answered, the bad paper alone refused.
            likes = [lambda n=n: client.post(f"/users/{user['id']}/interactions", json={"paper_id": f"2502.{n:05d}", "kind": "like"},
                                             headers=headers) for n in range(3)]
            bad = [lambda: client.post("/papers", json=[{"id": "bad id with spaces", "title": "x", "abstract": "y"}])]
            more = [lambda n=n: client.post("/papers", json=[{"id": f"2503.{n:05d}", "title": f"Glacier melt {n}", "abstract": "Ice."}])
                    for n in range(3)]
            results: list[httpx.Response] = [None] * 7
            threads = [threading.Thread(target=lambda i=i, call=call: results.__setitem__(i, call())) for i, call in enumerate(likes + bad + more)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert [r.status_code for r in results[:3]] == [201] * 3
            assert 400 <= results[3].status_code < 500 and "detail" in results[3].json()
            assert [r.status_code for r in results[4:]] == [201] * 3
            for body in fresh:
                assert client.get(f"/papers/{body['id']}").status_code == 200
                hits = client.get("/search", params={"q": body["title"], "k": 3, "mode": "bm25"}).json()["results"]
                assert body["id"] in [hit["id"] for hit in hits]
            assert client.get("/papers/2402.00003").status_code == 404
            liked = client.get(f"/users/{user['id']}/interactions", params={"kind": "like"}, headers=headers).json()["interactions"]
            assert {item["paper_id"] for item in liked} == {f"2502.{n:05d}" for n in range(3)}
            assert client.get("/health").json()["papers"] == 6 - 1 + 6 + 3
            metrics = client.get("/metrics").text
            assert f"paperlens_write_groups_total {float(library.commits.groups)}" in metrics
            assert f"paperlens_grouped_writes_total {float(library.commits.writes)}" in metrics


def concurrent_posts(server: ServerProcess, bodies: list[dict]) -> list[httpx.Response | Exception]:
    answers: list[httpx.Response | Exception] = [None] * len(bodies)

    def send(n: int) -> None:
        try:
            answers[n] = httpx.post(server.url + "/papers", json=[bodies[n]], timeout=120)
        except httpx.TransportError as exc:
            answers[n] = exc

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return answers


def test_kill_inside_and_after_a_group_loses_nothing_acknowledged(tmp_path: Path):
    index, log, ledger = tmp_path / "index", tmp_path / "server.log", Ledger()
    # 1. concurrent writes acknowledged, then kill -9: every one of them is served after a restart
    server = ServerProcess(index, log, create=True)
    bodies = [paper(n) for n in range(8)]
    answers = concurrent_posts(server, bodies)
    assert all(isinstance(a, httpx.Response) and a.status_code == 201 for a in answers), answers
    ledger.present.update({body["id"]: body["title"] for body in bodies})
    assert server.kill() == -signal.SIGKILL

    # 2. killed after a group's store commit, before any cache and any answer: each write of it is
    # wholly there after a restart (stored, in both indexes) or wholly absent; the first group is there
    server = ServerProcess(index, log, {CRASH_ENV: "group:after-commit"})
    verify(server, ledger)
    bodies = [paper(n) for n in range(8, 14)]
    answers = concurrent_posts(server, bodies)
    assert all(isinstance(a, httpx.TransportError) for a in answers), answers
    assert server.wait_dead() == -signal.SIGKILL
    ledger.in_flight.update({body["id"]: body["title"] for body in bodies})

    server = ServerProcess(index, log)
    try:
        before = len(ledger.present)
        verify(server, ledger)
        assert len(ledger.present) > before, "the committed group was lost"
    finally:
        server.kill()



def test_writes_are_answered_before_keywords_commit_and_searches_read_them_meanwhile(small_library, monkeypatch):
    """An ingest is answered once the store and FAISS hold it; keywords/ commits after. A search of
    the same process started after the answer, while that commit is still in flight, finds the
    written papers by keyword without waiting for it (a KeywordView), a re-written paper by its new
    text and not a deleted one, and answers as it does once the commit has landed."""
    library = small_library
    writing, release = hold_calls(monkeypatch, library.keyword_cache.index, "write")
    new = Paper(id="2501.00777", title="Permafrost thaw releases methane", abstract="Arctic permafrost thaw emits methane from old carbon.")
    rewritten = Paper(id="2402.00004", title="Methane seeps on the Arctic shelf", abstract="Subsea permafrost leaks methane bubbles.")
    answers = queued_together(library, [lambda: ingest(library, [new, rewritten]), lambda: delete(library, ["2401.00001"])])
    assert answers[1] == ["2401.00001"], answers  # both answered, as one group
    assert writing.wait(60) and not release.is_set()  # keywords/ commits after the answer
    assert isinstance(library.keywords, KeywordView)
    queries = [("permafrost methane", "bm25"), ("methane carbon arctic", "hybrid"), ("protein structure", "bm25"), ("dark matter galaxies", "hybrid"),
               ("dwarf galaxies stellar kinematics", "bm25")]
    during = {query: [(h.id, h.score) for h in search_text(library, query, k=5, mode=mode)] for query, mode in queries}  # no wait: the commit is held
    assert not release.is_set()
    assert "2501.00777" in [i for i, _ in during["methane carbon arctic"]]
    assert "2402.00004" in [i for i, _ in during["permafrost methane"]]  # by its new text
    assert "2402.00004" not in [i for i, _ in during["dwarf galaxies stellar kinematics"]]  # nor by its old one
    assert "2401.00001" not in [i for i, _ in during["protein structure"]]
    release.set()
    library.keyword_cache.wait_settled(60)
    assert isinstance(library.keywords, KeywordIndex)
    after = {query: [(h.id, h.score) for h in search_text(library, query, k=5, mode=mode)] for query, mode in queries}
    for query, mode in queries:
        assert [i for i, _ in during[query]] == [i for i, _ in after[query]], query
        if mode == "bm25":  # the committed idf; the average length was the snapshot's (two papers of six move it here)
            assert [s for _, s in during[query]] == pytest.approx([s for _, s in after[query]], rel=0.05), query
    assert during["permafrost methane"][0][0] in {"2501.00777", "2402.00004"}


def test_a_failed_keyword_commit_after_the_answer_is_taken_up_by_the_next_write(small_library, monkeypatch, caplog):
    library = small_library
    keywords = library.keyword_cache.index
    real_write, calls = keywords.write, []

    def failing_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise OSError("No space left on device")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(keywords, "write", failing_once)
    first = Paper(id="2501.00801", title="Permafrost thaw releases methane", abstract="Arctic permafrost thaw emits methane from old carbon.")
    second = Paper(id="2501.00802", title="Kelp forests store blue carbon", abstract="Coastal kelp forests sequester carbon in sediments.")
    assert ingest(library, [first]).added == ["2501.00801"]  # answered: it is in the store
    library.keyword_cache.wait_settled(60)  # the failed commit has ended
    assert "keywords/" in caplog.text and "No space left on device" in caplog.text
    assert ingest(library, [second]).added == ["2501.00802"]
    for query, paper_id in (("permafrost methane", "2501.00801"), ("kelp blue carbon", "2501.00802")):
        assert search_text(library, query, k=1, mode="bm25")[0].id == paper_id
    library.keyword_cache.wait_settled(60)
    assert library.manifest.keyword_generation == library.store.generation()
    with open_library(Settings(index=library.folder)) as reopened:
        report = check_library(reopened, repair=False)
        assert report.ok and not report.problems, report


def test_groups_in_a_row_share_one_keyword_commit(small_library, monkeypatch):
    """Writes that queue while the committer keeps the lock after a group (the linger) are committed
    and answered group by group at once; keywords/ takes them all in one commit, before the lock
    goes, and searches read them meanwhile. The batch's paper bound ends it early."""
    from paperlens import commits

    library = small_library
    keywords = library.keyword_cache.index
    real_write, commits_of = keywords.write, []

    def counted(rows, removed, generation, *args, **kwargs):
        rows = list(rows)
        commits_of.append(sorted(row[0] for row in rows))
        return real_write(rows, removed, generation, *args, **kwargs)

    monkeypatch.setattr(keywords, "write", counted)
    monkeypatch.setattr(commits, "KEYWORD_LINGER_SECONDS", 2.0)
    monkeypatch.setattr(commits, "KEYWORD_BATCH_SECONDS", 60.0)
    groups = library.commits.groups
    first = Paper(id="2501.00901", title="Permafrost thaw releases methane", abstract="Arctic permafrost thaw emits methane from old carbon.")
    second = Paper(id="2501.00902", title="Kelp forests store blue carbon", abstract="Coastal kelp forests sequester carbon in sediments.")
    assert ingest(library, [first]).added == ["2501.00901"]
    assert ingest(library, [second]).added == ["2501.00902"]
    assert delete(library, ["2401.00001"]) == ["2401.00001"]
    assert library.commits.groups == groups + 3 and commits_of == []  # three answers, no keywords/ commit yet
    assert search_text(library, "permafrost methane", k=1, mode="bm25")[0].id == "2501.00901"
    assert search_text(library, "kelp blue carbon", k=1, mode="bm25")[0].id == "2501.00902"
    library.keyword_cache.wait_settled(60)  # the linger ran out: one commit took all three
    assert len(commits_of) == 1 and library.manifest.keyword_generation == library.store.generation()
    assert "2401.00001" not in [h.id for h in search_text(library, "protein structure", k=10, mode="bm25")]

    monkeypatch.setattr(commits, "KEYWORD_BATCH_PAPERS", 2)  # the second paper ends this batch, long before the linger
    started = time.monotonic()
    for n in (903, 904):
        ingest(library, [Paper(id=f"2501.00{n}", title=f"Seagrass meadow {n}", abstract="Seagrass meadows trap carbon.")])
    library.keyword_cache.wait_settled(60)
    assert len(commits_of) == 2 and time.monotonic() - started < 2.0
    with open_library(Settings(index=library.folder)) as reopened:
        report = check_library(reopened, repair=False)
        assert report.ok and not report.problems, report
