"""The HTTP API on a large collection: search and by-id latency, by-id QPS and memory at N papers.

    PYTHONPATH=src python benchmarks/scale.py --papers 1000000 [--index /tmp/paperlens-1m] [--requests 300]

Encoding a million abstracts takes ~14 hours on 2 cores, so the collection is made, not ingested:
paper i takes the text of a scifact-subset abstract with 20 % of its words dropped at random (so
BM25 sees varied lengths and term counts, not exact copies), and the vector speed.py's synthetic
sets use (two real embeddings mixed, the text's own abstract the larger share, plus noise). The
papers and vectors go into the store, then ``open_library`` builds keywords/ and vectors.faiss
from the store as it would after any crash: the real rebuild path, timed. The server is the real
``paperlens serve``; queries are scifact's claims and three-word cuts of them, encoded live.
The folder is kept (--index) so a second run measures without rebuilding.

Authors are synthetic: family names from ``AuthorPool`` drawn with a Zipf-like law (weight
1 / (rank + 20), 100k names, so the commonest is ~0.6 % of author slots, like the most frequent
surnames of a large bibliography), 1 to 8 authors a paper, written "First Last", "Last, F." or
"F. Last". The author-filtered searches ask for the commonest name and for one of rank 1,000.
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import itertools
import json
import random
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SCIFACT, header, percentile
from api_latency import (
    concurrent_rate,
    start_server,
    timed_requests,
    wait_healthy,
)
from paperlens.config import Settings
from paperlens.embed import model_identity, text_hash
from paperlens.library import INDEX_FILE, KEYWORD_DIR, open_library
from paperlens.papers import Paper, read_papers
from paperlens.search import make_filters
from paperlens.store import Store
from speed import real_embeddings

CATEGORIES = ["q-bio.GN", "q-bio.NC", "q-bio.CB", "physics.med-ph", "cs.LG", "stat.ML"]


class AuthorPool:
    """Synthetic people: family names made of syllables, drawn by a Zipf-like law; given names likewise."""

    SYLLABLES = ("ka", "lo", "ve", "min", "tar", "su", "ri", "hen", "do", "gal", "mo", "zu", "per", "an", "li", "wen",
                 "ko", "sa", "bel", "ni", "tro", "ma", "fei", "ra")
    FAMILIES = 100_000
    GIVEN = 2_000

    def __init__(self, rng: random.Random):
        self.rng = rng
        words = ("".join(parts) for n in (2, 3, 4) for parts in itertools.product(self.SYLLABLES, repeat=n))
        names = [w.capitalize() for w in itertools.islice(words, self.FAMILIES + self.GIVEN)]
        self.given, self.families = names[:self.GIVEN], names[self.GIVEN:]
        self.family_weights = list(itertools.accumulate(1 / (rank + 20) for rank in range(len(self.families))))
        self.given_weights = list(itertools.accumulate(1 / (rank + 5) for rank in range(len(self.given))))

    def share(self, rank: int) -> float:
        """The share of author slots that the family name of this rank takes."""
        return (1 / (rank + 20)) / self.family_weights[-1]

    def authors(self) -> list[str]:
        rng, people = self.rng, []
        for _ in range(rng.randint(1, 8)):
            family = self.families[bisect.bisect(self.family_weights, rng.random() * self.family_weights[-1])]
            given = self.given[bisect.bisect(self.given_weights, rng.random() * self.given_weights[-1])]
            style = rng.random()
            people.append(f"{given} {family}" if style < 0.6 else f"{family}, {given[0]}." if style < 0.85 else f"{given[0]}. {family}")
        return people


def make_papers(parents: list[Paper], start: int, count: int, rng: random.Random,
                pool: AuthorPool | None = None) -> tuple[list[Paper], list[int]]:
    """Papers start..start+count and the parent abstract each one's text comes from."""
    papers, sources = [], []
    for i in range(start, start + count):
        source = rng.randrange(len(parents))
        words = [w for w in parents[source].abstract.split() if rng.random() >= 0.2]
        papers.append(Paper(
            f"syn-{i}", parents[source].title, " ".join(words), authors=pool.authors() if pool else ["A. Author"],
            date=f"{2000 + rng.randrange(26)}-{1 + rng.randrange(12):02d}-01", categories=[rng.choice(CATEGORIES)],
            popularity=float(rng.randrange(100)),
        ))
        sources.append(source)
    return papers, sources


