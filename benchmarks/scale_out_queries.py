"""Queries on Ray Serve: one index against S shards, through HTTP, and how far sharded BM25 agrees with one index.

    PYTHONPATH=src python benchmarks/scale_out_queries.py [--papers 100000] [--shards 2 4] [--requests 200] [--ray ADDRESS]

Latency: the collection is benchmarks/scale.py's synthetic one (scifact-subset abstracts with 20 %
of their words dropped, mixed real embeddings), built once in /tmp/paperlens-scale-N and split with
``shards.shard_collection`` into /tmp/paperlens-scale-N-sS. Each layout is deployed with
``ray_serve.start`` (one ingress replica; one deployment per shard) and timed request by request
over HTTP with scifact's claims. Without --ray a throwaway two-node cluster of this machine is
started (ray.cluster_utils, its own ports and temp folder) and ended afterwards.

Agreement: the top 10 of BM25 over scifact-subset's abstracts split in S shards, merged by score,
against one index, for scifact's claims and their three-word cuts, with each shard's own term
statistics and with the collection's (what a sharded server does). Only keyword indexes: no model.

``measure_queries`` and ``bm25_agreement`` return rows for benchmarks/scale_out.py to print.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SCIFACT, header, percentile
from api_latency import free_port, timed_requests
from paperlens.config import Settings
from paperlens.keyword import KeywordIndex, TermStats, query_terms
from paperlens.papers import read_papers
from paperlens.shards import SHARD_MAP, owner, shard_collection
from scale import build

ROUTES = ("GET /search (claims, dense)", "GET /search (claims, hybrid)", "GET /search (claims, bm25)", "GET /papers/{id}/similar (hybrid)")


@dataclass
class LatencyRow:
    layout: str  # "one index" or "S shards"
    route: str
    p50_ms: float
    p99_ms: float
    requests: int


@dataclass
class AgreementRow:
    shards: int
    queries: str
    own_statistics: float  # mean share of one index's top 10 found, each shard scoring with its own df
    collection_statistics: float  # the same with the collection's df (what shards.py does)


def _paths(papers: int, requests: int) -> dict[str, list[str]]:
    claims = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()]

    def search(mode: str) -> list[str]:
        return ["/search?" + urlencode({"q": claims[i % len(claims)], "k": 10, "mode": mode}) for i in range(requests)]

    step = max(1, papers // requests)
    similar = [f"/papers/{quote(f'syn-{(i * step) % papers}')}/similar?k=10" for i in range(requests)]
    return dict(zip(ROUTES, (search("dense"), search("hybrid"), search("bm25"), similar)))


def _time_layout(folder: Path, label: str, address: str, port: int, papers: int, requests: int) -> list[LatencyRow]:
    from paperlens import ray_serve

    ray_serve.start(Settings(index=folder, show_progress=False), address, port=port, cpus=0.25)
    try:
        paths = _paths(papers, requests)
        timed_requests(port, [p for route in paths.values() for p in route[:10]])  # warm-up: model, file pages
        rows = []
        for route, route_paths in paths.items():
            latencies = timed_requests(port, route_paths)
            rows.append(LatencyRow(label, route, percentile(latencies, 50), percentile(latencies, 99), len(latencies)))
        return rows
    finally:
        ray_serve.stop()


def _throwaway_cluster():
    """Two nodes of this machine on free ports, their files in a temp folder; (address, stop)."""
    import ray
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="/tmp/plbench")
    original = ray._private.utils.write_ray_address
    ray._private.utils.write_ray_address = lambda *args, **kwargs: None  # leave 'ray start' clusters' address file alone
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "gcs_server_port": free_port(), "temp_dir": temp})
    nodes.add_node(num_cpus=4)

    def stop() -> None:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        nodes.shutdown()
        ray._private.utils.write_ray_address = original
        shutil.rmtree(temp, ignore_errors=True)

    return nodes.address, stop


def measure_queries(papers: int = 100_000, shard_counts: tuple[int, ...] = (2, 4), requests: int = 200,
                    address: str | None = None) -> list[LatencyRow]:
    """p50/p99 of each route for one index and for each shard count, over HTTP on Ray Serve."""
    from paperlens.cluster import connect

    folder = Path(f"/tmp/paperlens-scale-{papers}")
    build(folder, papers)
    layouts = [(folder, "one index")]
    for count in shard_counts:
        out = Path(f"{folder}-s{count}")
        if not (out / SHARD_MAP).exists():
            shutil.rmtree(out, ignore_errors=True)
            shard_collection(Settings(index=folder, show_progress=False), folder, count, out)
        layouts.append((out, f"{count} shards"))
    stop = None
    if address is None:
        address, stop = _throwaway_cluster()
    try:
        connect(address)
        port = free_port()  # Serve's proxy keeps the port it was first started with
        return [row for path, label in layouts for row in _time_layout(path, label, address, port, papers, requests)]
    finally:
        if stop is not None:
            stop()


def bm25_agreement(shard_counts: tuple[int, ...] = (2, 4), k: int = 10) -> list[AgreementRow]:
    """Top-k agreement of sharded BM25 with one index over scifact-subset, both ways of scoring."""
    papers = read_papers(SCIFACT / "corpus.jsonl").papers
    claims = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()]
    query_sets = {"claims": claims, "3-word cuts": [" ".join(q.split()[:3]) for q in claims]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        whole = KeywordIndex.recreate(Path(tmp) / "one", [(pk, p.title, p.abstract) for pk, p in enumerate(papers)], 0)
        for count in shard_counts:
            parts = [KeywordIndex.recreate(Path(tmp) / f"s{count}-{s}", [(pk, p.title, p.abstract) for pk, p in enumerate(papers)
                                                                         if owner(p.id, count) == s], 0) for s in range(count)]
            for name, queries in query_sets.items():
                own = same = 0.0
                for query in queries:
                    terms = query_terms(query)
                    expected = {pk for pk, _ in whole.top(terms, k)}
                    stats = TermStats.summed(part.term_stats([t for t, _ in terms]) for part in parts)
                    for with_stats in (False, True):
                        found = [hit for part in parts for hit in part.top(part.with_collection_idf(terms, stats if with_stats else None), k)]
                        top = {pk for pk, _ in sorted(found, key=lambda item: -item[1])[:k]}
                        share = len(top & expected) / max(1, len(expected))
                        if with_stats:
                            same += share
                        else:
                            own += share
                rows.append(AgreementRow(count, name, own / len(queries), same / len(queries)))
    return rows


def print_latency(rows: list[LatencyRow], papers: int) -> None:
    print(f"\n## Query latency through HTTP on Ray Serve, {papers:,} papers\n")
    print("| layout | request | p50 ms | p99 ms | n |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.layout} | {row.route} | {row.p50_ms:.1f} | {row.p99_ms:.1f} | {row.requests} |")


def print_agreement(rows: list[AgreementRow]) -> None:
    print("\n## BM25 top-10 agreement with one index (scifact-subset, 2,101 abstracts)\n")
    print("| shards | queries | each shard's own statistics | the collection's statistics |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row.shards} | {row.queries} | {row.own_statistics:.3f} | {row.collection_statistics:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--ray", dest="address", help="a running cluster [default: a throwaway two-node one]")
    parser.add_argument("--agreement-only", action="store_true", help="only the BM25 agreement (seconds, no cluster)")
    args = parser.parse_args()
    print(header(f"paperlens on Ray Serve: one index against {', '.join(map(str, args.shards))} shards"))
    print_agreement(bm25_agreement(tuple(args.shards)))
    if not args.agreement_only:
        print_latency(measure_queries(args.papers, tuple(args.shards), args.requests, args.address), args.papers)


if __name__ == "__main__":
    main()
