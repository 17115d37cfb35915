"""How far a filter should widen the approximate search: agreement and time by filter_widen_power.

    PYTHONPATH=src python benchmarks/filters.py --index /tmp/paperlens-scale-1000000 [--queries 1000]

A filter that keeps a share s of the papers widens HNSW's efSearch (IVF's nprobe) by
(1/s) ** power (Settings.filter_widen_power). For each power and each of scale.py's filters this
prints, over claim-like queries (scifact's claims, then the first sentence of each scifact
abstract, each once), the FAISS time, the dense top 10 against the exact filtered top 10 (every
allowed paper's stored vector scored), and the hybrid top 10 against the hybrid top 10 with
power 1 (the widest: its filtered top 100 is as complete as an unfiltered one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SCIFACT, header, median
from paperlens.config import Settings
from paperlens.library import open_library
from paperlens.search import allowed_pks, make_filters, rank_by_vector, rank_text

FILTERS = {"since=2020": make_filters(since="2020"), "category cs.LG": make_filters(categories=["cs.LG"]),
           "since=2025-06": make_filters(since="2025-06")}
POWERS = (1.0, 0.5, 0.25, 0.0)  # the first is the reference of the hybrid column


def claim_like_queries(count: int) -> list[str]:
    """scifact's claims, then the first sentence of each abstract (up to 200 characters), each once."""
    claims = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()]
    firsts = [json.loads(line)["text"].split(". ")[0][:200] for line in (SCIFACT / "corpus.jsonl").open()]
    return list(dict.fromkeys(claims + [text for text in firsts if len(text.split()) >= 5]))[:count]


def overlap(a: list[int], b: list[int]) -> float:
    return len(set(a) & set(b)) / max(1, len(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--powers", default=",".join(map(str, POWERS)), help="comma-separated, the widest first")
    args = parser.parse_args()
    queries = claim_like_queries(args.queries)
    rows = []
    with open_library(Settings(index=args.index, show_progress=False, query_cache=max(args.queries, 1024))) as library:
        # Encoded once each and remembered (Settings.query_cache): the hybrid searches below reuse them.
        vectors = np.stack([library.encoder.encode_query(query) for query in queries])
        index = library.index
        # The unfiltered search's own agreement with exact search: what a filtered one should keep.
        best = [np.full(10, -np.inf, dtype=np.float32) for _ in queries]
        best_pks = [np.zeros(10, dtype=np.int64) for _ in queries]
        for pks, stored in library.store.iter_vectors():
            scores = vectors @ stored.T
            for n in range(len(queries)):
                merged = np.concatenate([best[n], scores[n]])
                top = np.argsort(-merged, kind="stable")[:10]
                best[n], best_pks[n] = merged[top], np.concatenate([best_pks[n], pks])[top]
        unfiltered_ms, unfiltered_agree = [], []
        for n, vector in enumerate(vectors):
            started = time.perf_counter()
            index.search(vector, 100)
            unfiltered_ms.append((time.perf_counter() - started) * 1000)
            unfiltered_agree.append(overlap([pk for pk, _ in rank_by_vector(library, vector, 10)], best_pks[n].tolist()))
        rows.append(("none", "100%", "-", median(unfiltered_ms), np.mean(unfiltered_agree), 1.0))
        print(rows[-1], file=sys.stderr)
        for name, filters in FILTERS.items():
            allowed = allowed_pks(library, filters)
            pks, stored = library.store.candidate_vectors(allowed.tolist(), library.manifest.dim)
            exact = [[pks[i] for i in np.argsort(-(stored @ v), kind="stable")[:10]] for v in vectors]
            del stored
            widest: list[list[int]] = []
            powers = [float(p) for p in args.powers.split(",")]
            for power in powers:
                index.tuning = dataclasses.replace(index.tuning, filter_widen_power=power)
                faiss_ms, dense_agree, hybrid_agree = [], [], []
                for n, (query, vector) in enumerate(zip(queries, vectors)):
                    started = time.perf_counter()
                    index.search(vector, 100, allowed)
                    faiss_ms.append((time.perf_counter() - started) * 1000)
                    dense = [pk for pk, _ in rank_by_vector(library, vector, 10, allowed=allowed)]
                    dense_agree.append(overlap(dense, exact[n]))
                    hybrid = [pk for pk, _ in rank_text(library, query, 10, filters)]
                    if power == powers[0]:
                        widest.append(hybrid)
                    hybrid_agree.append(overlap(hybrid, widest[n]))
                rows.append((name, f"{len(allowed) / len(index):.1%}", power, median(faiss_ms), np.mean(dense_agree),
                             np.mean(hybrid_agree)))
                print(rows[-1], file=sys.stderr)
        papers = len(index)
    print(header(f"filtered search by filter_widen_power at {papers:,} papers, {len(queries)} claim-like queries"))
    print("\n| filter | share | power | FAISS top 100 p50 ms | dense top 10 vs exact | hybrid top 10 vs the first power |\n|---|---|---|---|---|---|")
    for name, share, power, ms, dense, hybrid in rows:
        print(f"| {name} | {share} | {power} | {ms:.2f} | {dense:.3f} | {hybrid:.3f} |")


if __name__ == "__main__":
    main()