def fill_store(folder: Path, n: int, base: np.ndarray, parents: list[Paper], batch: int = 20_000, seed: int = 0) -> float:
    """Write n papers and their vectors straight into a new store; seconds taken."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    store = Store(folder / "papers.sqlite")
    rng, vector_rng = random.Random(seed), np.random.default_rng(seed)
    pool = AuthorPool(random.Random(seed + 1))  # its own stream: the other fields stay as before
    for start in range(0, n, batch):
        papers, sources = make_papers(parents, start, min(batch, n - start), rng, pool)
        share = vector_rng.uniform(0.5, 1.0, size=(len(papers), 1)).astype(np.float32)
        vectors = share * base[sources] + (1 - share) * base[vector_rng.integers(len(base), size=len(papers))]
        vectors += vector_rng.normal(0, 0.03, size=vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with store.transaction():
            outcomes = store.upsert_papers(papers, [text_hash(p.text) for p in papers])
            store.put_vectors([o.pk for o in outcomes], vectors)
        print(f"  store: {start + len(papers):,} papers", file=sys.stderr, end="\r")
    with store.transaction():
        store.set_meta("model", model_identity("default"))
        store.set_meta("dim", str(base.shape[1]))
        store.bump_generation()
    store.close()
    return time.perf_counter() - started


def build(folder: Path, n: int) -> dict[str, float]:
    """The collection at ``folder`` (made if absent), opened once so its keyword and FAISS files exist."""
    seconds = {}
    if not (folder / "papers.sqlite").exists():
        parents = read_papers(SCIFACT).papers
        base = real_embeddings(len(parents))
        seconds["store"] = fill_store(folder, n, base, parents)
    started = time.perf_counter()
    library = open_library(Settings(index=folder, show_progress=False))
    seconds["open (rebuilds keywords/ and FAISS when absent)"] = time.perf_counter() - started
    for note in library.recovered:
        print(f"  {note}", file=sys.stderr)
    library.close()
    store = Store(folder / "papers.sqlite")
    started = time.perf_counter()
    store.filter_columns()
    seconds["filter columns: load whole (server start)"] = time.perf_counter() - started
    store.close()
    return seconds


def author_queries(folder: Path, n: int) -> list[tuple[str, str]]:
    """(label, name) of the author filters measured: the commonest family name and one of rank 1,000,
    each with the share of papers it keeps (from the filter columns)."""
    pool = AuthorPool(random.Random(0))
    store = Store(folder / "papers.sqlite")
    columns = store.filter_columns()
    store.close()
    queries = []
    for rank, initial in ((0, ""), (1000, "")):
        name = f"{initial}{pool.families[rank]}"
        kept = len(columns.allowed(make_filters(authors=[name]))) / n
        queries.append((f"author={name} (family rank {rank + 1}): {kept:.2%}", name))
    return queries


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def folder_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def timed_writes(port: int, count: int) -> dict[str, list[float]]:
    """One-paper ingests, then their deletes, one at a time: what a write costs at this size."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    timings: dict[str, list[float]] = {"POST /papers (1 new paper)": [], "DELETE /papers/{id}": []}
    for i in range(count):
        body = json.dumps([{"id": f"bench-write-{i}", "title": f"Write probe {i}",
                            "abstract": "A probe paper on cardiac regeneration in zebrafish, written by the scale benchmark."}])
        start = time.perf_counter()
        conn.request("POST", "/papers", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        timings["POST /papers (1 new paper)"].append((time.perf_counter() - start) * 1000)
        if response.status != 201:
            raise SystemExit(f"POST /papers answered {response.status}")
    for i in range(count):
        start = time.perf_counter()
        conn.request("DELETE", f"/papers/bench-write-{i}")
        response = conn.getresponse()
        response.read()
        timings["DELETE /papers/{id}"].append((time.perf_counter() - start) * 1000)
    return timings


def measure(folder: Path, n: int, requests: int, clients: int, seconds: float, writes: int,
            only_writes: bool = False) -> tuple[dict[str, list[float]], float | None, float]:
    # Queries cycle through scifact's claims: with query vectors remembered most would skip encoding.
    port, server = start_server(folder)
    try:
        wait_healthy(port, server, timeout=1800)
        if only_writes:
            timed_requests(port, ["/search?q=warm+up&k=10"] * 5)
            return timed_writes(port, writes), None, rss_mb(server.pid)
        claims = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()]
        short = [" ".join(q.split()[:3]) for q in claims]
        rng = random.Random(1)
        ids = [f"syn-{rng.randrange(n)}" for _ in range(requests)]
        def search(qs: list[str], mode: str) -> list[str]:
            return ["/search?" + urlencode({"q": qs[i % len(qs)], "k": 10, "mode": mode}) for i in range(requests)]

        similar = [f"/papers/{quote(paper_id)}/similar?k=10" for paper_id in ids]  # the default mode: hybrid
        timed_requests(port, search(claims, "hybrid")[:20] + similar[:20])  # warm-up: model, pages of the files
        latencies = {
            "GET /search (claims, hybrid)": timed_requests(port, search(claims, "hybrid")),
            "GET /search (3 words, hybrid)": timed_requests(port, search(short, "hybrid")),
            "GET /search (claims, dense)": timed_requests(port, search(claims, "dense")),
            "GET /search (claims, bm25)": timed_requests(port, search(claims, "bm25")),
            "GET /papers/{id}/similar (hybrid)": timed_requests(port, similar),
            "GET /papers/{id}/similar (dense)": timed_requests(port, [path + "&mode=dense" for path in similar]),
            "GET /papers/{id}/similar (bm25)": timed_requests(port, [path + "&mode=bm25" for path in similar]),
            "GET /search (claims, hybrid, since=2020: 23 %)": timed_requests(port, [p + "&since=2020" for p in search(claims, "hybrid")]),
            "GET /search (claims, hybrid, category cs.LG: 17 %)": timed_requests(port, [p + "&category=cs.LG" for p in search(claims, "hybrid")]),
            "GET /search (claims, hybrid, since=2025-10: 1 %)": timed_requests(port, [p + "&since=2025-10" for p in search(claims, "hybrid")]),
            **{f"GET /search (claims, hybrid, {label})": timed_requests(port, [p + "&" + urlencode({"author": name})
                                                                               for p in search(claims, "hybrid")])
               for label, name in author_queries(folder, n)},
            "GET /health": timed_requests(port, ["/health"] * requests),
        }
        qps = concurrent_rate(port, similar, clients, seconds)
        latencies.update(timed_writes(port, writes))
        rss = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return latencies, qps, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--index", type=Path, default=None, help="folder of the collection, kept between runs")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writes", type=int, default=10, help="one-paper ingests (then deletes) timed at the end")
    parser.add_argument("--only-writes", action="store_true", help="time the one-paper writes alone, no searches")
    args = parser.parse_args()
    folder = args.index or Path(f"/tmp/paperlens-scale-{args.papers}")
    build_seconds = build(folder, args.papers)
    latencies, qps, rss = measure(folder, args.papers, args.requests, args.clients, args.seconds, args.writes, args.only_writes)
    manifest = json.loads((folder / "manifest.json").read_text())

    print(header(f"paperlens HTTP API at {args.papers:,} papers ({manifest['layout']}, {manifest['index_params']})"))
    for step, value in build_seconds.items():
        print(f"# build: {step}: {value:.1f} s")
    print("\n| request | p50 ms | p99 ms | n |\n|---|---|---|---|")
    for name, values in latencies.items():
        print(f"| {name} | {percentile(values, 50):.2f} | {percentile(values, 99):.2f} | {len(values)} |")
    if qps is not None:
        print(f"| by-id similar (hybrid), {args.clients} concurrent clients | {qps:.0f} requests/s | | |")
    sizes = {name: folder_mb(folder / name) for name in (INDEX_FILE, KEYWORD_DIR, "papers.sqlite")}
    print("\n| on disk / in memory | MB | bytes a paper |\n|---|---|---|")
    for name, mb in sizes.items():
        print(f"| {name} | {mb:,.0f} | {mb * 1e6 / args.papers:,.0f} |")
    print(f"| server RSS after the run | {rss:,.0f} | {rss * 1.048576e6 / args.papers:,.0f} |")


if __name__ == "__main__":
    main()
