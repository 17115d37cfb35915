"""nDCG@10 on scifact-subset per encoder backend and token limit (dense search, exact index).

    PYTHONPATH=src python benchmarks/encoder_relevance.py [--backends torch,onnx-int8] [--lengths 256,128]

Dense only, so a change here is the encoder's alone; the hybrid (BM25 + dense) default mode is
measured by the relevance benchmark. 47 queries: differences under ~3 points are noise, but a
backend change shows up per query too, which is why the table also gives the vectors' cosine.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from paperlens.embed import EncoderSpec, load_encoder
from paperlens.papers import read_papers

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact-subset"


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path) as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(sorted(relevant.values(), reverse=True)[:10]))
    return dcg / ideal if ideal else 0.0


def evaluate(backend: str, max_len: int, data: Path) -> tuple[float, float, np.ndarray]:
    papers = read_papers(data).papers
    queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in open(data / "queries.jsonl")}
    qrels = load_qrels(data / "qrels" / "test.tsv")
    encoder = load_encoder(EncoderSpec("default", backend=backend, max_seq_length=max_len))
    start = time.perf_counter()
    docs = encoder.encode([p.text for p in papers])
    rate = len(papers) / (time.perf_counter() - start)
    ids = [p.id for p in papers]
    scores = []
    for qid, relevant in qrels.items():
        order = np.argsort(-(docs @ encoder.encode_query(queries[qid])))[:10]
        scores.append(ndcg_at_10([ids[i] for i in order], relevant))
    return float(np.mean(scores)), rate, docs


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="torch,onnx-int8")
    parser.add_argument("--lengths", default="256,128")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv[1:])
    print(f"# command: python {' '.join(argv)}\n\n| backend | max_seq_length | nDCG@10 (dense) | abstracts/s | cosine to torch-256 (min) |\n|---|---|---|---|---|")
    reference = None
    for length in (int(x) for x in args.lengths.split(",")):
        for backend in args.backends.split(","):
            score, rate, docs = evaluate(backend, length, args.data)
            reference = docs if reference is None else reference
            cosine = float((docs * reference).sum(axis=1).min())
            print(f"| {backend} | {length} | {score:.4f} | {rate:.1f} | {cosine:.4f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv)
