"""kill -9 at every named point of a write, then a restart: every acknowledged paper is served,
and whatever was in flight is either wholly there (stored and searchable) or wholly absent.

One server per kill point, chained: each restart first verifies what the previous one left."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from paperlens.faults import CRASH_ENV
from serverproc import ServerProcess

TOPICS = [
    ("Protein folding with attention networks", "We predict protein structure from amino acid sequences with attention."),
    ("Dark matter halos of dwarf galaxies", "Stellar kinematics constrain dark matter density profiles in dwarf galaxies."),
    ("Robot grasping from camera images", "A robot arm learns to grasp novel objects with reinforcement learning."),
    ("Coral reef bleaching and ocean heat", "Marine heatwaves bleach coral reefs; we model recovery after bleaching events."),
    ("Byzantine fault tolerant consensus", "A consensus protocol for replicated state machines tolerating malicious nodes."),
    ("Graphene superconductivity at magic angle", "Twisted bilayer graphene becomes superconducting near the magic angle."),
    ("Malaria transmission and mosquito nets", "Insecticide-treated bed nets reduce malaria transmission in rural villages."),
    ("Medieval Latin manuscript dating", "Handwriting features date medieval Latin manuscripts to within decades."),
    ("Volcanic ash and aviation safety", "Dispersion models forecast volcanic ash clouds that endanger jet engines."),
    ("Sourdough fermentation microbiology", "Lactic acid bacteria and wild yeasts shape the flavour of sourdough bread."),
    ("Glacier retreat in the Himalaya", "Satellite imagery measures the retreat of Himalayan glaciers since 1970."),
    ("Quantum error correction with surface codes", "Surface codes protect logical qubits against local noise on superconducting chips."),
]


def paper(n: int) -> dict:
    title, abstract = TOPICS[n % len(TOPICS)]
    return {"id": f"crash-{n}", "title": f"{title} ({n})", "abstract": abstract}


class Ledger:
    """What the clients were told: acknowledged papers must survive, acknowledged deletes must stick."""

    def __init__(self) -> None:
        self.present: dict[str, str] = {}  # id → title
        self.gone: set[str] = set()
        self.in_flight: dict[str, str] = {}  # id → title: sent, never answered (kept or lost, never half)


def verify(server: ServerProcess, ledger: Ledger) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for paper_id, title in ledger.present.items():
            response = client.get(f"/papers/{paper_id}")
            assert response.status_code == 200, (paper_id, response.text)
            assert response.json()["title"] == title
            assert_searchable(client, paper_id, title)
        for paper_id in ledger.gone:
            assert client.get(f"/papers/{paper_id}").status_code == 404, paper_id
        for paper_id in ledger.in_flight:
            response = client.get(f"/papers/{paper_id}")
            assert response.status_code in (200, 404)
            if response.status_code == 200:  # wholly there: searchable too
                assert_searchable(client, paper_id, response.json()["title"])
                ledger.present[paper_id] = response.json()["title"]
                ledger.gone.discard(paper_id)
            else:
                ledger.present.pop(paper_id, None)
                ledger.gone.add(paper_id)
        ledger.in_flight.clear()
        assert client.get("/health").json()["papers"] == len(ledger.present)


def assert_searchable(client: httpx.Client, paper_id: str, title: str) -> None:
    """Found by the default (hybrid) search and by the keyword index alone, which a crash can leave behind."""
    for mode in ("hybrid", "bm25"):
        hits = client.get("/search", params={"q": title, "k": 3, "mode": mode}).json()["results"]
        assert paper_id in [hit["id"] for hit in hits], (mode, paper_id, hits)


def post(server: ServerProcess, papers: list[dict]) -> httpx.Response:
    return httpx.post(server.url + "/papers", json=papers, timeout=60)


def write_until_killed(server: ServerProcess, request) -> None:
    """The request that reaches the crash point never gets an answer: the server dies under it."""
    with pytest.raises(httpx.TransportError):
        request()
    assert server.wait_dead() == -signal.SIGKILL


def answered_then_killed(server: ServerProcess, request) -> bool:
    """A crash point after the answer: the server dies once keywords/ is committed; whether the answer
    got out before it is a race. True when it did (the write is acknowledged)."""
    try:
        answered = request().status_code == 201
    except httpx.TransportError:
        answered = False
    assert server.wait_dead() == -signal.SIGKILL
    return answered


def test_kill_at_every_write_point_loses_nothing_acknowledged(tmp_path: Path):
    index, log, ledger = tmp_path / "index", tmp_path / "server.log", Ledger()
    counter = iter(range(1000))

    # 1. killed inside a delete, after its commit: the delete is in flight, the papers before it acknowledged
    server = ServerProcess(index, log, {CRASH_ENV: "delete:after-commit"}, create=True)
    first = [paper(next(counter)) for _ in range(3)]
    assert post(server, first).status_code == 201
    ledger.present.update({p["id"]: p["title"] for p in first})
    ledger.in_flight[first[0]["id"]] = ledger.present.pop(first[0]["id"])
    write_until_killed(server, lambda: httpx.delete(f"{server.url}/papers/{first[0]['id']}", timeout=60))

    # 2.–6. killed inside an ingest: after the commit, with the FAISS file written aside, before the
    # manifest, between FAISS and the keyword index (all before the answer), and after keywords/
    # committed (after the answer). Each repaired first by 'paperlens check', so the server's own
    # start-up rebuild cannot hit its crash point.
    previous = None
    for point in ("ingest:after-commit", "cache-applied:faiss", "index-save:before-rename", "persist:before-manifest",
                  "cache-applied:keywords"):
        repaired = run_check(index, repair=True)
        assert repaired["ok"] and repaired["repaired"], repaired
        if previous == "cache-applied:faiss":  # keywords/ lacked the paper the store and FAISS held
            assert any(note.startswith("rebuilt keywords/") for note in repaired["repaired"]), repaired
        previous = point
        # vectors.faiss saved after every write, so that a one-paper ingest reaches the save's crash points
        server = ServerProcess(index, log, {CRASH_ENV: point, "PAPERLENS_INDEX_SAVE_MIN_CHANGES": "0"})
        verify(server, ledger)
        new = paper(next(counter))
        ledger.in_flight[new["id"]] = new["title"]
        if point == "cache-applied:keywords":
            if answered_then_killed(server, lambda server=server, new=new: post(server, [new])):
                ledger.present[new["id"]] = ledger.in_flight.pop(new["id"])  # answered: it must survive
        else:
            write_until_killed(server, lambda server=server, new=new: post(server, [new]))
        if point == "index-save:before-rename":
            assert (index / "vectors.faiss.tmp").exists()

    # 7. killed at a random moment while a client ingests one paper after another (this server repairs
    # what step 6 left behind itself, at start-up)
    server = ServerProcess(index, log)
    verify(server, ledger)
    acked, sent = threading.Event(), []

    def client_loop() -> None:
        while True:
            new = paper(next(counter))
            sent.append(new)
            try:
                response = post(server, [new])
            except httpx.TransportError:
                return
            assert response.status_code == 201
            ledger.present[new["id"]] = new["title"]
            acked.set()

    worker = threading.Thread(target=client_loop, daemon=True)
    worker.start()
    assert acked.wait(120)
    time.sleep(random.uniform(0.0, 0.5))
    assert server.kill() == -signal.SIGKILL
    worker.join(60)
    for new in sent:
        if new["id"] not in ledger.present:
            ledger.in_flight[new["id"]] = new["title"]

    # 8. a clean restart serves everything acknowledged; the store and FAISS agree exactly
    server = ServerProcess(index, log)
    verify(server, ledger)
    assert len(ledger.present) >= 4
    server.kill()
    final = run_check(index, repair=False)
    assert final["ok"] and final["papers"] == final["vectors"] == final["faiss"] == len(ledger.present), final
    assert "vectors.faiss.tmp" not in {p.name for p in index.iterdir()}


def run_check(index: Path, repair: bool) -> dict:
    """'paperlens check' as a user runs it; exit 0 means nothing is left unrepaired."""
    flag = "--repair" if repair else "--no-repair"
    done = subprocess.run([sys.executable, "-m", "paperlens.cli", "check", flag, "--json", "--index", str(index)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)
