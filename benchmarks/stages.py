"""Where a hybrid search spends its time: each stage of search.hybrid_rank timed on its own, the
whole search in-process, and the same requests through HTTP, on an existing index folder.

    PYTHONPATH=src python benchmarks/stages.py --index /tmp/paperlens-scale-1000000 [--queries 300]

Build the folder first with benchmarks/scale.py (--papers 1000000 for the README's table). Queries
are scifact's claims (free text, as scale.py sends them), and no query vector is remembered
(PAPERLENS_QUERY_CACHE=0), so every search encodes its query. The stages run one after another here; the served search overlaps the keyword side
(tantivy, on a worker thread) with encoding and FAISS, so the whole is less than the sum. The
HTTP row is the served request's median less the in-process one: routing, validation, JSON.

Filtered rows time the same claims with since=2020 and category=cs.LG (scale.py's filters): the
filter's pks (FilterColumns, remembered per filter) and each side's filtered search.

``--by-id N`` times a dense by-id search (``/papers/{id}/similar?mode=dense``) the same way, for N
random papers of scale.py's collection (``syn-<i>``): the id's pk, its other records (the copy
check), its stored vector, FAISS, the re-ranking's stored vectors, the collapse of copies, the hits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SCIFACT, header, median, percentile
from api_latency import PAPERLENS, free_port, timed_requests, wait_healthy
from paperlens import search
from paperlens.config import Settings
from paperlens.duplicates import collapse, copies_of
from paperlens.keyword import query_terms
from paperlens.library import Library, open_library
from paperlens.search import (
    KeywordQuery,
    NearVector,
    allowed_pks,
    fuse,
    keyword_top,
    make_filters,
    rank_text,
    search_text,
    similar_to_paper,
    to_hits,
)

FILTERS = {"none": None, "since=2020": make_filters(since="2020"), "category cs.LG": make_filters(categories=["cs.LG"])}


class Timer:
    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = defaultdict(list)

    def __call__(self, name: str, work: Callable):
        started = time.perf_counter()
        result = work()
        self.ms[name].append((time.perf_counter() - started) * 1000)
        return result


def stages(library: Library, query: str, filter_name: str, timer: Timer) -> None:
    """hybrid_rank's stages for one query, in its order, each timed."""
    settings = library.settings
    depth = max(10, settings.fusion_depth)
    filters = FILTERS[filter_name]
    tag = "" if filters is None else f" [{filter_name}]"
    allowed = timer(f"filter pks{tag}", lambda: allowed_pks(library, filters)) if filters else None
    vector = timer("encode query", lambda: library.encoder.encode_query(query))
    dense = NearVector(library, allowed, vector=vector)
    dense_ranked = timer(f"FAISS top {depth}{tag}", lambda: dense.search(depth, exact=False))
    dense_pks, dense_vectors = timer("stored vectors of FAISS's finds", lambda: library.store.candidate_vectors(
        [pk for pk, _ in dense_ranked], library.manifest.dim))
    keyword = KeywordQuery(query_terms(query), where=filters)
    keyword_ranked = timer(f"BM25 top {depth}{tag}", lambda: keyword_top(library, keyword, depth, allowed))
    if filters is not None:  # the filter as a set of pks (or a grown top list), as authors are applied
        timer(f"BM25 top {depth}, filter as pks{tag}", lambda: keyword_top(library, KeywordQuery(keyword.terms), depth, allowed))
    bm25 = dict(keyword_ranked)
    known = set(dense_pks)
    keyword_pks, keyword_vectors = timer("stored vectors of BM25's finds", lambda: library.store.candidate_vectors(
        [pk for pk, _ in keyword_ranked if pk not in known], library.manifest.dim))
    pks = dense_pks + keyword_pks
    dense_only = [pk for pk in dense_pks if pk not in bm25]
    filled = timer("BM25 fill-in of FAISS-only finds (all of them)", lambda: library.keywords.scores(keyword.terms, dense_only))
    bm25.update(filled)
    dense_scores = np.concatenate([dense_vectors, keyword_vectors]) @ vector
    ranked = timer("fusion", lambda: fuse(pks, dense_scores, np.array([bm25.get(pk, 0.0) for pk in pks], dtype=np.float32),
                                          settings.fusion, settings.dense_weight)[:10])
    timer("papers of the top 10 (to_hits)", lambda: to_hits(library, ranked))


