"""Speed and scale of paperlens on this machine: prints tables of medians over repeated runs.

    PYTHONPATH=src python benchmarks/speed.py [--sizes 10000,100000] [--full] [--sweep N] [--http] [--command]

1. Ingest rate and free-text query latency in process: real abstracts and claims
   (scifact-subset) through ``library.ingest`` and ``search_text`` per encoder backend, and
   txtai (same model, texts and queries) as the column to beat, when it is installed.
   With --http, the whole ``paperlens ingest`` command and the HTTP API (api_latency.py).
   With --command, the whole ``paperlens ingest`` command against txtai indexing the same texts,
   each in fresh processes taking turns (ingest_stages.py, which also has the per-stage table).
2. Index layouts at 10k, 100k (and 1M with --full): RAM per paper, recall@10 against exact
   search, single-query latency p50/p99 inside FAISS.

Large collections are synthetic but built from real embeddings: each vector mixes two scifact
abstract embeddings (600 parents by default; weight a ~ U(0.5, 1) on the first) plus Gaussian noise (sigma 0.03 per
dimension, noise norm ~0.6), renormalised. Queries come from the same generator with another
seed, so they are never in the index. Sibling vectors of one parent make dense, noisy
neighbourhoods, which is harder for ANN than real data: recall here is a floor.

Each table is built by one function returning rows, so further columns (HTTP latency, other
engines) can be added by another function with the same shape.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Spinning OpenMP threads starve each other on a shared machine (IVF training took 10x longer).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss
import numpy as np

from paperlens.config import Settings
from paperlens.embed import EncoderSpec, load_encoder, packaged_model_path
from paperlens.index import SearchTuning, choose_layout, create_index, layout_params, training_sample
from paperlens.library import ingest, open_library
from paperlens.papers import Paper, read_papers
from paperlens.search import RERANK_DEPTH, search_text

DATA = Path(os.environ.get("PAPERLENS_BENCH_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact-subset"))


@dataclass
class LayoutRow:
    size: int
    layout: str
    params: str
    build_s: float
    file_bytes_per_paper: float
    ram_bytes_per_paper: float
    recall_at_10: float
    p50_ms: float
    p99_ms: float
    reranked_recall_at_10: float  # what search returns: approximate layouts re-score their top 40


@dataclass
class IngestRow:
    engine: str
    papers: int
    papers_per_s: float
    dense_query_ms: float  # p50 of a whole free-text query (encode + search), in process
    hybrid_query_ms: float | None = None


def machine_header(argv: list[str]) -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        lines = cpuinfo.readlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    flags = next((line for line in lines if line.startswith("flags")), "")
    simd = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f" {f}" in flags)
    return (
        f"# command: {' '.join(['python', *argv])}\n"
        f"# machine: {cpu}, {os.cpu_count()} cores ({simd}), load {os.getloadavg()[0]:.1f}; "
        f"faiss {faiss.__version__}, numpy {np.__version__}, python {platform.python_version()}"
    )


# --- ingest ---------------------------------------------------------------------------------

def scifact_queries() -> list[str]:
    return [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open(encoding="utf-8")]


def bench_ingest(backend: str, papers: list[Paper], queries: list[str], repeats: int) -> IngestRow:
    """Papers/s through the real ingest path (encode + SQLite + FAISS + keyword index), model load excluded;
    then the p50 of whole free-text queries on what was ingested."""
    settings = Settings(backend=backend, show_progress=False)
    load_encoder(EncoderSpec("default", backend=backend)).encode(["warm up"])
    rates, dense, hybrid = [], [], []
    for _ in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="paperlens-bench-"))
        try:
            with open_library(settings, folder, create=True) as library:
                start = time.perf_counter()
                ingest(library, papers)
                rates.append(len(papers) / (time.perf_counter() - start))
                dense.append(_p50_ms(lambda q: search_text(library, q, 10, mode="dense"), queries))
                hybrid.append(_p50_ms(lambda q: search_text(library, q, 10, mode="hybrid"), queries))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    name = f"paperlens ({load_encoder(EncoderSpec('default', backend=backend)).backend})"
    return IngestRow(name, len(papers), statistics.median(rates), statistics.median(dense), statistics.median(hybrid))


def bench_txtai(papers: list[Paper], queries: list[str], repeats: int) -> IngestRow | None:
    """txtai's Embeddings on the same model, texts and queries: the engine a Python user would pick instead."""
    try:
        from txtai import Embeddings
    except ImportError:
        print("# txtai is not installed (pip install txtai): its row is left out", file=sys.stderr)
        return None
    model = str(packaged_model_path())
    Embeddings(path=model, backend="faiss", content=False).index([("warm", "warm up", None)])
    rates, dense = [], []
    for _ in range(repeats):
        embeddings = Embeddings(path=model, backend="faiss", content=False)
        start = time.perf_counter()
        embeddings.index([(paper.id, paper.text, None) for paper in papers])
        rates.append(len(papers) / (time.perf_counter() - start))
        dense.append(_p50_ms(lambda q, engine=embeddings: engine.search(q, 10), queries))
    return IngestRow("txtai (torch)", len(papers), statistics.median(rates), statistics.median(dense))


