"""How fast a library follows another process's writes (Library.catch_up), and how soon a running
`paperlens serve` answers with a paper a `paperlens ingest` process has just added.

    python benchmarks/follow.py [--rounds 5]

In process: two opened libraries of one folder (40 papers of the demo corpus), one writing,
one catching up: the cost of a catch-up that finds nothing (what a server pays every
PAPERLENS_FOLLOW_SECONDS) and of one after a write. Live: a real server and real CLI processes;
the time from the ingest (or delete) process's exit until /search reflects it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from _common import REPO, header, median
from paperlens.config import Settings
from paperlens.data import DEMO_CORPUS
from paperlens.library import delete, ingest, open_library
from paperlens.papers import read_papers

sys.path.insert(0, str(REPO / "tests"))
from serverproc import ServerProcess


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def in_process(folder: Path, papers: list, rounds: int) -> list[tuple[str, float]]:
    settings = Settings(show_progress=False)
    rows = []
    with open_library(settings, folder) as reader, open_library(settings, folder) as writer:
        idle = [timed(reader.catch_up) for _ in range(200)]
        rows.append(("catch-up, nothing new", median(idle) * 1e3))
        one, batch, removed = [], [], []
        for n in range(rounds):
            ingest(writer, [papers[n]])
            one.append(timed(reader.catch_up))
            delete(writer, [papers[n].id])
            removed.append(timed(reader.catch_up))
        for _ in range(rounds):
            ingest(writer, papers[:10])
            batch.append(timed(reader.catch_up))
            delete(writer, [paper.id for paper in papers[:10]])
            reader.catch_up()
        rows += [("catch-up after a 1-paper ingest", median(one) * 1e3), ("catch-up after a 1-paper delete", median(removed) * 1e3),
                 ("catch-up after a 10-paper ingest", median(batch) * 1e3)]
    return rows


def live(folder: Path, papers: list, rounds: int, work: Path) -> list[tuple[str, float]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = ServerProcess(folder, work / "server.log")
    seen, gone = [], []
    try:
        for n in range(rounds):
            paper = papers[n]
            path = work / f"{paper.id}.jsonl"
            path.write_text(json.dumps(paper.to_dict()) + "\n")
            subprocess.run([sys.executable, "-m", "paperlens.cli", "ingest", str(path), "--quiet", "--index", str(folder)],
                           env=env, check=True, capture_output=True)
            start = time.perf_counter()
            while paper.id not in [hit["id"] for hit in httpx.get(server.url + "/search", params={"q": paper.title, "mode": "bm25"}).json()["results"]]:
                time.sleep(0.02)
            seen.append(time.perf_counter() - start)
            subprocess.run([sys.executable, "-m", "paperlens.cli", "delete", paper.id, "--index", str(folder)],
                           env=env, check=True, capture_output=True)
            start = time.perf_counter()
            while httpx.get(server.url + f"/papers/{paper.id}").status_code != 404 or httpx.get(server.url + "/health").json()["papers"] != 40:
                time.sleep(0.02)
            gone.append(time.perf_counter() - start)
    finally:
        server.kill()
    return [("server: ingest process exit -> found by /search (bm25)", median(seen) * 1e3),
            ("server: delete process exit -> 404 and /health count", median(gone) * 1e3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    papers = read_papers(DEMO_CORPUS).papers
    held, extra = papers[:40], papers[40:]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "index"
        with open_library(Settings(show_progress=False), folder, create=True) as library:
            ingest(library, held)
        rows = in_process(folder, extra, min(args.rounds, len(extra)))
        rows += live(folder, extra, min(args.rounds, len(extra)), Path(tmp))
    print(header("following another process's writes (demo corpus, 40 papers held)"))
    print(f"| what | median ms ({args.rounds} rounds; idle: 200) |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