def by_id_stages(library: Library, paper_id: str, timer: Timer) -> None:
    """similar_to_paper's stages in dense mode for one paper, in its order, each timed."""
    pk = timer("by id: the id's pk", lambda: next(iter(library.store.pks_for_ids([paper_id]).values())))
    exclude = {pk, *timer("by id: its other records (copies_of)", lambda: copies_of(library, {pk}))}
    vector = timer("by id: its stored vector", lambda: library.store.get_vectors([pk], library.manifest.dim)[0])
    depth = 10 + max(5, 10 // 2)  # duplicates.distinct_top's first depth
    wanted = max(depth + len(exclude), search.RERANK_DEPTH)
    _, ids = timer(f"by id: FAISS top {wanted}", lambda: library.index.search(vector[None, :], wanted, None))
    found = [int(i) for i in ids[0] if i >= 0 and int(i) not in exclude]
    pks, stored = timer("by id: stored vectors to re-rank", lambda: library.store.candidate_vectors(found, library.manifest.dim))
    def rerank() -> list[tuple[int, float]]:  # as search.rank_by_vector does
        exact = stored @ vector
        return [(pks[i], float(exact[i])) for i in np.argsort(-exact, kind="stable")][:depth]

    ranked = timer("by id: re-rank", rerank)
    kept = timer("by id: each paper once (collapse)", lambda: collapse(library, ranked))
    timer("by id: papers of the top 10 (to_hits)", lambda: to_hits(library, kept[:10]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="an index folder (benchmarks/scale.py builds one)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--no-http", action="store_true", help="skip the served requests")
    parser.add_argument("--by-id", type=int, default=0, metavar="N", help="also time N dense by-id searches of random papers")
    parser.add_argument("--only-by-id", action="store_true", help="time only the by-id searches")
    args = parser.parse_args()
    if args.only_by_id and args.by_id <= 0:
        parser.error("--only-by-id needs --by-id N")
    claims = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()][: args.queries]
    timer = Timer()
    lookup = search.KEYWORD_LOOKUP_FACTOR
    # No query vector is remembered (Settings.query_cache): each search here encodes its query.
    with open_library(Settings(index=args.index, show_progress=False, query_cache=0)) as library:
        papers = len(library)
        # Three sets of random papers: the stages, the whole search and HTTP each read papers that
        # none of the others has just read (the one before would find its rows in SQLite's cache).
        rng = np.random.default_rng(1)
        staged, whole, ids = ([f"syn-{i}" for i in rng.integers(papers, size=args.by_id)] for _ in range(3))
        for paper_id in ids[:20]:
            similar_to_paper(library, paper_id, 10, mode="dense")
        for staged_id, whole_id in zip(staged, whole):
            by_id_stages(library, staged_id, timer)
            timer("by id: whole dense search, in-process", lambda i=whole_id: similar_to_paper(library, i, 10, mode="dense"))
        for query in ([] if args.only_by_id else claims[:20]):  # warm-up: model, pages of the files, the filters' pks
            for filters in FILTERS.values():
                search_text(library, query, filters=filters)
        for query in [] if args.only_by_id else claims:
            for name, filters in FILTERS.items():
                stages(library, query, name, timer)
                tag = "" if filters is None else f" [{name}]"
                timer(f"whole hybrid search, in-process{tag}",
                      lambda q=query, f=filters: to_hits(library, rank_text(library, q, 10, f)))
                if filters is None:  # the keyword list only as deep as the candidates: a fill-in query for each dense find
                    search.KEYWORD_LOOKUP_FACTOR = 1
                    timer("whole hybrid search, in-process, keyword list not read deeper",
                          lambda q=query: to_hits(library, rank_text(library, q, 10)))
                    search.KEYWORD_LOOKUP_FACTOR = lookup
    served: dict[str, list[float]] = {}
    if not args.no_http:
        port = free_port()
        server = subprocess.Popen([PAPERLENS, "serve", "--index", str(args.index), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PAPERLENS_QUERY_CACHE": "0"})
        try:
            wait_healthy(port, server, timeout=1800)
            if ids:
                paths = [f"/papers/{paper_id}/similar?k=10&mode=dense" for paper_id in ids]
                timed_requests(port, paths[:20])
                served["by id"] = timed_requests(port, paths)
            for name, filters in {} if args.only_by_id else FILTERS.items():
                extra = {} if filters is None else {"since": "2020"} if filters.since else {"category": "cs.LG"}
                paths = ["/search?" + urlencode({"q": q, "k": 10, "mode": "hybrid", **extra}) for q in claims]
                timed_requests(port, paths[:20])
                served[name] = timed_requests(port, paths)
        finally:
            server.terminate()
            server.wait(timeout=60)

    print(header(f"hybrid search stages at {papers:,} papers, {len(claims)} scifact claims, {len(ids)} papers by id"))
    print("\n| stage | p50 ms | p99 ms |\n|---|---|---|")
    for name, values in timer.ms.items():
        print(f"| {name} | {median(values):.2f} | {percentile(values, 99):.2f} |")
    for name, values in served.items():
        if name == "by id":
            whole = median(timer.ms["by id: whole dense search, in-process"])
            print(f"| GET /papers/{{id}}/similar?mode=dense through HTTP | {median(values):.2f} | {percentile(values, 99):.2f} |")
            print(f"| HTTP: the served median less the in-process one [by id] | {median(values) - whole:.2f} | |")
            continue
        tag = "" if name == "none" else f" [{name}]"
        whole = median(timer.ms[f"whole hybrid search, in-process{tag}"])
        print(f"| GET /search through HTTP{tag} | {median(values):.2f} | {percentile(values, 99):.2f} |")
        print(f"| HTTP: the served median less the in-process one{tag} | {median(values) - whole:.2f} | |")


if __name__ == "__main__":
    main()