def _p50_ms(run, queries: list[str]) -> float:
    for query in queries[:3]:
        run(query)
    times = []
    for query in queries:
        start = time.perf_counter()
        run(query)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def ingest_table(backends: list[str], count: int, repeats: int) -> list[IngestRow]:
    papers = read_papers(DATA).papers[:count]
    queries = scifact_queries()
    rows = [bench_ingest(backend, papers, queries, repeats) for backend in backends]
    txtai_row = bench_txtai(papers, queries, repeats)
    return rows + ([txtai_row] if txtai_row else [])


# --- synthetic collections -------------------------------------------------------------------

def real_embeddings(parents: int, cache: Path = Path.home() / ".cache" / "paperlens" / "bench") -> np.ndarray:
    """The first ``parents`` scifact abstracts, encoded with the default model (onnx-int8, the
    faster backend: the generator adds far more noise than int8 does), cached between runs."""
    path = cache / f"{DATA.name}-{parents}-minilm-int8.npy"
    if path.exists():
        return np.load(path)
    papers = read_papers(DATA).papers[:parents]
    vectors = load_encoder(EncoderSpec("default", backend="onnx-int8")).encode([p.text for p in papers], show_progress=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def synthetic(base: np.ndarray, n: int, seed: int, sigma: float = 0.03, chunk: int = 200_000) -> np.ndarray:
    """Mixtures of two real embeddings plus Gaussian noise, renormalised (see module docstring)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        a = rng.uniform(0.5, 1.0, size=(m, 1)).astype(np.float32)
        x = a * base[rng.integers(len(base), size=m)] + (1 - a) * base[rng.integers(len(base), size=m)]
        x += rng.normal(0, sigma, size=x.shape).astype(np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index.search(queries, 10)[1]


# --- layouts ---------------------------------------------------------------------------------

def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(layout: str, vectors: np.ndarray, params: dict) -> tuple[object, float]:
    start = time.perf_counter()
    training = training_sample(vectors) if layout != "flat" else None
    index = create_index(layout, vectors.shape[1], params, training, SearchTuning())
    for begin in range(0, len(vectors), 100_000):
        index.add(np.arange(begin + 1, begin + 1 + len(vectors[begin:begin + 100_000])), vectors[begin:begin + 100_000])
    return index, time.perf_counter() - start


def memory_per_paper(index) -> tuple[float, float]:
    """(file bytes, RAM bytes) per paper: the saved size, and the RSS growth when loading it."""
    blob = faiss.serialize_index(index.faiss_index)
    before = rss_bytes()
    loaded = faiss.deserialize_index(blob)
    ram = rss_bytes() - before
    del loaded
    return blob.nbytes / len(index), ram / len(index)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:10]) & set(t)) / 10 for f, t in zip(found, truth)]))


def reranked_recall(index, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> float:
    """recall@10 once the top RERANK_DEPTH are re-scored with float vectors, as search.rank_by_vector
    does with the store's (ids are row + 1)."""
    found = index.search(queries, RERANK_DEPTH)[1]
    reranked = []
    for query, ids in zip(queries, found):
        ids = ids[ids >= 0]
        reranked.append(ids[np.argsort(-(vectors[ids - 1] @ query))])
    return recall_at_10(reranked, truth)


def measure(index, queries: np.ndarray, truth: np.ndarray, repeats: int = 3) -> tuple[float, float, float]:
    """recall@10 against exact, and p50/p99 ms of one query at a time (the API's case)."""
    recall = recall_at_10(index.search(queries, 10)[1], truth)
    times = []
    # One query at a time with one OpenMP thread: FAISS parallelises across queries, and on a
    # shared 2-core machine an OpenMP team for a single query mostly waits at barriers.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    for _ in range(repeats):
        for query in queries:
            start = time.perf_counter()
            index.search(query[None, :], 10)
            times.append((time.perf_counter() - start) * 1000)
    faiss.omp_set_num_threads(threads)
    return recall, float(np.percentile(times, 50)), float(np.percentile(times, 99))


def layout_rows(size: int, vectors: np.ndarray, queries: np.ndarray, tuning: SearchTuning, layouts: list[str]) -> list[LayoutRow]:
    truth = exact_top10(vectors, queries) + 1  # ids are row + 1, as store pks start at 1
    rows = []
    for layout in layouts:
        params = layout_params(layout, size)
        index, build_s = build(layout, vectors, params)
        index.tuning = tuning
        file_b, ram_b = memory_per_paper(index)
        recall, p50, p99 = measure(index, queries, truth)
        shown = ",".join(f"{k}={v}" for k, v in params.items()) + _search_knobs(layout, tuning)
        exact = recall if layout == "flat" else reranked_recall(index, vectors, queries, truth)
        rows.append(LayoutRow(size, layout, shown, build_s, file_b, ram_b, recall, p50, p99, exact))
        print(_format_layout(rows[-1]), file=sys.stderr, flush=True)
        del index
    return rows


def _search_knobs(layout: str, tuning: SearchTuning) -> str:
    return {"hnsw": f",ef_search={tuning.ef_search or 'auto'}", "ivfpq": f",nprobe={tuning.nprobe}"}.get(layout, "")


SWEEPS = {"hnsw": ("ef_search", (64, 96, 128, 192, 256, 384, 512, 768)), "ivfpq": ("nprobe", (8, 16, 32, 64, 128))}


def sweep_rows(size: int, vectors: np.ndarray, queries: np.ndarray, layouts: list[str],
               ef_constructions: list[int] | None = None) -> list[LayoutRow]:
    """recall and latency per efSearch / nprobe, one build per layout (per HNSW efConstruction in
    ``ef_constructions``, else layout_params'): how the defaults were chosen."""
    truth = exact_top10(vectors, queries) + 1
    rows = []
    for layout in layouts:
        knob, values = SWEEPS[layout]
        builds = [{"ef_construction": ef} for ef in ef_constructions] if layout == "hnsw" and ef_constructions else [{}]
        for override in builds:
            params = {**layout_params(layout, size), **override}
            index, build_s = build(layout, vectors, params)
            file_b, ram_b = memory_per_paper(index)
            for value in values:
                index.tuning = SearchTuning(**{knob: value})
                recall, p50, p99 = measure(index, queries, truth, repeats=1)
                exact = reranked_recall(index, vectors, queries, truth)
                rows.append(LayoutRow(size, layout, f"{params} {knob}={value}", build_s, file_b, ram_b, recall, p50, p99, exact))
                print(_format_layout(rows[-1]), file=sys.stderr, flush=True)
            del index
    return rows


# --- output ----------------------------------------------------------------------------------

LAYOUT_HEADER = ("| papers | layout | parameters | build s | file B/paper | RAM B/paper | recall@10 in FAISS | recall@10 re-ranked | "
                 "p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|---|---|")


def _format_layout(row: LayoutRow) -> str:
    return (f"| {row.size:,} | {row.layout} | {row.params} | {row.build_s:.1f} | {row.file_bytes_per_paper:.0f} | "
            f"{row.ram_bytes_per_paper:.0f} | {row.recall_at_10:.3f} | {row.reranked_recall_at_10:.3f} | {row.p50_ms:.2f} | {row.p99_ms:.2f} |")


def print_ingest(rows: list[IngestRow]) -> None:
    print("\n## Ingest and free-text query, in process (real scifact abstracts and claims, medians)\n")
    print("| engine | papers | papers/s | dense query p50 ms | hybrid query p50 ms |\n|---|---|---|---|---|")
    for row in rows:
        hybrid = f"{row.hybrid_query_ms:.1f}" if row.hybrid_query_ms is not None else "n/a"
        print(f"| {row.engine} | {row.papers} | {row.papers_per_s:.1f} | {row.dense_query_ms:.1f} | {hybrid} |")


def print_layouts(title: str, rows: list[LayoutRow]) -> None:
    print(f"\n## {title}\n")
    print(LAYOUT_HEADER)
    for row in rows:
        print(_format_layout(row))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="collection sizes for the layout table")
    parser.add_argument("--full", action="store_true", help="add 1,000,000 papers (long on 2 cores: HNSW build and IVF-PQ training)")
    parser.add_argument("--sweep", type=int, default=0, metavar="N", help="also sweep efSearch/nprobe at N papers")
    parser.add_argument("--backends", default="onnx-int8,torch")
    parser.add_argument("--ingest-papers", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--layouts", default="flat,hnsw,ivfpq")
    parser.add_argument("--sweep-layouts", default="hnsw,ivfpq", help="layouts whose search knob --sweep varies")
    parser.add_argument("--ef-construction", default="", metavar="LIST",
                        help="HNSW graphs --sweep builds, by efConstruction (e.g. 80,200); default: layout_params'")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--http", action="store_true", help="also time the whole ingest command and the HTTP API on scifact-subset")
    parser.add_argument("--command", action="store_true",
                        help="also the whole ingest command against txtai in fresh processes (scifact-subset)")
    parser.add_argument("--parents", type=int, default=600, help="real abstracts the synthetic vectors are mixed from")
    args = parser.parse_args(argv[1:])
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    print(machine_header(argv))
    if not args.skip_ingest:
        print_ingest(ingest_table(args.backends.split(","), args.ingest_papers, args.repeats))
    if args.command:
        from ingest_stages import command_rows

        print(f"\n## The whole `paperlens ingest` command against txtai, fresh processes ({args.repeats} runs each)\n")
        print("\n".join(command_rows(DATA, args.repeats)))
    if args.http:
        from api_latency import measure, print_figures

        print("\n## Through the CLI and HTTP (scifact-subset, whole `paperlens ingest`, then `paperlens serve`)\n")
        print_figures(measure(DATA))
    base = real_embeddings(args.parents)
    queries = synthetic(base, args.queries, seed=1)
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([1_000_000] if args.full else [])
    tuning = Settings()
    rows = []
    for size in sizes:
        vectors = synthetic(base, size, seed=0)
        rows += layout_rows(size, vectors, queries, SearchTuning(tuning.ef_search, tuning.nprobe, "cpu"), args.layouts.split(","))
    print_layouts(f"Layouts (synthetic from scifact embeddings; auto picks {', '.join(f'{choose_layout(s)} at {s:,}' for s in sizes)})", rows)
    if args.sweep:
        ef_constructions = [int(ef) for ef in args.ef_construction.split(",") if ef]
        sweep = sweep_rows(args.sweep, synthetic(base, args.sweep, seed=0), queries, args.sweep_layouts.split(","), ef_constructions)
        print_layouts(f"Sweep at {args.sweep:,} papers", sweep)


if __name__ == "__main__":
    main(sys.argv)
