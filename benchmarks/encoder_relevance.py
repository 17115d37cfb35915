"""The int8 CPU encoder against float32: dense nDCG on every development set, agreement, speed.

    PYTHONPATH=src python benchmarks/encoder_relevance.py [--both-weights] [--unfused] [--skip-layer-norm] [--old-recipe] [--onnx-fp32] [--keep-float PATTERN]...

Backends (rows): ``torch`` float32, the reference; ``onnx-int8`` as shipped (paperlens.onnx_encoder,
through its export cache, fused, with the weight type ``onnx_encoder.int8_weights`` picks for this CPU);
with ``--both-weights`` the other weight type too (s8 or u8); with ``--unfused`` the export-format-3 recipe (MatMuls int8, no
fusion); with ``--skip-layer-norm`` the export-format-4 recipe (residual + LayerNorm fused into
SkipLayerNormalization as well); with ``--old-recipe`` the same graph quantised with quantize_dynamic's
default op list (the embedding tables int8 too); with ``--onnx-fp32`` the exported graph before
quantisation; with ``--keep-float PATTERN`` the shipped recipe with the MatMuls whose node name
contains PATTERN left float32 (repeatable, one row each).

For every development set under ../shared/data (a missing one is skipped with a message):
- nDCG, dense search, exact inner product, scored with ranx: scifact-subset nDCG@10 with the
  claims as queries; csfcube-dev graded nDCG@20 with the query paper's title + abstract as the
  query and the query paper left out of its own results (metadata.query_paper_id). Queries are
  encoded one at a time, as a search does. Any other BEIR folder there: nDCG@10, queries as given.
- agreement with float32 over thousands of queries: every corpus abstract as a query against its
  own corpus (itself left out), documents encoded in batches as ingest does; the mean top-10
  overlap with float32's ranking, and the mean / min cosine of each document vector to its
  float32 one.
Speed: abstracts/s of the document encode (batches of 16, longest first), median of --rounds
rounds over the same abstracts, the backends taking turns inside a round so that load from
elsewhere on the machine falls on them alike.

The nDCG sets are small (47 and 17 queries: a few points is noise); the agreement columns are how
a quantisation change shows up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _common import SHARED_DATA, header, simd_flags
from paperlens.embed import Encoder, EncoderSpec, packaged_model_path
from paperlens.evaluate import load_beir
from paperlens.onnx_encoder import (
    FP32_FILE,
    META_FILE,
    MODEL_FILE,
    OnnxInt8Encoder,
    export_fp32,
    fuse,
    quantise,
)
from paperlens.papers import normalise_id, paper_text

KNOWN_SETS = ("scifact-subset", "csfcube-dev")
METRIC = {"csfcube-dev": "ndcg@20"}  # graded, CSFCube's depth; nDCG@10 elsewhere
RUN_DEPTH = 100
TOP = 10  # the agreement cut-off


@dataclass
class Backend:
    name: str
    encode: Callable[[list[str]], np.ndarray]  # documents, in batches


@dataclass
class Query:
    id: str
    text: str
    exclude: str | None  # a paper id left out of this query's results


def dev_sets(root: Path) -> list[Path]:
    """The known sets (a message for each missing one), then any other BEIR folder under ``root``."""
    found = []
    for name in KNOWN_SETS:
        if (root / name / "corpus.jsonl").is_file():
            found.append(root / name)
        else:
            print(f"# skipped {name}: no {root / name / 'corpus.jsonl'}", file=sys.stderr)
    others = sorted(p for p in root.glob("*") if p.name not in KNOWN_SETS and (p / "qrels" / "test.tsv").is_file())
    return found + others


def read_queries(folder: Path, judged: dict[str, str]) -> list[Query]:
    """The judged queries; a whole-paper query (metadata.query_paper_id) as title + abstract, itself excluded."""
    queries = []
    with open(folder / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            qid = str(record["_id"])
            if qid not in judged:
                continue
            meta = record.get("metadata") or {}
            if meta.get("query_paper_id"):
                text = paper_text(meta.get("title"), meta.get("abstract")) or judged[qid]
                queries.append(Query(qid, text, normalise_id(str(meta["query_paper_id"]))))
            else:
                queries.append(Query(qid, judged[qid], qid))  # BEIR: a paper with the query's id is left out
    return queries


def ndcg(qrels, queries: list[Query], vectors: np.ndarray, docs: np.ndarray, ids: list[str], metric: str) -> float:
    from ranx import Qrels, Run, evaluate

    run = {}
    for query, vector in zip(queries, vectors):
        order = np.argsort(-(docs @ vector), kind="stable")[: RUN_DEPTH + 1]
        ranked = [ids[i] for i in order if ids[i] != query.exclude][:RUN_DEPTH]
        run[query.id] = {doc: float(len(ranked) - rank) for rank, doc in enumerate(ranked)}
    return float(evaluate(Qrels(qrels), Run(run), metric, make_comparable=True))


def top_ids(docs: np.ndarray) -> np.ndarray:
    """Each document's TOP nearest other documents (exact inner product), as a query against the corpus."""
    scores = docs @ docs.T
    np.fill_diagonal(scores, -np.inf)
    return np.argpartition(-scores, TOP, axis=1)[:, :TOP]


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([len(set(x) & set(y)) / TOP for x, y in zip(a.tolist(), b.tolist())])


