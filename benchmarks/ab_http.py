"""Two (or more) servers answering in turns: a before/after comparison through HTTP that this
machine's swings (a third of the speed, from one hour to the next) cannot fake.

    PYTHONPATH=src python benchmarks/ab_http.py before=/tmp/pl1m:/path/to/old/src after=/tmp/pl1m-new [--requests 300]

Each LABEL=FOLDER[:PYTHONPATH] starts a real ``paperlens serve`` on that index folder, with that
source tree first on its path (another checkout of paperlens: the code before a change). Requests
go in blocks of 10 to each server in turn, for each kind: by-id dense similar (benchmarks/scale.py's
random ids, for its synthetic collections), hybrid search with scifact's claims and with their
first three words, dense search with the claims, and hybrid search with the claims under scale.py's
two broad filters. No query vector is remembered.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SCIFACT, header, median, percentile
from api_latency import start_server, timed_requests, wait_healthy

BLOCK = 10


def request_kinds(papers: int, requests: int) -> dict[str, list[str]]:
    claims = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()]
    rng = random.Random(1)
    ids = [f"syn-{rng.randrange(papers)}" for _ in range(requests)]

    def search(texts: list[str], mode: str, **filters: str) -> list[str]:
        return ["/search?" + urlencode({"q": texts[i % len(texts)], "k": 10, "mode": mode, **filters}) for i in range(requests)]

    return {
        "GET /papers/{id}/similar?mode=dense": [f"/papers/{quote(paper_id)}/similar?k=10&mode=dense" for paper_id in ids],
        "GET /search hybrid, claims": search(claims, "hybrid"),
        "GET /search hybrid, 3 words": search([" ".join(claim.split()[:3]) for claim in claims], "hybrid"),
        "GET /search dense, claims": search(claims, "dense"),
        # scale.py's filters: since=2020 keeps 23 % of its papers, category=cs.LG 17 %
        "GET /search hybrid, claims, since=2020": search(claims, "hybrid", since="2020"),
        "GET /search hybrid, claims, category=cs.LG": search(claims, "hybrid", category="cs.LG"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("servers", nargs="+", metavar="LABEL=FOLDER[:PYTHONPATH]")
    parser.add_argument("--requests", type=int, default=300, help="of each kind, to each server")
    parser.add_argument("--papers", type=int, default=1_000_000, help="the synthetic collection's size (its ids are syn-0 ...)")
    args = parser.parse_args()
    specs = {}
    for item in args.servers:
        label, _, spec = item.partition("=")
        folder, _, source = spec.partition(":")
        if not label or not folder:
            parser.error(f"{item!r}: expected LABEL=FOLDER[:PYTHONPATH]")
        specs[label] = (folder, source)
    servers = {label: start_server(folder, source) for label, (folder, source) in specs.items()}
    try:
        for port, server in servers.values():
            wait_healthy(port, server, timeout=1800)
        kinds = request_kinds(args.papers, args.requests)
        for port, _ in servers.values():  # warm-up: model, pages of the files
            for paths in kinds.values():
                timed_requests(port, paths[:30])
        print(header(f"{' against '.join(servers)}, answering in turns"))
        print("\n| request | " + " | ".join(f"{label} p50 / p99 ms" for label in servers) + " |")
        print("|---|" + "---|" * len(servers))
        for kind, paths in kinds.items():
            took: dict[str, list[float]] = {label: [] for label in servers}
            for begin in range(0, len(paths), BLOCK):
                for label, (port, _) in servers.items():
                    took[label] += timed_requests(port, paths[begin:begin + BLOCK])
            print(f"| {kind} | " + " | ".join(f"{median(v):.2f} / {percentile(v, 99):.2f}" for v in took.values()) + " |", flush=True)
    finally:
        for _, server in servers.values():
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
