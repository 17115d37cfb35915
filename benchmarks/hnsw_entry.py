"""By-id similar on an HNSW collection: the graph search from the top entry point against a level-0
search started at the paper's own node, judged by top-10 overlap with exact search; with
``--ef-construction``, graphs built again from the stored vectors with other efConstruction values.

    PYTHONPATH=src python benchmarks/hnsw_entry.py --index FOLDER [--queries 2000] [--ef-construction 80,200]

FOLDER is an hnsw collection (benchmarks/scale.py --papers 1000000 --index FOLDER builds one).
Every stored vector is read into memory (1.5 GB at 1M) for the exact top 10; each method then
answers the same random papers one at a time on one thread, leaving the paper itself out.
The rebuilt graphs (M 32, SQ8, as index/hnsw.py makes them; built on two threads) are searched as
search.rank_by_vector does: the top RERANK_DEPTH re-scored with the float32 vectors.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np

from _common import header
from paperlens.search import RERANK_DEPTH
from paperlens.store import Store


def exact_top10(queries: np.ndarray, query_pks: np.ndarray, pks: np.ndarray, vectors: np.ndarray) -> list[set[int]]:
    found = []
    for start in range(0, len(queries), 250):
        scores = queries[start:start + 250] @ vectors.T
        top = np.argpartition(-scores, 11, axis=1)[:, :11]
        for row, candidates in enumerate(top):
            order = candidates[np.argsort(-scores[row, candidates])]
            found.append(set([int(pks[i]) for i in order if pks[i] != query_pks[start + row]][:10]))
    return found


def row(name: str, found: list[list[int]], exact: list[set[int]], seconds: list[float]) -> str:
    overlap = np.mean([len(set(f) & e) / 10 for f, e in zip(found, exact)])
    return f"| {name} | {overlap:.4f} | {np.median(seconds) * 1000:.3f} | {np.percentile(seconds, 99) * 1000:.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--ef-construction", default="", help="comma-separated efConstruction values to rebuild the graph with")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    index = faiss.read_index(str(args.index / "vectors.faiss"))
    graph = faiss.downcast_index(index.index)
    if not isinstance(graph, faiss.IndexHNSW):
        raise SystemExit(f"{args.index} is not an hnsw collection")
    table = faiss.vector_to_array(index.id_map)  # slot -> pk, -1 for a deleted paper
    store = Store(args.index / "papers.sqlite")
    batches = list(store.iter_vectors(50_000))
    pks = np.concatenate([b[0] for b in batches])
    vectors = np.concatenate([b[1] for b in batches])
    del batches
    row_of = np.full(int(pks.max()) + 1, -1, np.int64)
    row_of[pks] = np.arange(len(pks))
    slots = np.random.default_rng(0).choice(np.flatnonzero(table != -1), args.queries, replace=False)
    query_pks = table[slots]
    queries = vectors[row_of[query_pks]]
    exact = exact_top10(queries, query_pks, pks, vectors)

    print(header(f"by-id similar: HNSW entry point, {len(pks):,} papers, {args.queries:,} random papers"))
    print("| method | top-10 overlap with exact | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    live = faiss.IDSelectorRange(0, 2**62)
    for ef in (770, 256, 128):
        params = faiss.SearchParametersHNSW(efSearch=ef, sel=live)
        found, seconds = [], []
        for n in range(args.queries):
            start = time.perf_counter()
            _, ids = index.search(queries[n:n + 1], 11, params=params)
            seconds.append(time.perf_counter() - start)
            found.append([int(i) for i in ids[0] if i not in (query_pks[n], -1)][:10])
        print(row(f"from the top entry point, efSearch {ef}", found, exact, seconds))
    distances, labels = np.empty((1, 11), np.float32), np.empty((1, 11), np.int64)
    for ef in (256, 128, 64, 32):
        graph.hnsw.efSearch = ef
        found, seconds = [], []
        for n in range(args.queries):
            query = np.ascontiguousarray(queries[n:n + 1])
            entry = np.array([slots[n]], np.int32)  # HNSW's storage_idx_t
            entry_distance = np.array([-float(query[0] @ query[0])], np.float32)
            start = time.perf_counter()
            graph.search_level_0(1, faiss.swig_ptr(query), 11, faiss.swig_ptr(entry), faiss.swig_ptr(entry_distance),
                                 faiss.swig_ptr(distances), faiss.swig_ptr(labels), 1, 1)
            seconds.append(time.perf_counter() - start)
            found.append([int(i) for i in table[labels[0][labels[0] >= 0]] if i not in (query_pks[n], -1)][:10])
        print(row(f"level 0 from the paper's own node, efSearch {ef}", found, exact, seconds))
    del index, graph
    for ef_construction in (int(value) for value in args.ef_construction.split(",") if value):
        rebuilt(ef_construction, vectors, pks, queries, query_pks, exact)


def rebuilt(ef_construction: int, vectors: np.ndarray, pks: np.ndarray, queries: np.ndarray, query_pks: np.ndarray,
            exact: list[set[int]]) -> None:
    """A graph built again with this efConstruction, searched and re-ranked as a dense by-id search is."""
    faiss.omp_set_num_threads(2)
    graph = faiss.IndexHNSWSQ(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = ef_construction
    start = time.perf_counter()
    graph.train(vectors[:200_000])
    graph.add(vectors)
    built = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    rows_of_query = np.searchsorted(pks, query_pks)
    for ef in (128, 256, 384, 512, 770):
        graph.hnsw.efSearch = ef
        found, seconds = [], []
        for n in range(len(queries)):
            start = time.perf_counter()
            _, rows = graph.search(queries[n:n + 1], RERANK_DEPTH + 1)
            candidates = rows[0][(rows[0] >= 0) & (rows[0] != rows_of_query[n])][:RERANK_DEPTH]
            best = candidates[np.argsort(-(vectors[candidates] @ queries[n]))]
            seconds.append(time.perf_counter() - start)
            found.append([int(pks[i]) for i in best[:10]])
        print(row(f"rebuilt, efConstruction {ef_construction} ({built:.0f} s to build), efSearch {ef}, top {RERANK_DEPTH} re-ranked",
                  found, exact, seconds))


if __name__ == "__main__":
    main()