def build_backends(args, tmp: Path) -> list[Backend]:
    torch_encoder = Encoder(EncoderSpec("default", backend="torch", device="cpu", max_seq_length=args.max_seq_length))
    shipped = Encoder(EncoderSpec("default", backend="onnx-int8", max_seq_length=args.max_seq_length))
    weights = shipped.onnx.weights
    backends = [Backend("torch float32", torch_encoder.encode),
                Backend(f"onnx-int8 (fused, MatMul + Attention, shipped: {weights} weights on this CPU)", shipped.encode)]
    if args.both_weights:
        other = {"s8": "u8", "u8": "s8"}[weights]
        encoder = Encoder(EncoderSpec("default", backend="onnx-int8", max_seq_length=args.max_seq_length, int8_weights=other))
        backends.append(Backend(f"onnx-int8 with {other} weights", encoder.encode))
    # (row name, op types quantised, MatMuls kept float, graph fused with SkipLayerNormalization first)
    variants: list[tuple[str, tuple[str, ...] | None, tuple[str, ...], bool]] = []
    if args.unfused:
        variants.append(("onnx-int8 unfused (MatMul only, format 3)", ("MatMul",), (), False))
    if args.skip_layer_norm:
        variants.append(("onnx-int8 fused with SkipLayerNormalization (format 4)", ("MatMul", "Attention"), (), True))
    if args.old_recipe:
        variants.append(("onnx-int8 old recipe (default op list: embeddings int8)", None, (), False))
    if args.keep_float or args.onnx_fp32 or variants:
        fp32 = export_fp32(torch_encoder.model, str(packaged_model_path()), tmp)
        import onnx

        matmuls = [n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node if n.op_type == "MatMul"]
        for pattern in args.keep_float:
            keep = tuple(n for n in matmuls if pattern in n)
            if not keep:
                raise SystemExit(f"--keep-float {pattern!r} matches no MatMul node")
            variants.append((f"onnx-int8, {len(keep)} MatMul(s) matching {pattern!r} float", ("MatMul",), keep, False))
        config = torch_encoder.model[0].auto_model.config
        for number, (name, op_types, keep, skip_fused) in enumerate(variants):
            folder = tmp / f"variant-{number}"
            folder.mkdir()
            for file in ("tokenizer.json", META_FILE):
                shutil.copy(tmp / file, folder / file)
            graph = fuse(fp32, folder / "fused.onnx", config.num_attention_heads, config.hidden_size, True) if skip_fused else fp32
            quantise(graph, folder / MODEL_FILE, op_types, keep)
            backends.append(Backend(name, OnnxInt8Encoder(folder, max_seq_length=args.max_seq_length, model_file=MODEL_FILE).encode))
        if args.onnx_fp32:
            backends.append(Backend("onnx float32", OnnxInt8Encoder(tmp, max_seq_length=args.max_seq_length, model_file=FP32_FILE).encode))
    return backends


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unfused", action="store_true", help="add the unfused graph with MatMuls int8 (export format 3)")
    parser.add_argument("--skip-layer-norm", action="store_true", help="add the format-4 graph (SkipLayerNormalization fused)")
    parser.add_argument("--old-recipe", action="store_true", help="add quantize_dynamic's default op list (embedding tables int8)")
    parser.add_argument("--onnx-fp32", action="store_true", help="add the exported float32 graph")
    parser.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                        help="add the shipped recipe with MatMuls whose name contains PATTERN float (repeatable)")
    parser.add_argument("--both-weights", action="store_true", help="add the int8 graph with the weight type this CPU does not pick (s8 / u8)")
    parser.add_argument("--max-seq-length", type=int, default=None, help="token limit (default: the model's)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="folder holding the development sets")
    parser.add_argument("--rounds", type=int, default=3, help="speed rounds (median)")
    parser.add_argument("--speed-docs", type=int, default=256, help="abstracts encoded per speed round")
    args = parser.parse_args(argv[1:])

    sets = dev_sets(args.data)
    if not sets:
        raise SystemExit(f"no development set under {args.data}")
    print(header("int8 encoder against float32 (dense, exact search)"))
    print(f"# cpu flags: {simd_flags()}\n", flush=True)
    loaded = {folder.name: load_beir(folder) for folder in sets}

    with tempfile.TemporaryDirectory(prefix="paperlens-int8-") as tmp:
        backends = build_backends(args, Path(tmp))
        sample = [p.text for p in next(iter(loaded.values())).papers[: args.speed_docs]]
        for backend in backends:
            backend.encode(sample[:32])  # warm-up: first-call allocations are not the encoder's speed
        rates: dict[str, list[float]] = {b.name: [] for b in backends}
        for _ in range(args.rounds):
            for backend in backends:
                start = time.perf_counter()
                backend.encode(sample)
                rates[backend.name].append(len(sample) / (time.perf_counter() - start))

        rows, pooled = [], {b.name: [] for b in backends}
        for name, beir in loaded.items():
            metric = METRIC.get(name, "ndcg@10")
            ids = [p.id for p in beir.papers]
            queries = read_queries(beir.folder, beir.queries)
            reference_docs = reference_top = reference_ndcg = None
            for backend in backends:
                docs = backend.encode([p.text for p in beir.papers])
                texts = {q.text: None for q in queries}
                for text in texts:
                    texts[text] = backend.encode([text])[0]  # one at a time, as a search encodes it
                score = ndcg(beir.qrels, queries, np.stack([texts[q.text] for q in queries]), docs, ids, metric)
                top = top_ids(docs)
                if reference_docs is None:
                    reference_docs, reference_top, reference_ndcg = docs, top, score
                agree = overlap(top, reference_top)
                pooled[backend.name].append(agree)
                cosine = (docs * reference_docs).sum(axis=1)
                rows.append(f"| {name} | {backend.name} | {metric} {score:.4f} | {100 * (score - reference_ndcg):+.2f} | "
                            f"{agree.mean():.3f} | {cosine.mean():.4f} / {cosine.min():.4f} |")
                print(f"# {name}: {backend.name} done", file=sys.stderr, flush=True)

    total = sum(len(b.papers) for b in loaded.values())
    print(f"| set | backend | nDCG ({', '.join(f'{n} {len(b.queries)} queries' for n, b in loaded.items())}) | "
          f"Δ vs float32 (points) | top-10 overlap with float32 (every abstract as query) | doc cosine to float32 mean / min |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    for backend in backends:
        print(f"| all {total:,} abstracts | {backend.name} | | | {np.concatenate(pooled[backend.name]).mean():.3f} | |")
    base = statistics.median(rates[backends[0].name])
    print(f"\n| backend | abstracts/s (median of {args.rounds} × {len(sample)}) | × torch float32 |\n|---|---|---|")
    for backend in backends:
        rate = statistics.median(rates[backend.name])
        print(f"| {backend.name} | {rate:.1f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main(sys.argv)
